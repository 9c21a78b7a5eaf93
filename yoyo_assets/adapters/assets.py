"""Phase 2 assets, one set per tenant and role, one partition per night:

    <tenant>/<role>/corpus_bucket -> <tenant>/<role>/adapter -> <tenant>/<role>/published_adapter

and upstream of each engineering bucket, `<tenant>/engineering/commit_tuples` (tuples harvested
from the tenant's git repositories).

Each asset body is a module-level function that finds its bucket from its asset key
(`[tenant, role, name]`); `build_bucket_assets` decorates them for one bucket. The work is in
domain modules (corpus, version_training, publication); the assets wire and report.
"""

import base64
import gc
from collections import Counter

from dagster import (AssetExecutionContext, AssetKey, AssetsDefinition, Failure,
                     MaterializeResult, MetadataValue, PartitionsDefinition, asset)
from google.api_core.exceptions import GoogleAPIError
from tokenizers import Tokenizer

from ..datagraph.extraction.config import ExtractionConfig
from ..datagraph.extraction.quality import LabelledSetError
from ..datagraph.resources import LabelledSet
from ..shared.budget import run_deadline
from ..shared.inference_server import InferenceServer
from ..shared.run_health import tag_run_process
from ..shared.settings import GPU_POOL
from .checks import gate_outcome, held_out_metadata, overlay_outcome
from .commit_harvest import HarvestError, harvest_repository, harvested_shas, write_night_file
from .corpus_sync import CorpusNotSynced, corpus_prefix, mirror_corpus, upload_corpus
from .corpus import ROLES, BucketScan, CorpusTuple, scan_bucket
from .extraction_gate import POOLED
from .manifest import ExtractionComparison, PreferencePass
from .publication import publish_folder
from .recovery import unrecorded_version
from .registry import AdapterVersion, trained_hashes, version_for_night
from .resources import AdapterVersions, CorpusBuckets, ExtractionServing, Publication
from .serving_check import ExtractionGate, OverlayReport, check_overlay
from .training import BaseModelError, TrainingConfig, check_base_model
from .version_training import (Bucket, TrainingFailed, discard_checkpoints,
                               pending_set_sha256, train_version)

GIB = 1 << 30


def group_of(tenant: str, role: str) -> str:
    """The lineage group of one bucket's assets, `<tenant>_<role>`: the UI draws a node by the
    last part of its key (`adapter`), so the group is what tells the three adapters apart."""
    return f"{tenant}_{role}".replace("-", "_")


def bucket_of(context: AssetExecutionContext) -> Bucket:
    """The bucket an asset of `build_bucket_assets` belongs to, from its key."""
    tenant, role = context.asset_key.path[:2]
    return Bucket(tenant, role, ROLES[role])


def _corpus_folder(context: AssetExecutionContext, buckets: CorpusBuckets,
                   publication: Publication, bucket: Bucket):
    """The folder to scan: the local bucket, or (source "gcs") a mirror of the night's GCS copy,
    with the tuple hashes its manifest promises."""
    if buckets.source == "local":
        return buckets.bucket_folder(bucket.role, bucket.tenant), None
    mirror = buckets.mirror_folder(bucket.role, bucket.tenant)
    try:
        promised = mirror_corpus(publication.client(), publication.bucket,
                                 corpus_prefix(publication.prefix, bucket.name),
                                 context.partition_key, mirror, publication.retry())
    except (CorpusNotSynced, GoogleAPIError) as exc:
        raise Failure(f"the GCS copy of {bucket.name} for night {context.partition_key} is "
                      f"unusable: {type(exc).__name__}: {str(exc)[:300]}") from None
    return mirror, promised


def _scan(context: AssetExecutionContext, buckets: CorpusBuckets, versions: AdapterVersions,
          bucket: Bucket, publication: Publication | None = None
          ) -> tuple[BucketScan, list[CorpusTuple]]:
    """The bucket's valid tuples as of the night's end, and those no version has seen; read
    from the local folder, or with `publication` from where `buckets.source` says."""
    if publication is None:
        folder, promised = buckets.bucket_folder(bucket.role, bucket.tenant), None
    else:
        folder, promised = _corpus_folder(context, buckets, publication, bucket)
    scan = scan_bucket(folder, bucket.kind, context.partition_time_window.end.timestamp(),
                       max_chars=buckets.max_tuple_chars)
    if promised is not None and sorted(t.sha256 for t in scan.tuples) != promised:
        raise Failure(f"the mirror {folder} does not hold the tuples its night's manifest lists")
    for invalid in scan.invalid:
        context.log.warning(f"skipped {invalid}")
    return scan, scan.pending(trained_hashes(versions.version_folder(bucket.tenant, bucket.role)))


def _copy_to_gcs(context: AssetExecutionContext, publication: Publication, bucket: Bucket,
                 scan: BucketScan) -> dict:
    """Upload the night's files and manifest (corpus_sync.py); metadata of the copy."""
    if not publication.bucket:
        return {"gcs_copy": "none (no YOYO_GCS_BUCKET)"}
    try:
        upload = upload_corpus(publication.client(), publication.bucket,
                               corpus_prefix(publication.prefix, bucket.name), scan.files,
                               [t.sha256 for t in scan.tuples], context.partition_key,
                               publication.retry())
    except GoogleAPIError as exc:
        raise Failure(f"copying {bucket.name} to gs://{publication.bucket}/ failed: "
                      f"{type(exc).__name__}: {str(exc)[:300]}. The night's manifest was not "
                      "written; re-materialize corpus_bucket to send what is missing") from None
    return {"gcs_copy": MetadataValue.url(upload.manifest_uri),
            "gcs_files_uploaded": len(upload.uploaded),
            "gcs_files_already_present": len(upload.already_present)}


def corpus_bucket(context: AssetExecutionContext, corpus_buckets: CorpusBuckets,
                  adapter_versions: AdapterVersions,
                  publication: Publication) -> MaterializeResult:
    """Validate and count the bucket's tuples (see the asset's description)."""
    bucket = bucket_of(context)
    scan, pending = _scan(context, corpus_buckets, adapter_versions, bucket)
    return MaterializeResult(metadata={
        **_copy_to_gcs(context, publication, bucket, scan),
        "bucket": bucket.name,
        "bucket_path": MetadataValue.path(str(corpus_buckets.bucket_folder(bucket.role,
                                                                           bucket.tenant))),
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


def commit_tuples(context: AssetExecutionContext,
                  corpus_buckets: CorpusBuckets) -> MaterializeResult:
    """Harvest the night's commits of the tenant's repositories (see the asset's description)."""
    bucket = bucket_of(context)
    window = context.partition_time_window
    folder = corpus_buckets.bucket_folder(bucket.role, bucket.tenant)
    night_file = folder / f"git-{context.partition_key}.jsonl"
    already = harvested_shas(folder, night_file)
    try:
        harvests = [harvest_repository(path, window.start.timestamp(), window.end.timestamp(),
                                       already) for path in corpus_buckets.repositories(bucket.tenant)]
    except HarvestError as exc:
        raise Failure(str(exc)) from None
    tuples = [t for h in harvests for t in h.tuples]
    if tuples:
        write_night_file(night_file, tuples, window.end.timestamp() - 1)
    skipped = sum((h.skipped for h in harvests), Counter())
    rows = ["| repository | harvested | skipped |", "|---|---|---|"] + [
        f"| {h.repository} | {len(h.tuples)} | "
        + (", ".join(f"{reason} {n}" for reason, n in sorted(h.skipped.items())) or "none")
        + " |" for h in harvests]
    return MaterializeResult(metadata={
        "repositories": len(harvests), "harvested_commits": len(tuples),
        "skipped_commits": sum(skipped.values()),
        "skipped_by_reason": MetadataValue.json(dict(sorted(skipped.items()))),
        "by_repository": MetadataValue.md("\n".join(rows)),
        "file": MetadataValue.path(str(night_file)) if tuples else "(nothing harvested)"})


def version_metadata(version: AdapterVersion) -> dict:
    """The adapter materialization's metadata, from the version's manifest."""
    m, figures = version.manifest, version.manifest.training
    png = version.path / "loss_curve.png"
    curve = (f"![loss curve](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})"
             if png.is_file() else "(no loss curve)")
    return {
        "version": version.number,
        "path": MetadataValue.path(str(version.path)),
        "eval_loss": round(m.eval_loss, 4),
        "base_eval_loss": round(m.base_eval_loss, 4),
        "eval_loss_delta": round(m.eval_loss_delta, 4),
        **(held_out_metadata(m.held_out) if m.held_out else {}),
        "prompts_shortened": m.fitting.prompts_shortened,
        "answers_cut": m.fitting.answers_cut,
        "tuples_dropped": MetadataValue.json(m.fitting.dropped),
        **({"base_rouge_l": round(m.serving_check.answers.base_rouge_l, 3),
            "adapter_rouge_l": round(m.serving_check.answers.adapter_rouge_l, 3)}
           if m.serving_check.answers else {}),
        "quality_gate_passed": version.passed_quality_gate,
        "served_as_overlay": m.serving_check.served,
        "loss_curve": MetadataValue.md(curve),
        "train_tuples": len(m.trained_tuples),
        "held_out_tuples": len(m.held_out_tuples),
        "steps": figures.steps,
        "train_tokens": figures.train_tokens,
        "tokens_per_s": round(figures.tokens_per_s, 1),
        "peak_memory_gib": round(figures.peak_memory_bytes / GIB, 2),
        "peak_memory_kind": figures.peak_memory_kind,
        "duration_s": round(figures.duration_s, 1),
        "resumed_from_checkpoint": figures.resumed_from_checkpoint or "",
        **_gate_f1(m.serving_check.extraction),
        **_preference_pass(m.preference_pass),
    }


def _preference_pass(done: PreferencePass | None) -> dict:
    """An extraction version's DPO pass over correction pairs as numbers: pairs trained and
    held out, and the share of held-out pairs whose confirmed answer the base and the adapter
    each find the more likely (0..1). Empty where no pass was made."""
    if done is None:
        return {}
    return {"correction_pairs_trained": len(done.pairs),
            "correction_pairs_held_out": len(done.held_out_pairs),
            "held_out_pairs_preferred_by_base": round(done.base_preference_accuracy, 4),
            "held_out_pairs_preferred_by_adapter": round(done.adapter_preference_accuracy, 4),
            "preference_pass_steps": done.steps}


def _gate_f1(gate: ExtractionComparison | None) -> dict:
    """An extraction version's gate figures as numbers, so that the UI plots them night by
    night: "any type" F1 (0..1) of the serving extractor and the candidate, pooled and per
    stream. Empty for other roles."""
    if gate is None:
        return {}
    figures = {"gate_serving_f1": round(gate.serving.f1, 4),
               "gate_candidate_f1": round(gate.candidate.f1, 4)}
    for stream, interval in gate.intervals.items():
        if stream != POOLED:
            figures[f"gate_{stream}_serving_f1"] = round(interval.serving_f1, 4)
            figures[f"gate_{stream}_candidate_f1"] = round(interval.candidate_f1, 4)
    return figures


def _base_model(role: str, config: TrainingConfig, versions: AdapterVersions,
                server: InferenceServer):
    """An extraction adapter overlays the model Phase 1 serves, other roles the training base."""
    base_dir = (server.resolved_model_dir().resolve()
                if role == "extraction" and not config.base_model_dir
                else versions.base_model(config.base_model_dir))
    try:
        check_base_model(base_dir)
    except BaseModelError as exc:
        raise Failure(str(exc)) from None
    return base_dir


def _overlay_check(context, bucket: Bucket, base_dir, config: TrainingConfig,
                   server: InferenceServer, serving: ExtractionServing,
                   labelled_set: LabelledSet):
    """The serving check of a staged version (see serving_check.py): asked held-out prompts
    (topped up with training prompts) as an overlay; an extraction adapter is also scored
    against the extractor Phase 1 serves now on the labelled set."""
    gate = None
    if bucket.role == "extraction":
        try:
            labelled = labelled_set.load()
        except LabelledSetError as exc:
            raise Failure(f"the extraction gate's labelled set is unusable: {exc}") from None
        current = serving.serving_version()
        gate = ExtractionGate(labelled, ExtractionConfig(),
                              Tokenizer.from_file(str(base_dir / "tokenizer.json")),
                              current.manifest.served_name if current else None,
                              current.path if current else None, config.gate_statistic,
                              config.gate_confidence)

    def check(staged, split) -> OverlayReport:
        # The fitted prompts: what training saw, and within max_length of the server's context.
        asked = config.overlay_check_prompts
        prompts = [e["prompt"] for e in [*split.held_out, *split.train][:asked]]
        references = [e["completion"][-1]["content"] for e in split.held_out[:asked]
                      if "completion" in e]
        gc.collect()  # the trained model's memory back before a server starts beside this one
        report = check_overlay(server, base_dir, staged, prompts, context.log, gate,
                               references, max_tokens=config.overlay_check_tokens)
        context.log.info(f"{bucket.name}: {overlay_outcome(report)}")
        return report

    return check


def adapter(context: AssetExecutionContext, config: TrainingConfig,
            corpus_buckets: CorpusBuckets, adapter_versions: AdapterVersions,
            publication: Publication, extraction_serving: ExtractionServing,
            inference_server: InferenceServer, labelled_set: LabelledSet):
    """Train the bucket's next version when its pending tuples reach the threshold; record a
    version that a killed run saved; else nothing (see the asset's description)."""
    tag_run_process(context)
    bucket, night = bucket_of(context), context.partition_key
    scan, pending = _scan(context, corpus_buckets, adapter_versions, bucket, publication)
    if len(pending) < corpus_buckets.threshold:
        saved = unrecorded_version(context.instance, adapter_versions, bucket.tenant,
                                   bucket.role, night)
        if saved is not None:
            context.log.info(f"{bucket.name} night {night}: v{saved.number} was saved by a run "
                             "that died before it was recorded; recording it, no retraining")
            discard_checkpoints(saved.path.parent, night)
            yield MaterializeResult(metadata={**version_metadata(saved), "recovered": True})
        else:  # a second request for a set that an earlier run already trained on ends here
            context.log.info(f"{bucket.name} night {night}: {len(pending)} pending tuples, below "
                             f"the threshold {corpus_buckets.threshold}; nothing to train")
        return
    base_dir = _base_model(bucket.role, config, adapter_versions, inference_server)
    check = _overlay_check(context, bucket, base_dir, config, inference_server,
                           extraction_serving, labelled_set)
    base_name = adapter_versions.public_base_name(bucket.role, base_dir)
    if base_name == str(base_dir):
        context.log.warning(f"no public name for the base {base_dir} (YOYO_BASE_MODEL_NAME / "
                            "YOYO_EXTRACTION_MODEL_NAME): a gateway elsewhere cannot resolve it")
    try:
        version = train_version(
            bucket, scan.tuples, config, base_dir, base_name,
            adapter_versions.version_folder(bucket.tenant, bucket.role), night, context.run.run_id,
            run_deadline(context, config.budget_reserve_s), check, context.log.info,
            progress=lambda step, steps: context.log.debug(
                f"step {step}/{steps}", extra={"yoyo_progress": (step, steps, "steps")}))
    except TrainingFailed as exc:
        raise Failure(str(exc)) from None
    yield MaterializeResult(metadata={**version_metadata(version),
                                      "pending_tuples_before": len(pending), "recovered": False})


def published_adapter(context: AssetExecutionContext, adapter_versions: AdapterVersions,
                      publication: Publication) -> MaterializeResult:
    """Upload the night's version to GCS (see the asset's description)."""
    tag_run_process(context)
    bucket, night = bucket_of(context), context.partition_key
    version = version_for_night(adapter_versions.version_folder(bucket.tenant, bucket.role),
                                night)
    if version is None:
        raise Failure(f"no {bucket.name} adapter version was trained for night {night}")
    if not version.passed_quality_gate:
        reason = f"kept local by its gate: {gate_outcome(version.manifest)}"
        context.log.info(f"v{version.number} {reason}; not published")
        return MaterializeResult(metadata={"published": False, "version": version.number,
                                           "reason": reason})
    if not publication.bucket:
        context.log.info("no GCS bucket configured (YOYO_GCS_BUCKET): not published")
        return MaterializeResult(metadata={
            "published": False, "version": version.number,
            "reason": "no GCS bucket configured (YOYO_GCS_BUCKET)"})
    name = f"{publication.prefix}/{bucket.tenant}/{bucket.role}/v{version.number}"
    try:
        report = publish_folder(publication.client(), publication.bucket, name,
                                version.path, retry=publication.retry())
    except GoogleAPIError as exc:
        raise Failure(
            f"publication of {version.path} to gs://{publication.bucket}/{name}/ "
            f"failed: {type(exc).__name__}: {str(exc)[:300]}. Its manifest was not "
            "uploaded, so readers do not see a version there; re-materialize "
            "published_adapter for this night to send what is missing") from None
    return MaterializeResult(metadata={
        "published": True, "version": version.number, "uri": report.uri,
        "objects_uploaded": len(report.uploaded),
        "objects_already_present": len(report.already_present),
        "bytes_uploaded": report.bytes,
    })


def build_bucket_assets(tenant: str, role: str, nights: PartitionsDefinition,
                        writers: tuple[AssetKey, ...] = ()) -> list[AssetsDefinition]:
    """The corpus bucket, adapter and published adapter assets of one tenant and role;
    `writers`: other assets that add tuples to the bucket (Phase 1's `correction_tuples`).

    Raises:
        ValueError: an unsafe tenant name or unknown role.
    """
    bucket = Bucket(tenant, role, ROLES[role])
    kind, prefix = bucket.kind.upper(), [tenant, role]
    common = dict(key_prefix=prefix, group_name=group_of(tenant, role), partitions_def=nights)
    harvest = [asset(name="commit_tuples", **common, description=(
        "One SFT tuple per commit that landed on the default branch of the tenant's git "
        "repositories (YOYO_GIT_REPOSITORIES) during the night: the diff under a fixed "
        "instruction, the commit message as the answer, written as `git-<night>.jsonl` into "
        f"`{bucket.name}`. Merges, bot authors, empty, binary-only and oversized diffs are "
        "skipped and counted; a commit is harvested once."))(commit_tuples)] \
        if role == "engineering" else []
    return [
        *harvest,
        asset(name="corpus_bucket", **common, deps=[*(h.key for h in harvest), *writers],
              description=(
            f"`{bucket.name}`: {kind} tuples that arrived by the night's end, validated line "
            "by line, exact duplicates dropped, pending = not yet trained on."))(corpus_bucket),
        asset(name="adapter", **common, deps=[AssetKey([*prefix, "corpus_bucket"])],
              pool=GPU_POOL, output_required=False, description=(
                  f"QLoRA {kind} adapter trained on the whole `{bucket.name}` bucket as of the "
                  "night, saved as the next `v<N>`. Trains only when the bucket's pending tuples "
                  "reach the threshold (YOYO_ADAPTER_THRESHOLD)."))(adapter),
        asset(name="published_adapter", **common, deps=[AssetKey([*prefix, "adapter"])],
              description=(
                  "The night's adapter version uploaded to gs://<YOYO_GCS_BUCKET>/<prefix>/"
                  "<tenant>/<role>/v<N>/, manifest last, each object checked by MD5. "
                  "A version its gate kept local is not uploaded: the materialization says "
                  "`published: false` and why. Re-materialize it alone to retry a failed "
                  "upload without retraining."
              ))(published_adapter),
    ]
