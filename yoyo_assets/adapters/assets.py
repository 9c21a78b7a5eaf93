"""Phase 2 assets, one set per tenant and role, one partition per night:

    <tenant>/<role>/corpus_bucket -> <tenant>/<role>/adapter -> <tenant>/<role>/published_adapter

plus the blocking asset checks `beats_base_model` (held-out eval loss) and `serves_as_overlay`
(vLLM serves it as a LoRA overlay; an extraction adapter must also raise F1) on each adapter.
"""

import base64
import gc
import hashlib
import io
import json
import shutil
import time
import warnings
from importlib import metadata as package_metadata

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext,
                     AssetKey, AssetRecordsFilter, AssetsDefinition, DagsterInstance, Failure,
                     MaterializeResult, MetadataValue, PreviewWarning, asset, asset_check)
from google.api_core.exceptions import GoogleAPIError
from google.cloud.storage.retry import DEFAULT_RETRY

from ..budget import run_deadline
from ..partitions import nights
from ..datagraph.extraction_config import ExtractionConfig
from ..datagraph.quality import LabelledSetError
from ..resources.adapter_store import AdapterStore
from ..resources.inference_server import InferenceServer
from ..resources.labelled_set import LabelledSet
from ..run_health import tag_run_process
from ..settings import GPU_POOL, adapter_threshold, phase2_budget_s
from .corpus import ROLES, BucketScan, CorpusTuple, bucket_name, scan_bucket
from .publication import publish_folder
from .registry import (AdapterVersion, commit_version, folder_sha256, remove_stale_staging,
                       served_name, serving_version, staging_folder, trained_hashes,
                       version_for_night)
from .serving_check import SAMPLE_PROMPTS, ExtractionGate, OverlayReport, check_overlay
from .training import (BaseModelError, BudgetSpent, TrainingConfig, TrainingResult,
                       check_base_model, dpo_example, sft_example, split_tuples, train_adapter)

GROUP = "adapters"
QUALITY_CHECK = "beats_base_model"
OVERLAY_CHECK = "serves_as_overlay"
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "dagster")


def pending_set_sha256(hashes: list[str]) -> str:
    """Identity of a set of pending tuples: SHA-256 of their sorted hashes, one per line. The
    sensor's run key is derived from it, so one pending set is requested once."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def _scan(context: AssetExecutionContext, store: AdapterStore, tenant: str, role: str
          ) -> tuple[BucketScan, set[str]]:
    night_end = context.partition_time_window.end.timestamp()
    scan = scan_bucket(store.bucket_folder(role, tenant), ROLES[role], night_end,
                       max_chars=store.max_tuple_chars)
    for invalid in scan.invalid:
        context.log.warning(f"skipped {invalid}")
    return scan, trained_hashes(store.version_folder(tenant, role))


def _loss_curve_png(result: TrainingResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.2), dpi=100)
    for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
        rows = [r for r in result.loss_history if key in r]
        axes.plot([r["step"] for r in rows], [r[key] for r in rows], style, label=key)
    axes.axhline(result.base_eval_loss, color="grey", linestyle="--", label="base eval_loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def _library_versions() -> dict[str, str]:
    return {name: package_metadata.version(name) for name in LIBRARIES}


def _overlay_metadata(number: int, check: dict) -> dict:
    """Metadata of a version's serving check (manifest `serving_check`)."""
    rows = ["| prompt (end) | base | adapter |", "|---|---|---|"]
    for sample in check.get("samples", []):
        cells = [" ".join(sample[k].split())[-160:].replace("|", "\\|")
                 for k in ("prompt", "base", "adapter")]
        rows.append("| " + " | ".join(cells) + " |")
    metadata = {"version": number, "served": bool(check.get("served")),
                "answers_differing": check.get("differing", 0),
                "prompts": check.get("prompts", 0), "seconds": check.get("seconds", 0.0),
                "samples": MetadataValue.md("\n".join(rows))}
    if check.get("error"):
        metadata["error"] = check["error"]
    for key, value in (check.get("extraction") or {}).items():
        metadata[f"extraction_{key}"] = value
    return metadata


def _version_metadata(version: AdapterVersion) -> dict:
    """The adapter materialization's metadata, read from the version's manifest."""
    m = version.manifest
    png = version.path / "loss_curve.png"
    curve = (f"![loss curve](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})"
             if png.is_file() else "(no loss curve)")
    return {
        "version": version.number,
        "path": MetadataValue.path(str(version.path)),
        "eval_loss": m["eval_loss"],
        "base_eval_loss": m["base_eval_loss"],
        "eval_loss_delta": m["eval_loss"] - m["base_eval_loss"],
        "quality_gate_passed": version.passed_quality_gate,
        "served_as_overlay": bool((m.get("serving_check") or {}).get("served")),
        "loss_curve": MetadataValue.md(curve),
        "train_tuples": len(m["trained_tuples"]),
        "eval_tuples": len(m["eval_tuples"]),
        "steps": m.get("steps", 0),
        "train_tokens": m["train_tokens"],
        "tokens_per_s": round(m["tokens_per_s"], 1),
        "peak_memory_bytes": m["peak_memory_bytes"],
        "peak_memory_kind": m["peak_memory_kind"],
        "duration_s": round(m["duration_s"], 1),
        "resumed_from_checkpoint": m["resumed_from_checkpoint"] or "",
    }


def unrecorded_version(instance: DagsterInstance, adapter_store: AdapterStore, tenant: str,
                       role: str, night: str) -> AdapterVersion | None:
    """The night's adapter version if a run died (SIGKILL, preemption) after saving it but
    before Dagster recorded its materialization or, for a version that passed the quality gate,
    its publication; else None. Re-materializing the adapter then records it and lets the
    publication run, with no retraining."""
    version = version_for_night(adapter_store.version_folder(tenant, role), night)
    if version is None:
        return None

    def recorded(name: str) -> bool:
        records = instance.fetch_materializations(AssetRecordsFilter(
            asset_key=AssetKey([tenant, role, name]), asset_partitions=[night]), limit=1,
            ascending=False).records
        return bool(records) and \
            records[0].asset_materialization.metadata["version"].value == version.number

    if not recorded("adapter") or (version.passed_quality_gate and
                                   not recorded("published_adapter")):
        return version
    return None


def _serving_check(context: AssetExecutionContext, tenant: str, role: str, base_dir,
                   staged, held_out: list[CorpusTuple], train: list[CorpusTuple], lora_r: int,
                   inference_server: InferenceServer, gate_set: list | None,
                   adapter_store: AdapterStore) -> OverlayReport:
    """The staged version served as a vLLM overlay on `base_dir` (see serving_check.py); an
    extraction adapter is also scored against the extractor Phase 1 serves now on `gate_set`."""
    to_example = dpo_example if ROLES[role] == "dpo" else sft_example
    # Held-out prompts first; a small bucket's are topped up with training prompts.
    prompts = [to_example(t.record)["prompt"] for t in [*held_out, *train][:SAMPLE_PROMPTS]]
    gate = None
    if gate_set is not None:
        from tokenizers import Tokenizer

        current = serving_version(adapter_store.version_folder(tenant, role))
        gate = ExtractionGate(gate_set, ExtractionConfig(),
                              Tokenizer.from_file(str(base_dir / "tokenizer.json")),
                              served_name(current) if current else None,
                              current.path if current else None)
    gc.collect()  # the trained model's memory back before a server starts beside this process
    report = check_overlay(inference_server, base_dir, staged, prompts, context.log, lora_r,
                           gate)
    context.log.info(f"{tenant}/{role}: overlay check {'passed' if report.passed else 'failed'}"
                     f" ({report.differing}/{report.prompts} answers differ from the base's"
                     + (f"; {report.error}" if report.error else "") + ")")
    return report


def _gate_rule(role: str) -> str:
    rule = ("eval_loss < base_eval_loss; served as a vLLM LoRA overlay, answers differing from "
            "the base's")
    if role == "extraction":
        rule += "; F1 on the labelled set above the serving extractor's"
    return rule


def build_bucket_assets(tenant: str, role: str) -> list[AssetsDefinition]:
    """The corpus bucket, adapter and published adapter assets of one tenant and role, and the
    adapter's quality check.

    Raises:
        ValueError: an unsafe tenant name or unknown role.
    """
    bucket = bucket_name(role, tenant)
    kind = ROLES[role]
    prefix = [tenant, role]
    adapter_key = AssetKey([*prefix, "adapter"])

    @asset(name="corpus_bucket", key_prefix=prefix, group_name=GROUP, partitions_def=nights,
           description=f"`{bucket}`: {kind.upper()} tuples that arrived by the night's end, "
           "validated line by line, exact duplicates dropped, pending = not yet trained on.")
    def corpus_bucket(context: AssetExecutionContext,
                      adapter_store: AdapterStore) -> MaterializeResult:
        scan, trained = _scan(context, adapter_store, tenant, role)
        pending = scan.pending(trained)
        return MaterializeResult(metadata={
            "bucket": bucket,
            "bucket_path": str(adapter_store.bucket_folder(role, tenant)),
            "tuple_count": len(scan.tuples),
            "pending_tuples": len(pending),
            "pending_set_sha256": pending_set_sha256([t.sha256 for t in pending]),
            "duplicates_dropped": scan.duplicates,
            "near_duplicate_pairs": len(scan.near_duplicates),
            "near_duplicates": MetadataValue.json([list(p) for p in scan.near_duplicates[:100]]),
            "invalid_lines": len(scan.invalid),
            "invalid": MetadataValue.json([{"file": i.path, "line": i.line, "reason": i.reason}
                                           for i in scan.invalid[:1000]]),
        })

    @asset(name="adapter", key_prefix=prefix, group_name=GROUP, partitions_def=nights,
           deps=[corpus_bucket], pool=GPU_POOL, output_required=False,
           description=f"QLoRA {kind.upper()} adapter trained on the whole `{bucket}` bucket as "
           "of the night, saved as the next `v<N>`. Trains only when the bucket's pending tuples "
           "reach the threshold (YOYO_ADAPTER_THRESHOLD).")
    def adapter(context: AssetExecutionContext, config: TrainingConfig,
                adapter_store: AdapterStore, inference_server: InferenceServer,
                labelled_set: LabelledSet):
        tag_run_process(context)
        night = context.partition_key
        folder = adapter_store.version_folder(tenant, role)
        scan, trained = _scan(context, adapter_store, tenant, role)
        pending = scan.pending(trained)
        threshold = adapter_threshold()
        if len(pending) < threshold:
            saved = unrecorded_version(context.instance, adapter_store, tenant, role, night)
            if saved is not None:
                context.log.info(f"{bucket} night {night}: v{saved.number} was saved by a run "
                                 "that died before it was recorded; recording it, no retraining")
                for leftover in (folder / ".work").glob(f"{night}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)  # the dead run's checkpoints
                yield MaterializeResult(metadata={**_version_metadata(saved), "recovered": True})
                return
            # A second request for a set that an earlier run already trained on ends here.
            context.log.info(f"{bucket} night {night}: {len(pending)} pending tuples, below the "
                             f"threshold {threshold}; nothing to train")
            return
        gate_set = None
        if role == "extraction":
            try:
                gate_set = labelled_set.load()
            except LabelledSetError as exc:
                raise Failure(f"the extraction gate's labelled set is unusable: {exc}") from None
        # An extraction adapter overlays the model Phase 1 serves, other roles the training base.
        base_dir = (inference_server.resolved_model_dir().resolve()
                    if role == "extraction" and not config.base_model_dir
                    else adapter_store.base_model(config.base_model_dir))
        try:
            check_base_model(base_dir)
        except BaseModelError as exc:
            raise Failure(str(exc)) from None
        train, held_out = split_tuples(scan.tuples, config.eval_fraction)
        training_set = pending_set_sha256([t.sha256 for t in scan.tuples])
        settings = config.model_dump()
        training_id = hashlib.sha256(json.dumps([training_set, settings, str(base_dir)],
                                           sort_keys=True).encode()).hexdigest()[:16]
        work_dir = folder / ".work" / f"{night}-{training_id}"
        remove_stale_staging(folder)
        staged = staging_folder(folder)
        try:
            result = train_adapter(
                kind, train, held_out, config, base_dir, work_dir, staged,
                deadline=run_deadline(context, phase2_budget_s(), config.budget_reserve_s),
                log=context.log.info)
        except (BudgetSpent, ValueError) as exc:
            shutil.rmtree(staged, ignore_errors=True)
            raise Failure(str(exc)) from None
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        (staged / "loss_curve.png").write_bytes(_loss_curve_png(result))
        overlay = _serving_check(context, tenant, role, base_dir, staged, held_out, train,
                                 config.lora_rank, inference_server, gate_set, adapter_store)
        passed = result.eval_loss < result.base_eval_loss and overlay.passed
        manifest = {
            "tenant": tenant, "role": role, "kind": kind, "bucket": bucket, "night": night,
            "base_model": {"path": str(base_dir), "sha256": folder_sha256(base_dir)},
            "trained_tuples": sorted(t.sha256 for t in train),
            "eval_tuples": sorted(t.sha256 for t in held_out),
            "hyperparameters": settings,
            "libraries": _library_versions(),
            "loss_history": result.loss_history,
            "base_eval_loss": result.base_eval_loss,
            "eval_loss": result.eval_loss,
            "quality_gate": {"passed": passed, "checks": [QUALITY_CHECK, OVERLAY_CHECK],
                             "rule": _gate_rule(role)},
            "serving_check": overlay.as_dict(),
            "steps": result.steps,
            "train_tokens": result.train_tokens,
            "tokens_per_s": result.tokens_per_s,
            "peak_memory_bytes": result.peak_memory_bytes,
            "peak_memory_kind": result.peak_memory_kind,
            "duration_s": result.duration_s,
            "resumed_from_checkpoint": result.resumed_from,
            "dagster_run_id": context.run.run_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        version = commit_version(folder, staged, manifest)
        shutil.rmtree(work_dir, ignore_errors=True)
        delta = result.eval_loss - result.base_eval_loss
        context.log.info(f"{bucket}: v{version.number} at {version.path}, eval loss "
                         f"{result.base_eval_loss:.4f} -> {result.eval_loss:.4f} ({delta:+.4f})")
        yield MaterializeResult(metadata={**_version_metadata(version),
                                          "pending_tuples_before": len(pending),
                                          "recovered": False})

    def night_version(context: AssetCheckExecutionContext,
                      adapter_store: AdapterStore) -> AdapterVersion | None:
        night = context.op_execution_context.partition_key
        return version_for_night(adapter_store.version_folder(tenant, role), night)

    def beats_base_model(context: AssetCheckExecutionContext,
                         adapter_store: AdapterStore) -> AssetCheckResult:
        version = night_version(context, adapter_store)
        if version is None:
            return AssetCheckResult(passed=False, description="no version for the night")
        manifest = version.manifest
        return AssetCheckResult(
            passed=manifest["eval_loss"] < manifest["base_eval_loss"],
            metadata={"version": version.number, "eval_loss": manifest["eval_loss"],
                      "base_eval_loss": manifest["base_eval_loss"],
                      "eval_loss_delta": manifest["eval_loss"] - manifest["base_eval_loss"]})

    def serves_as_overlay(context: AssetCheckExecutionContext,
                          adapter_store: AdapterStore) -> AssetCheckResult:
        version = night_version(context, adapter_store)
        if version is None:
            return AssetCheckResult(passed=False, description="no version for the night")
        check = version.manifest.get("serving_check") or {"passed": False,
                                                          "error": "not checked"}
        return AssetCheckResult(passed=bool(check["passed"]), description=check.get("error")
                                or None, metadata=_overlay_metadata(version.number, check))

    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13, used on purpose: each
        # night's version gets its own check result.
        warnings.simplefilter("ignore", PreviewWarning)
        beats_base_model = asset_check(
            asset=adapter_key, name=QUALITY_CHECK, blocking=True, partitions_def=nights,
            description="The night's adapter version has a held-out eval loss below the base "
            "model's. Blocking: a version that fails is not published.")(beats_base_model)
        serves_as_overlay = asset_check(
            asset=adapter_key, name=OVERLAY_CHECK, blocking=True, partitions_def=nights,
            description="vLLM serves the night's version as a LoRA overlay on its base (as the "
            "gateway loads it) and its answers to held-out prompts differ from the base's; an "
            "extraction adapter must also beat the serving extractor's F1 on the labelled set. "
            "Blocking: a version that fails is not published.")(serves_as_overlay)

    @asset(name="published_adapter", key_prefix=prefix, group_name=GROUP, partitions_def=nights,
           deps=[adapter_key],
           description="The night's adapter version uploaded to gs://<YOYO_GCS_BUCKET>/"
           "<prefix>/<tenant>/<role>/v<N>/, manifest last, each object checked by MD5. "
           "Re-materialize it alone to retry a failed upload without retraining.")
    def published_adapter(context: AssetExecutionContext,
                          adapter_store: AdapterStore) -> MaterializeResult:
        tag_run_process(context)
        night = context.partition_key
        version = version_for_night(adapter_store.version_folder(tenant, role), night)
        if version is None:
            raise Failure(f"no {bucket} adapter version was trained for night {night}")
        if not version.passed_quality_gate:
            raise Failure(f"{version.path} failed the quality gate ({QUALITY_CHECK}); it stays "
                          "local and is not published")
        if not adapter_store.gcs_bucket:
            context.log.info("no GCS bucket configured (YOYO_GCS_BUCKET): not published")
            return MaterializeResult(metadata={
                "published": False, "version": version.number,
                "reason": "no GCS bucket configured (YOYO_GCS_BUCKET)"})
        name = f"{adapter_store.gcs_prefix}/{tenant}/{role}/v{version.number}"
        retry = DEFAULT_RETRY.with_timeout(adapter_store.gcs_retry_timeout_s)
        try:
            report = publish_folder(adapter_store.gcs.get_client(), adapter_store.gcs_bucket,
                                    name, version.path, retry=retry)
        except GoogleAPIError as exc:
            raise Failure(
                f"publication of {version.path} to gs://{adapter_store.gcs_bucket}/{name}/ "
                f"failed: {type(exc).__name__}: {str(exc)[:300]}. Its manifest was not "
                "uploaded, so readers do not see a version there; re-materialize "
                "published_adapter for this night to send what is missing") from None
        return MaterializeResult(metadata={
            "published": True, "version": version.number, "uri": report.uri,
            "objects_uploaded": len(report.uploaded),
            "objects_already_present": len(report.already_present),
            "bytes_uploaded": report.bytes,
        })

    return [corpus_bucket, adapter, beats_base_model, serves_as_overlay, published_adapter]
