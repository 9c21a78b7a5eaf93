"""Phase 1 assets, one partition per night: documents -> extracted_entities -> datagraph, with
operators' corrections applied in the graph and turned into training material
(corrections -> datagraph -> correction_tuples, which Phase 2's buckets take).

The asset bodies are module-level functions; `build_datagraph_assets` decorates them with the
night partitions. The work is in the domain folders (documents/, extraction/, corrections/,
graph/) and checks.py.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, Failure,
                     MaterializeResult, MetadataValue, Nothing, Output, PartitionsDefinition,
                     ResourceParam, TimeWindowPartitionMapping, asset)
from tokenizers import Tokenizer

from ..shared.atomic import write_atomically
from ..shared.faults import crash_point
from ..shared.inference_server import InferenceServer
from ..shared.run_health import tag_run_process
from .corrections.stream import Correction, CorrectionOutcome, PlannedCorrection, read_corrections
from .documents.streams import STREAM_PATTERNS, Document
from .extraction.extractor import DocumentExtraction, ExtractionReport
from .extraction_asset import build_extracted_entities
from .extraction.config import ExtractionConfig
from .corrections.tuples import CorrectionMaterial, correction_material
from .extraction.batch import InvalidBatch
from .graph.client import GraphServiceRejected, GraphServiceUnavailable
from .graph.store import DataGraph, NightTotals, WriteStats
from .graph.wire import request_id
from .identity_asset import resolved_mentions
from .resources import BucketFolders, DocumentStreams, ExtractionAdapterChoice, GraphStore

GROUP = "datagraph"


def documents(context: AssetExecutionContext, document_streams: DocumentStreams,
              graph_store: GraphStore) -> Output[list[Document]]:
    """The night's new documents: arrived (modified) by the end of the night and not yet in the
    ledger. Only files changed since the ledger recorded them are opened (the scan index).
    Bad files are rejected with file, line and reason and do not stop the others."""
    tag_run_process(context)
    night_end = context.partition_time_window.end
    scan = document_streams.scan(night_end.timestamp())
    with graph_store.open() as graph:
        known = graph.known_documents(d.sha256 for d in scan.documents)
    document_streams.mark_recorded(known)
    new = [d for d in scan.documents if d.sha256 not in known]
    for rejection in scan.rejected:
        context.log.warning(f"rejected {rejection}")
    per_stream = Counter(d.stream for d in new)
    return Output(new, metadata={
        "night_ends_at": night_end.isoformat(),
        "documents": len(new),
        **{f"documents_{s}": per_stream.get(s, 0) for s in STREAM_PATTERNS},
        "bytes": sum(d.size_bytes for d in new),
        "skipped_already_processed": len(known),
        "skipped_unchanged_unopened": scan.unchanged,
        "files_opened": scan.opened,
        "skipped_duplicate_files": len(scan.duplicates),
        "rejected": len(scan.rejected),
        "rejections": MetadataValue.json([
            {"file": r.path, "line": r.line, "reason": r.reason} for r in scan.rejected]),
    })


def _planned(scan_corrections: list[Correction], previews: list[CorrectionOutcome],
             documents: list[Document]) -> list[PlannedCorrection]:
    """The corrections with their previews; one of a document new tonight (not in the ledger
    yet, written by this night's `datagraph`) is applicable, its extractor's answer unknown."""
    tonight = {d.sha256: d for d in documents}
    planned = []
    for correction, preview in zip(scan_corrections, previews):
        new = tonight.get(correction.document)
        if preview.status == "waiting" and new is not None:
            preview = CorrectionOutcome(correction.id, correction.document, "applicable",
                                        new.path, new.stream)
        planned.append(PlannedCorrection(correction, preview))
    return planned


def corrections(context: AssetExecutionContext, documents: list[Document],
                document_streams: DocumentStreams,
                graph_store: GraphStore) -> Output[list[PlannedCorrection]]:
    """Operators' corrections made by the end of the night (`<data root>/corrections/*.jsonl`,
    docs/corrections.md), the latest per document, each with what the graph would do with it
    (applicable, already applied, superseded, or waiting for its document). Bad lines are
    rejected with file, line and reason and do not stop the others."""
    night_end = context.partition_time_window.end
    scan = read_corrections(Path(document_streams.root), night_end.timestamp(),
                            document_streams.max_document_bytes)
    for rejection in scan.rejected:
        context.log.warning(f"rejected correction {rejection}")
    previews = []
    if scan.corrections:
        with graph_store.open() as graph:
            previews = graph.apply_corrections(scan.corrections, context.partition_key,
                                               preview=True)
    planned = _planned(scan.corrections, previews, documents)
    status = Counter(p.preview.status for p in planned)
    return Output(planned, metadata={
        "corrections": len(planned),
        **{f"corrections_{s}": status.get(s, 0)
           for s in ("applicable", "already_applied", "superseded", "waiting")},
        "operators": len({p.correction.by for p in planned}),
        "later_than_the_night": scan.later,
        "rejected": len(scan.rejected),
        "rejections": MetadataValue.json([
            {"file": r.path, "line": r.line, "reason": r.reason} for r in scan.rejected]),
    })


def _night_metadata(totals: NightTotals) -> dict:
    """The night's totals in the graph, whichever run wrote them."""
    sample = "| entity | type | mentions |\n|---|---|---|\n" + "\n".join(
        f"| {name.replace('|', '/')} | {type_} | {n} |" for name, type_, n in totals.sample)
    return {"night_documents": totals.documents, "night_entities": totals.entities,
            "night_mentions": totals.mentions,
            "night_entities_by_type": MetadataValue.json(totals.entities_by_type),
            "night_top_entities": MetadataValue.md(sample)}


@dataclass
class _Written:
    """What one run's batches did: stats of those written; deferred and rejected batches."""

    stats: WriteStats = field(default_factory=WriteStats)
    deferred: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)


def _batch_entry(batch: list[DocumentExtraction], reason: str) -> dict:
    return {"request_id": request_id([x.sha256 for x in batch]), "documents": len(batch),
            "first_file": batch[0].path, "reason": reason}


def _write_batches(graph: DataGraph, results: list[DocumentExtraction], size: int,
                   night: str) -> _Written:
    """Write `results` in batches of `size` documents, one transaction each. Once the graph
    service is unavailable, this batch and the rest are deferred (not in the ledger, so the next
    run extracts and writes them); a batch the graph refuses (extraction/batch.py's rules, or the
    service's answer) is recorded and the rest go on."""
    written = _Written()
    batches = [results[start:start + size] for start in range(0, len(results), size)]
    for index, batch in enumerate(batches):
        try:
            written.stats.add(graph.write_extractions(batch, night))
        except GraphServiceUnavailable as exc:
            written.deferred = [_batch_entry(b, str(exc)) for b in batches[index:]]
            break
        except (GraphServiceRejected, InvalidBatch) as exc:
            written.rejected.append(_batch_entry(batch, str(exc)))
            continue
        crash_point("graph.after_commit")
    return written


def _apply_corrections(context: AssetExecutionContext, graph: DataGraph,
                       planned: list[PlannedCorrection], night: str) -> dict:
    """Apply the night's applicable corrections in one transaction; when the graph service is
    unavailable they wait for the next run, when it refuses them the asset fails. Returns the
    metadata: how many of the night's corrections were applied, or are waiting and why."""
    applicable = [p.correction for p in planned if p.preview.status == "applicable"]
    outcomes = []
    try:
        outcomes = graph.apply_corrections(applicable, night)
    except GraphServiceUnavailable as exc:
        context.log.warning(f"corrections not applied, graph service unavailable: {exc}")
    except (GraphServiceRejected, InvalidBatch) as exc:
        raise Failure(f"the graph refused the night's corrections: {exc}") from None
    applied = sum(o.status == "applied" for o in outcomes)
    before = Counter(p.preview.status for p in planned)
    return {"corrections_applied": applied,
            "corrections_already_applied": before["already_applied"],
            "corrections_superseded": before["superseded"],
            "corrections_waiting": before["waiting"] + len(applicable) - applied,
            "corrected_documents": MetadataValue.json([
                {"document": o.document, "path": o.path, "status": o.status}
                for o in outcomes[:100]])}


def datagraph(context: AssetExecutionContext, extracted_entities: ExtractionReport,
              corrections: list[PlannedCorrection], graph_store: GraphStore) -> MaterializeResult:
    """The night's entities merged into the graph, each batch of documents in one transaction
    with its ledger entries, so a crash loses at most an uncommitted batch and never counts a
    document twice; then operators' applicable corrections, in one transaction, each once.
    Batches the graph service could not take are deferred to the next run, with the
    corrections; batches it refused fail the asset with its answer, after the others are
    written. Its metadata holds what this run wrote and the night's totals."""
    night = context.partition_key
    with graph_store.open() as graph:
        written = _write_batches(graph, extracted_entities.results,
                                 graph_store.write_batch_documents, night)
        crash_point("graph.before_materialization")
        metadata = {
            **{f"run_{name}": value for name, value in vars(written.stats).items()},
            "run_documents_deferred": sum(b["documents"] for b in written.deferred),
            "deferred_batches": MetadataValue.json(written.deferred),
            "graph_location": graph_store.location()}
        if written.rejected:
            raise Failure(f"the graph refused {len(written.rejected)} batch(es); "
                          f"first: {written.rejected[0]['reason']}", metadata={
                              **metadata, "rejected_batches": MetadataValue.json(written.rejected)})
        if written.deferred:
            context.log.warning(f"{metadata['run_documents_deferred']} documents deferred to "
                                f"the next run: {written.deferred[0]['reason']}")
            return MaterializeResult(metadata={"status": "deferred: graph service unavailable",
                                               **metadata})
        metadata.update(_apply_corrections(context, graph, corrections, night))
        counts, totals = graph.counts(), graph.night_totals(night)
    return MaterializeResult(metadata={
        "status": "written" if extracted_entities.results else
                  "nothing new this run; the night's totals below",
        **_night_metadata(totals), **metadata,
        **{f"graph_{name}": value for name, value in counts.items()}})


def _night_material(planned: list[PlannedCorrection], night: str) -> list[PlannedCorrection]:
    """The corrections this night applies, or applied in an earlier run of the same night."""
    return [p for p in planned if p.preview.status == "applicable" or (
        p.preview.status == "already_applied" and p.preview.applied_night == night)]


def correction_tuples(context: AssetExecutionContext, config: ExtractionConfig,
                      corrections: list[PlannedCorrection], inference_server: InferenceServer,
                      corpus_buckets: ResourceParam[BucketFolders],
                      extraction_serving: ResourceParam[ExtractionAdapterChoice]
                      ) -> MaterializeResult:
    """The corrections the night applies as training material for the serving tenant's
    extraction adapter, in `extraction-<tenant>/corrections-<night>.jsonl` (written whole; a
    re-run writes the same): SFT tuples and, where the extractor had answered a chunk
    differently, DPO pairs, which that adapter's DPO pass trains on (the rejected answers are
    the extractor's own, so they belong to no other model)."""
    night = context.partition_key
    used = _night_material(corrections, night)
    material = CorrectionMaterial()
    if used:
        tokenizer = Tokenizer.from_file(str(inference_server.tokenizer_file()))
        material = correction_material([(p.preview, p.correction) for p in used], tokenizer,
                                       config.max_chunk_tokens or 512, config.answer_format)
    for correction_id, reason in material.skipped.items():
        context.log.warning(f"correction {correction_id[:12]} gave no tuples: {reason}")
    tenant, arrived = extraction_serving.tenant, context.partition_time_window.end.timestamp() - 1
    files, records = {}, material.sft + material.dpo
    if records:
        path = corpus_buckets.bucket_folder("extraction", tenant) / f"corrections-{night}.jsonl"
        write_atomically(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                                       for r in records), mtime=arrived)
        files["extraction_file"] = MetadataValue.path(str(path))
    return MaterializeResult(metadata={
        "corrections_used": len(used) - len(material.skipped),
        "corrections_skipped": len(material.skipped), "sft_tuples": len(material.sft),
        "dpo_pairs": len(material.dpo), "tenant": tenant, **files})


def build_datagraph_assets(nights: PartitionsDefinition,
                           extraction_adapter: AssetKey) -> list[AssetsDefinition]:
    """Phase 1's assets, partitioned by `nights`: documents and corrections -> extracted_entities
    (fanned out over the inference endpoints, extraction_asset.py) -> datagraph ->
    correction_tuples. `extracted_entities` depends on the previous night of
    `extraction_adapter` (Phase 2's extraction adapter asset): the loop, in the lineage."""
    common = dict(group_name=GROUP, partitions_def=nights)
    # A night serves the newest version that passed its gate, trained the night before or
    # earlier (the `extractor` metadata names it); the edge to the previous night says where
    # a new one comes from. Not a data input: nothing is loaded through it.
    served = AssetIn(extraction_adapter, dagster_type=Nothing,
                     partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))
    return [asset(**common)(documents),
            asset(**common)(corrections),
            build_extracted_entities(nights, GROUP, served),
            asset(**common)(datagraph),
            asset(**common, deps=["datagraph"])(resolved_mentions),
            asset(**common)(correction_tuples)]
