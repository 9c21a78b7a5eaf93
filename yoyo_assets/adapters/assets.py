"""Phase 2 assets, one set per tenant and role, one partition per night:

    <tenant>/<role>/corpus_bucket -> <tenant>/<role>/adapter -> <tenant>/<role>/published_adapter

plus the blocking asset check `beats_base_model` on each adapter.
"""

import base64
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
from ..resources.adapter_store import AdapterStore
from ..run_health import tag_run_process
from ..settings import GPU_POOL, adapter_threshold, phase2_budget_s
from .corpus import ROLES, BucketScan, bucket_name, scan_bucket
from .publication import publish_folder
from .registry import (AdapterVersion, commit_version, folder_sha256, remove_stale_staging,
                       staging_folder, trained_hashes, version_for_night)
from .training import (BaseModelError, BudgetSpent, TrainingConfig, TrainingResult,
                       check_base_model, split_tuples, train_adapter)

GROUP = "adapters"
QUALITY_CHECK = "beats_base_model"
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
                adapter_store: AdapterStore):
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
        base_dir = adapter_store.base_model(config.base_model_dir)
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
        passed = result.eval_loss < result.base_eval_loss
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
            "quality_gate": {"passed": passed, "check": QUALITY_CHECK,
                             "rule": "eval_loss < base_eval_loss"},
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

    def beats_base_model(context: AssetCheckExecutionContext,
                         adapter_store: AdapterStore) -> AssetCheckResult:
        night = context.op_execution_context.partition_key
        version = version_for_night(adapter_store.version_folder(tenant, role), night)
        if version is None:
            return AssetCheckResult(passed=False, description=f"no version for night {night}")
        manifest = version.manifest
        return AssetCheckResult(
            passed=version.passed_quality_gate,
            metadata={"version": version.number, "eval_loss": manifest["eval_loss"],
                      "base_eval_loss": manifest["base_eval_loss"],
                      "eval_loss_delta": manifest["eval_loss"] - manifest["base_eval_loss"]})

    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13, used on purpose: each
        # night's version gets its own check result.
        warnings.simplefilter("ignore", PreviewWarning)
        beats_base_model = asset_check(
            asset=adapter_key, name=QUALITY_CHECK, blocking=True, partitions_def=nights,
            description="The night's adapter version has a held-out eval loss below the base "
            "model's. Blocking: a version that fails is not published.")(beats_base_model)

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

    return [corpus_bucket, adapter, beats_base_model, published_adapter]
