"""Phase 1 assets: documents -> extracted_entities -> graph_mutations, one partition per night."""

import asyncio
import time
from collections import Counter
from pathlib import Path

from dagster import (AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue,
                     Output, asset)
from tokenizers import Tokenizer

from ..adapters.registry import served_name, serving_version
from ..adapters.serving_check import vllm_lora_rank
from ..budget import run_deadline
from ..faults import crash_point
from ..partitions import nights
from ..resources.adapter_store import AdapterStore
from ..resources.document_streams import DocumentStreams
from ..resources.graph_store import GraphStore, WriteStats
from ..resources.inference_server import InferenceServer, ServerError
from ..resources.labelled_set import LabelledSet
from ..run_health import tag_run_process
from ..settings import GPU_POOL, extraction_tenant, phase1_budget_s
from .documents import STREAM_PATTERNS, Document
from .checks import QUALITY_CHECK, QualityPlan, unmeasured_result
from .extraction import EntityExtractor, ExtractionReport
from .extraction_config import ExtractionConfig

GROUP = "datagraph"


@asset(group_name=GROUP, partitions_def=nights)
def documents(context: AssetExecutionContext, document_streams: DocumentStreams,
              graph_store: GraphStore) -> Output[list[Document]]:
    """The night's new documents: arrived (modified) by the end of the night and not yet in the
    ledger. Bad files are rejected with file, line and reason and do not stop the others."""
    tag_run_process(context)
    night_end = context.partition_time_window.end
    scan = document_streams.scan(night_end.timestamp())
    with graph_store.open() as graph:
        known = graph.known_documents(d.sha256 for d in scan.documents)
    new = [d for d in scan.documents if d.sha256 not in known]
    for rejection in scan.rejected:
        context.log.warning(f"rejected {rejection}")
    per_stream = Counter(d.stream for d in new)
    metadata = {
        "night_ends_at": night_end.isoformat(),
        "documents": len(new),
        **{f"documents_{s}": per_stream.get(s, 0) for s in STREAM_PATTERNS},
        "bytes": sum(d.size_bytes for d in new),
        "skipped_already_processed": len(known),
        "skipped_duplicate_files": len(scan.duplicates),
        "rejected": len(scan.rejected),
        "rejections": MetadataValue.json([
            {"file": r.path, "line": r.line, "reason": r.reason} for r in scan.rejected]),
    }
    return Output(new, metadata=metadata)


def serving_extractor(server: InferenceServer, store: AdapterStore, log) -> InferenceServer:
    """`server` with the extraction adapter Phase 1 serves. Managed mode: the newest version of
    `extraction-<YOYO_EXTRACTION_TENANT>` that passed its quality gate, as a LoRA overlay on the
    model it was trained on; none, or one trained on another model: the model alone. External
    mode: `server` as configured (its `adapter` is the gateway's)."""
    if server.mode == "external" or server.lora_modules:
        return server
    version = serving_version(store.version_folder(extraction_tenant(), "extraction"))
    if version is None:
        return server
    base = server.resolved_model_dir().resolve()
    if Path(version.manifest["base_model"]["path"]) != base:
        log.warning(f"extraction adapter {version.path} was trained on "
                    f"{version.manifest['base_model']['path']}, not on the served {base}: "
                    "extracting with the model alone")
        return server
    name = served_name(version)
    rank = vllm_lora_rank(int(version.manifest["hyperparameters"]["lora_rank"]))
    return server.model_copy(update={"lora_modules": {name: str(version.path)}, "adapter": name,
                                     "max_lora_rank": rank})


def extractor_label(server: InferenceServer) -> str:
    """Provenance of extracted entities: the model (folder name, or the external server's
    model name) and the adapter, if any: `SmolLM2-135M-Instruct + pointsav-extraction-v2`."""
    model = server.model if server.mode == "external" else server.resolved_model_dir().name
    return f"{model} + {server.adapter}" if server.adapter else model


def _extractor(server: InferenceServer, config: ExtractionConfig) -> EntityExtractor:
    return EntityExtractor(
        base_url=server.base_url, model=server.request_model, label=extractor_label(server),
        tokenizer=Tokenizer.from_file(str(server.tokenizer_file())),
        context_tokens=server.context_tokens(), **config.extractor_settings(bool(server.adapter)),
        concurrency=config.concurrency, attempts=config.attempts,
        request_timeout_s=config.request_timeout_s)


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
        "entities_by_type": MetadataValue.json(report.entities_by_type()),
        "ungrounded_names_dropped": sum(r.ungrounded for r in ok),
        "chunks": sum(r.chunks for r in ok),
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "completion_tokens": sum(r.completion_tokens for r in ok),
        "reasoning_tokens": sum(r.reasoning_tokens for r in ok),
        "seconds": round(report.seconds, 2),
        "docs_per_s": round(len(ok) / report.seconds, 3) if report.seconds else 0.0,
    }


@asset(group_name=GROUP, partitions_def=nights, pool=GPU_POOL, check_specs=[AssetCheckSpec(
    QUALITY_CHECK, asset="extracted_entities",
    description="Precision, recall and F1 of the serving extractor on the labelled set, per "
                "entity type and for the name alone; warns when F1 falls.")])
def extracted_entities(context: AssetExecutionContext, config: ExtractionConfig,
                       documents: list[Document], inference_server: InferenceServer,
                       labelled_set: LabelledSet, adapter_store: AdapterStore):
    """Entities of each new document from the model, checked against the JSON Schema. A document
    that fails, or is deferred (not started within the budget, or the server went away), is
    reported and left for the next run. The same extractor is then scored on the labelled set
    (check `extraction_quality`) when it or the set changed since the last evaluation."""
    tag_run_process(context)
    inference_server = serving_extractor(inference_server, adapter_store, context.log)
    quality = QualityPlan.make(context.instance, context.run.run_id, labelled_set,
                               inference_server.identity(),
                               config.extractor_settings(bool(inference_server.adapter)))
    report, check = ExtractionReport(), quality.known
    if documents or quality.to_measure:
        # The extractor counts in time.monotonic(): immune to clock steps during the night.
        deadline = time.monotonic() + (
            run_deadline(context, phase1_budget_s(), config.budget_reserve_s) - time.time())
        try:
            with inference_server.serving(context.log) as server:
                extractor = _extractor(server, config)

                def on_result(document: Document, outcome: object) -> None:
                    if isinstance(outcome, str):
                        context.log.warning(f"{document.path}: {outcome}")
                    crash_point("extraction.after_first_document")

                if documents:
                    report = asyncio.run(extractor.extract(documents, deadline, on_result))
                if quality.to_measure:
                    check = quality.measure(extractor, deadline)
        except ServerError as exc:
            if documents:
                raise
            # A night with nothing to extract is not failed by its measuring stick.
            check = unmeasured_result(f"not measured: inference server unusable: {exc}")
    yield Output(report, metadata={**_report_metadata(report),
                                   "extractor": extractor_label(inference_server),
                                   "extractor_fingerprint": quality.fingerprint})
    yield check


@asset(group_name=GROUP, partitions_def=nights)
def graph_mutations(context: AssetExecutionContext, extracted_entities: ExtractionReport,
                    graph_store: GraphStore) -> MaterializeResult:
    """The night's entities merged into the graph, each batch of documents in one transaction
    with its ledger entries, so a crash loses at most an uncommitted batch and never counts a
    document twice."""
    night = context.partition_key
    results = extracted_entities.results
    size = graph_store.write_batch_documents
    total = WriteStats()
    with graph_store.open() as graph:
        for start in range(0, len(results), size):
            total.add(graph.write_extractions(results[start:start + size], night))
            crash_point("graph.after_commit")
        counts = graph.counts()
    crash_point("graph.before_materialization")
    return MaterializeResult(metadata={
        **vars(total),
        "graph_path": graph_store.path,
        "graph_documents": counts["documents"],
        "graph_entities": counts["entities"],
        "graph_mentions": counts["mentions"],
    })
