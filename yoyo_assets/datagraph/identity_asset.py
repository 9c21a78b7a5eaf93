"""The `resolved_mentions` asset: each person mention of the night's documents resolved to an
identity in the graph (resolution/resolver.py; graph/identity.py), downstream of `datagraph`.

The night's contact records that carry an `id` become anchors first; then each document's
person mentions are compared with the anchors their surnames block on, read from the graph by
key, so the night's cost follows its mentions. Forms resolved in an earlier run stay as they
are.
"""


from collections import Counter
from pathlib import Path

import yaml
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from ..resolution.names import parse_person
from ..resolution.resolver import Anchor, Mention, Resolver, anchor_of_contact, attach_places
from .corrections.stream import read_corrections
from .documents.streams import Document
from .extraction.extractor import DocumentExtraction, ExtractionReport
from .graph.identity import ResolvedMention
from .resources import DocumentStreams, GraphStore


def anchor_of_document(document: Document) -> "Anchor | None":
    """The anchor a contact record document makes (its text is the record as YAML), or None."""
    if document.stream != "contacts":
        return None
    record = yaml.safe_load(document.text)
    return anchor_of_contact(record) if isinstance(record, dict) else None


def _persons(extraction: DocumentExtraction) -> list[str]:
    return [e.name for e in extraction.entities if e.type == "person"]


def _resolve(resolver: Resolver, names: dict[str, str], extraction: DocumentExtraction,
             text: str, own: Anchor | None) -> list[ResolvedMention]:
    """One document's person forms resolved (`names`: anchor id -> its record's name); a
    contact record names its own anchor first."""
    persons = _persons(extraction)
    places = attach_places(text, persons, [e.name for e in extraction.entities
                                           if e.type == "location"])
    resolved = [ResolvedMention(extraction.sha256, own.name, "person", own.id, own.name,
                                "record id")] if own else []
    for resolution in resolver.resolve_document(
            extraction.sha256, [Mention(extraction.sha256, p, places.get(p, ()))
                                for p in persons], text):
        resolved.append(ResolvedMention(extraction.sha256, resolution.mention.name, "person",
                                        resolution.entity,
                                        names.get(resolution.entity, resolution.mention.name),
                                        resolution.reason))
    return resolved


def resolved_mentions(context: AssetExecutionContext, documents: list[Document],
                      extracted_entities: ExtractionReport, graph_store: GraphStore,
                      document_streams: DocumentStreams) -> MaterializeResult:
    """The night's person mentions resolved to identities: linked to the contact record that
    fits them, or kept apart when unsure (a wrong merge costs more than a missed one); then
    operators' identity decisions made by the night's end (`same`, `not_same` lines of the
    corrections stream), each applied once. Numeric metadata, plotted across nights: mentions
    resolved, linked to a record, kept apart, new identities, resolutions by reason,
    decisions applied and waiting."""
    night = context.partition_key
    decisions = read_corrections(Path(document_streams.root),
                                 context.partition_time_window.end.timestamp(),
                                 document_streams.max_document_bytes,
                                 decisions_only=True).decisions
    texts = {d.sha256: d for d in documents}
    anchors = {d.sha256: a for d in documents if (a := anchor_of_document(d)) is not None}
    with graph_store.open() as graph:
        new_anchors = graph.record_anchors(list(anchors.values()), night)
        in_ledger = graph.known_documents(x.sha256 for x in extracted_entities.results)
        results = [x for x in extracted_entities.results if x.sha256 in in_ledger]
        words = {w for x in results for p in _persons(x) for w in parse_person(p).surnames}
        resolver = Resolver(graph.anchors_named(words))
        names = {a.id: a.name for a in resolver.anchors}
        resolved = [r for x in results for r in _resolve(
            resolver, names, x, texts[x.sha256].text if x.sha256 in texts else "",
            anchors.get(x.sha256))]
        stats = graph.record_resolutions(resolved, night, decisions)
    reasons = Counter(r.reason for r in resolved)
    context.log.info(f"{stats.resolved} person mentions resolved ({stats.anchored} to a "
                     f"contact record, {stats.kept_apart} kept apart)")
    return MaterializeResult(metadata={
        "mentions_resolved": stats.resolved, "mentions_already_resolved": stats.already_resolved,
        "mentions_anchored": stats.anchored, "mentions_kept_apart": stats.kept_apart,
        "identities_created": stats.identities_created, "anchors_recorded": len(anchors),
        "decisions_applied": stats.decisions_applied,
        "decisions_already_applied": stats.decisions_already_applied,
        "decisions_waiting": stats.decisions_waiting, "decisions_moot": stats.decisions_moot,
        "anchors_new": new_anchors,
        **{f"resolved_by_{reason.replace(' ', '_').replace('+', '_')}": count
           for reason, count in sorted(reasons.items())},
        "sample": MetadataValue.json([vars(r) for r in resolved[:20]])})
