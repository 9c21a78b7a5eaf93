"""Extraction quality against labelled data: precision, recall and F1 per entity type and for
the name alone ("any type"), with the confusion of types.

A labelled set is a folder of documents plus `gold.json`: `{"<path relative to the folder>": [{"name": str,
"type": str, "source_label": str (optional)}, ...]}`. Documents sit in stream folders like the data
root (`transcripts/`, `research/`, `contacts/`) or directly in the folder (`*.json`: contact
records, `*.md|*.yaml|*.yml`: research notes). A contact record without an entry in gold.json is
scored against gold derived from its own fields (`contact_gold`).

Names match after NFKC, whitespace collapsing, outer punctuation stripping and case-folding
(`extraction.normalise_name`). Counts are micro-averaged over documents: each document's gold
and predicted names are sets, so a name counts once per document however often it occurs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..documents.streams import STREAM_PATTERNS, Document, DocumentError, read_document
from .extractor import (ENTITY_TYPES, DocumentExtraction, EntityExtractor, ExtractionReport,
                         normalise_name)

#: "Any type": the name alone, whatever type either side gives it.
ANY_TYPE = "any"

#: The entity type a gold `source_label` is scored as. WNUT-17 labels (the labelled corpora the
#: benchmarks use): `group` covers organisations, teams, bands and parties, which
#: this schema calls `company` ("a company, institution or other organisation"); `product` is
#: this schema's `project` ("a named project, product or programme"). `creative-work` has no
#: counterpart: such names count for "any type" only.
TYPE_OF_SOURCE_LABEL = {
    "person": "person",
    "corporation": "company",
    "group": "company",
    "location": "location",
    "product": "project",
    "creative-work": None,
}


@dataclass(frozen=True)
class GoldEntity:
    """One labelled entity of a document: its surface name and the type it is scored as
    (one of `ENTITY_TYPES`, or None: scored for the name alone)."""

    name: str
    type: str | None


@dataclass
class LabelledDocument:
    """A readable document of a labelled set with its gold entities."""

    document: Document
    gold: list[GoldEntity]


class SetNotScored(RuntimeError):
    """Documents of a labelled set were deferred (the server stopped answering, or the budget
    ended before they started): scored as extracting nothing, they would report a false F1."""


class LabelledSetError(ValueError):
    """A labelled set that cannot be used: missing folder, unreadable gold.json, a document
    without gold that is not a contact record, or an unreadable document (the message names the
    file and, where known, the line)."""


def _name_key(name: str) -> str:
    return normalise_name(name).casefold()


def _scored_type(item: dict) -> str | None:
    label = item.get("source_label")
    if label in TYPE_OF_SOURCE_LABEL:
        return TYPE_OF_SOURCE_LABEL[label]
    return item.get("type") if item.get("type") in ENTITY_TYPES else None


def contact_gold(record: dict) -> list[GoldEntity]:
    """Gold entities of a contact record from its own fields: `name` -> person; `company` and
    each of `committees` -> company; `represents`, `city` and each office's `city` -> location.
    Missing or empty fields give nothing; duplicates are kept once."""
    found: list[GoldEntity] = []

    def add(value: object, type_: str) -> None:
        if isinstance(value, str) and value.strip():
            entity = GoldEntity(value.strip(), type_)
            if entity not in found:
                found.append(entity)

    add(record.get("name"), "person")
    add(record.get("company"), "company")
    for committee in record.get("committees") or []:
        add(committee, "company")
    add(record.get("represents"), "location")
    add(record.get("city"), "location")
    for office in record.get("offices") or []:
        if isinstance(office, dict):
            add(office.get("city"), "location")
    return found


def _stream_of(relative: Path) -> str | None:
    if len(relative.parts) > 1 and relative.parts[0] in STREAM_PATTERNS:
        stream = relative.parts[0]
        return stream if any(relative.match(p) for p in STREAM_PATTERNS[stream]) else None
    if len(relative.parts) == 1:
        suffix = relative.suffix.lower()
        if suffix == ".json":
            return "contacts"
        if suffix in (".md", ".yaml", ".yml"):
            return "research"
    return None


def load_labelled_set(folder: Path) -> list[LabelledDocument]:
    """Every document of the labelled set in `folder`, in path order, with its gold.

    Raises:
        LabelledSetError: the folder or its documents are missing, gold.json is not a JSON
            object of lists, a document is unreadable (file and line named), or a document other
            than a contact record has no gold.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelledSetError(f"labelled set {folder}: not a folder")
    gold_path = folder / "gold.json"
    try:
        gold = json.loads(gold_path.read_text(encoding="utf-8")) if gold_path.exists() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelledSetError(f"{gold_path}: unreadable: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise LabelledSetError(f"{gold_path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
    if not isinstance(gold, dict) or not all(isinstance(v, list) for v in gold.values()):
        raise LabelledSetError(f"{gold_path}: expected an object of lists of entities")

    labelled = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        stream = _stream_of(relative)
        if stream is None or path == gold_path:
            continue
        try:
            document = read_document(path, stream)
        except DocumentError as exc:
            raise LabelledSetError(f"labelled set: {exc}") from exc
        items = gold.get(relative.as_posix())
        if items is not None:
            entities = [GoldEntity(i["name"], _scored_type(i)) for i in items
                        if isinstance(i, dict) and isinstance(i.get("name"), str)]
        elif stream == "contacts":
            entities = contact_gold(json.loads(path.read_bytes()))
        else:
            raise LabelledSetError(f"{path}: no gold entities in {gold_path}")
        labelled.append(LabelledDocument(document, entities))
    if not labelled:
        raise LabelledSetError(f"labelled set {folder}: no documents")
    return labelled


@dataclass
class Score:
    """True positives, false positives and false negatives, with precision, recall and F1
    (each 0.0 when undefined)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, gold: set, predicted: set) -> None:
        self.tp += len(gold & predicted)
        self.fp += len(predicted - gold)
        self.fn += len(gold - predicted)


@dataclass
class QualityReport:
    """Scores of one extractor over one labelled set.

    `scores` maps `ANY_TYPE` and each of `ENTITY_TYPES` to a `Score`; `confusion` counts
    (gold type, predicted type) for names found on both sides, with `"missed"` as the predicted
    type of gold names not found and `"spurious"` as the gold type of predicted names not in the
    gold (gold type `"unscored"`: a gold name with no counterpart type). `failures` maps the
    documents whose extraction failed to the reason (their gold counts as missed).
    """

    documents: int = 0
    scores: dict[str, Score] = field(
        default_factory=lambda: {t: Score() for t in (ANY_TYPE, *ENTITY_TYPES)})
    confusion: Counter = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, gold: list[GoldEntity], predicted: DocumentExtraction | None) -> None:
        """Score one document: `predicted` None means its extraction failed."""
        self.documents += 1
        gold_types: dict[str, set[str]] = {}
        for entity in gold:
            gold_types.setdefault(_name_key(entity.name), set()).add(entity.type or "unscored")
        predicted_types: dict[str, set[str]] = {}
        for entity in predicted.entities if predicted else []:
            predicted_types.setdefault(_name_key(entity.name), set()).add(entity.type)
        self.scores[ANY_TYPE].add(set(gold_types), set(predicted_types))
        for type_ in ENTITY_TYPES:
            self.scores[type_].add({n for n, ts in gold_types.items() if type_ in ts},
                                   {n for n, ts in predicted_types.items() if type_ in ts})
        for name, types in gold_types.items():
            for gold_type in types:
                for predicted_type in predicted_types.get(name, {"missed"}):
                    self.confusion[(gold_type, predicted_type)] += 1
        for name, types in predicted_types.items():
            if name not in gold_types:
                for predicted_type in types:
                    self.confusion[("spurious", predicted_type)] += 1

    def metrics(self) -> dict[str, float]:
        """Flat figures for metadata: `<type>_precision|_recall|_f1` rounded to 4 places, and
        `<type>_gold` (gold names of that type)."""
        figures: dict[str, float] = {}
        for type_, score in self.scores.items():
            figures[f"{type_}_precision"] = round(score.precision, 4)
            figures[f"{type_}_recall"] = round(score.recall, 4)
            figures[f"{type_}_f1"] = round(score.f1, 4)
            figures[f"{type_}_gold"] = score.tp + score.fn
        return figures

    def markdown(self) -> str:
        """Per-type table (precision, recall, F1, gold and predicted counts) and the confusion
        of types as markdown."""
        lines = ["| type | precision | recall | F1 | gold | predicted |", "|---|---|---|---|---|---|"]
        for type_, s in self.scores.items():
            lines.append(f"| {type_} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
                         f"{s.tp + s.fn} | {s.tp + s.fp} |")
        predicted_types = [*ENTITY_TYPES, "missed"]
        gold_types = sorted({g for g, _ in self.confusion}, key=lambda t: (
            t not in ENTITY_TYPES, ENTITY_TYPES.index(t) if t in ENTITY_TYPES else 0, t))
        lines += ["", "Confusion (rows: gold type, columns: predicted type)", "",
                  "| gold \\ predicted | " + " | ".join(predicted_types) + " |",
                  "|---|" + "---|" * len(predicted_types)]
        for gold_type in gold_types:
            cells = [str(self.confusion.get((gold_type, p), 0)) for p in predicted_types]
            lines.append(f"| {gold_type} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def score_extractions(labelled: list[LabelledDocument], results: list[DocumentExtraction],
                      failures: dict[str, str]) -> QualityReport:
    """Score `results` (matched to `labelled` by document path) against the gold; a document
    with no result counts as extracting nothing (its failure reason, if any, is kept)."""
    by_path = {r.path: r for r in results}
    report = QualityReport()
    for item in labelled:
        path = item.document.path
        report.add(item.gold, by_path.get(path))
        if path not in by_path:
            report.failures[path] = failures.get(path, "no result")
    return report


def extract_and_score(extractor: EntityExtractor, labelled: list[LabelledDocument],
                      deadline: float | None = None) -> tuple[ExtractionReport, QualityReport]:
    """Extract the documents of `labelled` with `extractor` (concurrently, as a night does; none
    started after `deadline`, a `time.monotonic()` value) and score them against their gold.

    Raises:
        SetNotScored: a document was deferred; the message gives how many and the first reason.
    """
    run = asyncio.run(extractor.extract([d.document for d in labelled], deadline))
    if run.deferred:
        reason = run.unreachable or next(iter(run.deferred.values()))
        raise SetNotScored(f"{len(run.deferred)} of {len(labelled)} labelled documents "
                           f"deferred, not scored: {reason}")
    return run, score_extractions(labelled, run.results, run.failures)
