"""The `extracted_entities` asset: a night's extraction fanned out over the inference endpoints.

A graph of ops behind the one asset: `split_night` cuts the night's documents into one shard per
endpoint (`InferenceServer.endpoints()`: managed, the server the step starts; external, `url`
and `replica_urls`), `extract_shard` extracts each in a step of its own (the run's executor runs
them side by side: processes here, pods with `k8s_job_executor`; the `gpu` pool bounds how many
at once), `merge_shards` makes the asset's value and metadata, `extraction_quality` its check.
A shard whose server fails or goes away is retried by Dagster (`RetryRequested`) on the next
endpoint; with one endpoint its documents are deferred to the next run instead. Nothing here
writes the ledger: `datagraph` does, so a shard extracted twice still counts once.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from dagster import (AssetCheckResult, AssetCheckSpec, AssetIn, ConfigMapping, DynamicOut,
                     DynamicOutput, In, MetadataValue, Nothing, OpExecutionContext, Output,
                     PartitionsDefinition, ResourceParam, RetryRequested, graph_asset, op)
from tokenizers import Tokenizer

from ..shared.budget import run_deadline
from ..shared.faults import crash_point
from ..shared.inference_server import InferenceServer, ServerError
from ..shared.run_health import tag_run_process
from ..shared.settings import GPU_POOL
from .checks import QUALITY_CHECK, QualityPlan, unmeasured_result
from .documents.streams import Document
from .extraction.extractor import ENTITY_TYPES, EntityExtractor, ExtractionReport
from .extraction.config import ExtractionConfig
from .resources import ExtractionAdapterChoice, LabelledSet


@dataclass(frozen=True)
class Shard:
    """Part of a night's documents for one extraction step; `index` picks the endpoint it starts
    on. Shard 0 also measures the quality check (there is always a shard 0)."""

    index: int
    documents: list[Document]


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard's step extracted, on which endpoint and with which extractor; shard 0
    carries the quality check's result as `AssetCheckResult` keyword arguments (the IO manager
    pickles this, and an AssetCheckResult does not unpickle), None on the others."""

    index: int
    endpoint: str
    extractor: str
    fingerprint: str
    report: ExtractionReport
    check: dict | None


def split_documents(documents: list[Document], endpoints: int) -> list[Shard]:
    """`documents` in at most `endpoints` shards of about equal bytes (largest first, each to the
    lightest shard), in arrival order within a shard; one empty shard for an empty night."""
    count = max(1, min(endpoints, len(documents)))
    loads, members = [0] * count, [[] for _ in range(count)]
    for position, document in sorted(enumerate(documents), key=lambda p: -p[1].size_bytes):
        lightest = loads.index(min(loads))
        loads[lightest] += document.size_bytes
        members[lightest].append(position)
    return [Shard(i, [documents[p] for p in sorted(chosen)]) for i, chosen in enumerate(members)]


def _type_table(by_type: dict[str, int]) -> MetadataValue:
    return MetadataValue.md("| type | entities |\n|---|---|\n" + "\n".join(
        f"| {t} | {by_type.get(t, 0)} |" for t in ENTITY_TYPES))


def _report_metadata(report: ExtractionReport) -> dict:
    ok = report.results
    return {
        "documents_ok": len(ok),
        "documents_failed": len(report.failures),
        "documents_deferred": len(report.deferred),
        "failures": MetadataValue.json([{"file": f, "reason": r}
                                        for f, r in report.failures.items()]),
        "deferrals": MetadataValue.json([{"file": f, "reason": r}
                                         for f, r in report.deferred.items()]),
        "entities": sum(len(r.entities) for r in ok),
        "entities_by_type": _type_table(report.entities_by_type()),
        "ungrounded_names_dropped": sum(r.ungrounded for r in ok),
        "chunks": sum(r.chunks for r in ok),
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "completion_tokens": sum(r.completion_tokens for r in ok),
        "reasoning_tokens": sum(r.reasoning_tokens for r in ok),
        "seconds": round(report.seconds, 2),
        "docs_per_s": round(len(ok) / report.seconds, 3) if report.seconds else 0.0,
    }


def _extract(context, config: ExtractionConfig, server: InferenceServer, documents: list,
             quality: QualityPlan | None):
    """Start the server (if anything is to be done), extract the documents, measure the
    quality check if `quality` asks for it: (report, check result or None)."""
    report, check = ExtractionReport(), quality and quality.known
    # The extractor counts in time.monotonic(): immune to clock steps during the night.
    deadline = time.monotonic() + (run_deadline(context, config.budget_reserve_s) - time.time())
    done = Counter()

    def on_result(document: Document, outcome: object) -> None:
        if isinstance(outcome, str):
            context.log.warning(f"{document.path}: {outcome}")
        done["documents"] += 1
        context.log.debug(f"{done['documents']}/{len(documents)} documents", extra={
            "yoyo_progress": (done["documents"], len(documents), "documents")})
        crash_point("extraction.after_first_document")

    try:
        with server.serving(context.log) as live:
            extractor = EntityExtractor(
                base_url=live.base_url, model=live.request_model,
                extractor_name=live.extractor_name(),
                tokenizer=Tokenizer.from_file(str(live.tokenizer_file())),
                context_tokens=live.context_tokens(), concurrency=config.concurrency,
                attempts=config.attempts, request_timeout_s=config.request_timeout_s,
                **config.extractor_settings(bool(live.serves_adapter)))
            if documents:
                report = asyncio.run(extractor.extract(documents, deadline, on_result))
            if quality and quality.to_measure:
                check = quality.measure(extractor, deadline)
    except ServerError as exc:
        if documents:
            raise
        # A night with nothing to extract is not failed by its measuring stick.
        check = unmeasured_result(f"inference server unusable: {exc}")
    return report, check


@op(out=DynamicOut(Shard), ins={"documents": In(), "served_adapter": In(Nothing)})
def split_night(context: OpExecutionContext, documents: list[Document],
                inference_server: InferenceServer):
    """The night's documents, one shard per inference endpoint (see `split_documents`)."""
    endpoints = len(inference_server.endpoints())
    for shard in split_documents(documents, endpoints):
        context.log.info(f"shard {shard.index}: {len(shard.documents)} documents")
        yield DynamicOutput(shard, mapping_key=f"shard_{shard.index}")


@op(pool=GPU_POOL)
def extract_shard(context: OpExecutionContext, config: ExtractionConfig, shard: Shard,
                  inference_server: InferenceServer, labelled_set: LabelledSet,
                  extraction_serving: ResourceParam[ExtractionAdapterChoice]) -> ShardOutcome:
    """Entities of the shard's documents from its endpoint (the next one on each retry), checked
    against the JSON Schema; shard 0 then scores the same extractor on the labelled set when it
    or the set changed since the last evaluation. A document that fails, or is deferred (not
    started within the budget, or the server went away), is reported and left for the next
    run; with more than one endpoint, a server that failed or went away has the shard retried
    on the next endpoint first.

    Raises:
        RetryRequested: the endpoint failed and another is left to try.
        ServerError: the (last) server could not be started or used.
    """
    tag_run_process(context)
    endpoints = inference_server.endpoints()
    endpoint = endpoints[(shard.index + context.retry_number) % len(endpoints)]
    server = extraction_serving.extractor(endpoint, context.log)
    settings = config.extractor_settings(bool(server.serves_adapter))
    quality = QualityPlan.make(context.instance, context.run.run_id, labelled_set,
                               server.identity(), settings) if shard.index == 0 else None
    report, check = ExtractionReport(), quality and quality.known
    if shard.documents or (quality and quality.to_measure):
        try:
            report, check = _extract(context, config, server, shard.documents, quality)
        except ServerError as exc:
            _retry_elsewhere(context, len(endpoints), exc)
            raise
        if report.unreachable:
            _retry_elsewhere(context, len(endpoints), report.unreachable)
    return ShardOutcome(shard.index, server.url if server.mode == "external" else "managed",
                        server.extractor_name(), quality.fingerprint if quality else "",
                        report, check._asdict() if check else None)


def _retry_elsewhere(context: OpExecutionContext, endpoints: int, why: object) -> None:
    """Ask Dagster to run the step again (on the next endpoint) while endpoints are left."""
    if context.retry_number < endpoints - 1:
        context.log.warning(f"endpoint failed ({why}); retrying the shard on the next one")
        raise RetryRequested(max_retries=endpoints - 1)


@op
def merge_shards(shards: list[ShardOutcome]) -> Output[ExtractionReport]:
    """The shards' reports as the night's one `extracted_entities` value, with its metadata."""
    shards = sorted(shards, key=lambda s: s.index)
    report = ExtractionReport.merged([s.report for s in shards])
    return Output(report, metadata={
        **_report_metadata(report), "extractor": shards[0].extractor,
        "extractor_fingerprint": shards[0].fingerprint,
        "shards": MetadataValue.json([
            {"shard": s.index, "endpoint": s.endpoint, "documents_ok": len(s.report.results),
             "documents_deferred": len(s.report.deferred), "seconds": round(s.report.seconds, 2)}
            for s in shards]),
        "status": "extracted" if report.results or report.failures or report.deferred else
                  "nothing new: every document that arrived by the night's end is already in "
                  "the graph (totals on `datagraph`)"})


@op
def extraction_quality(shards: list[ShardOutcome]):
    """The quality check's result (an AssetCheckResult: Dagster records it as the check's
    evaluation, so the op's output is not annotated as one), measured or reused by shard 0."""
    check = next(s.check for s in shards if s.index == 0)
    return AssetCheckResult(**check) if check else unmeasured_result(
        "the labelled set was not planned")


def _extraction_config(config: dict) -> dict:
    """The asset's run config (ExtractionConfig's fields) goes to every shard's step."""
    return {"extract_shard": {"config": config}}


def build_extracted_entities(nights: PartitionsDefinition, group: str,
                             served: AssetIn) -> object:
    """`extracted_entities`, partitioned by `nights`, in `group`, downstream of `served` (the
    previous night's extraction adapter: lineage only), with the `extraction_quality` check.
    Run config: `ExtractionConfig`, at `ops.extracted_entities.config` as for a plain asset."""
    quality = AssetCheckSpec(
        QUALITY_CHECK, asset="extracted_entities",
        description="Precision, recall and F1 of the serving extractor on the labelled set, per "
                    "entity type and for the name alone; warns when F1 falls.")

    @graph_asset(name="extracted_entities", group_name=group, partitions_def=nights,
                 description=(
                     "Entities of each new document from the model, checked against the JSON "
                     "Schema, the night split over the inference endpoints. Upstream: "
                     f"`{served.key.to_user_string()}` of the previous night, the loop's edge: "
                     "the night extracts through the newest extraction adapter version that "
                     "passed its gate, trained that night or earlier (metadata `extractor` "
                     "names it; the base model when none has). Lineage only: nothing is loaded "
                     "through it."),
                 ins={"documents": AssetIn(), "served_adapter": served},
                 check_specs=[quality], config=ConfigMapping(
                     config_fn=_extraction_config,
                     config_schema=ExtractionConfig.to_config_schema()))
    def extracted_entities(documents, served_adapter):
        """Entities of each new document from the model, checked against the JSON Schema, the
        night split over the inference endpoints (one step per shard); the extractor's quality
        on the labelled set as the `extraction_quality` check."""
        shards = split_night(documents, served_adapter).map(extract_shard).collect()
        return {"result": merge_shards(shards),
                "extracted_entities_extraction_quality": extraction_quality(shards)}

    return extracted_entities
