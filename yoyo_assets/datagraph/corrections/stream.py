"""Operators' corrections: the complete list of entities an operator confirms for a document,
read from `<data root>/corrections/*.jsonl` (format: docs/corrections.md, `CORRECTION_SCHEMA`).

A correction names its document by SHA-256 (`document`), or by `path` as a convenience (the file
is hashed as it is now). Every line is checked on its own: a bad one is reported with file, line
and reason and costs nothing else. A correction belongs to the first night whose end is at or
after its `at`; of several for one document, the latest `at` wins (then the later file and
line). Its id, the SHA-256 of its canonical JSON, is what the graph records, so applying one
twice changes nothing.

`CorrectionBatch` holds the rules a graph applies corrections under (both sinks: the embedded
writer checks a batch with them, the graph service validates each request with them).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, Field, ValidationError, model_validator

from ...shared.input_files import (InvalidJson, UnusableFile, isolated, parse_json, quoted,
                                  read_regular_file, read_text_lines)
from ...shared.json_schema import schema_violation
from ...shared.jsonl import InvalidLine
from ...shared.text import printable
from ..documents.streams import DEFAULT_MAX_DOCUMENT_BYTES
from ..extraction.extractor import ENTITY_TYPES, MAX_NAME_CHARS, entity_key, normalise_name
from ..extraction.batch import (MAX_ENTITIES_PER_DOCUMENT, MAX_KEY_CHARS, InvalidBatch, Night,
                                SafeText, Sha256, StrictModel, check_once, describe)
from .identity_decisions import IdentityDecision, is_decision, parse_decision

#: Longest operator name (`by`), characters.
MAX_OPERATOR_CHARS = 200
#: Corrections one graph request may hold.
MAX_CORRECTIONS_PER_BATCH = 10_000
#: Largest corrections file read, bytes (a full request of 10,000 corrections is ~10 MiB).
MAX_FILE_BYTES = 64 * 2**20
#: The folder under the data root that corrections arrive in.
FOLDER = "corrections"

CORRECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "document": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "path": {"type": "string", "minLength": 1, "maxLength": 4096},
        "entities": {"type": "array", "maxItems": MAX_ENTITIES_PER_DOCUMENT, "items": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1,
                                    "maxLength": MAX_NAME_CHARS},
                           "type": {"enum": list(ENTITY_TYPES)}},
            "required": ["name", "type"], "additionalProperties": False}},
        "by": {"type": "string", "minLength": 1, "maxLength": MAX_OPERATOR_CHARS},
        "at": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "required": ["entities", "by", "at"],
    "anyOf": [{"required": ["document"]}, {"required": ["path"]}],
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(CORRECTION_SCHEMA)


def _instant(text: str) -> str:
    """An RFC 3339 time with its offset, as UTC `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00` (so that
    times compare as text). Raises ValueError otherwise."""
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset (write Z or +hh:mm)")
    return moment.astimezone(datetime.timezone.utc).isoformat()


def _canonical_instant(text: str) -> str:
    if _instant(text) != text:
        raise ValueError("not a UTC time as corrections.read_corrections writes it")
    return text


Instant = Annotated[str, Field(max_length=40), AfterValidator(_canonical_instant)]


class ConfirmedEntity(StrictModel):
    """One entity an operator confirms: graph key (`extraction.entity_key` of type and name),
    display name and type."""

    key: SafeText(MAX_KEY_CHARS)
    name: SafeText(MAX_NAME_CHARS)
    type: Literal[ENTITY_TYPES]

    @model_validator(mode="after")
    def _key_is_type_and_name(self) -> "ConfirmedEntity":
        if self.key != entity_key(self.name, self.type):
            raise ValueError(f"key {self.key!r} is not the key of its type and name")
        return self


class Correction(StrictModel):
    """One correction as a graph applies it: its id, the document's SHA-256, the confirmed
    entities (each key once; none: the document names no entity), who and when (UTC)."""

    id: Sha256
    document: Sha256
    entities: list[ConfirmedEntity] = Field(max_length=MAX_ENTITIES_PER_DOCUMENT)
    by: SafeText(MAX_OPERATOR_CHARS)
    at: Instant

    @model_validator(mode="after")
    def _entities_once(self) -> "Correction":
        check_once("entities", "entity", [repr(entity.key) for entity in self.entities])
        return self


class CorrectionBatch(StrictModel):
    """Corrections applied in one transaction during `night` (each document once)."""

    night: Night
    corrections: list[Correction] = Field(min_length=1, max_length=MAX_CORRECTIONS_PER_BATCH)

    @model_validator(mode="after")
    def _documents_once(self) -> "CorrectionBatch":
        check_once("corrections", "document", [c.document for c in self.corrections])
        return self


def check_corrections(corrections: list[Correction], night: str) -> CorrectionBatch:
    """The batch, checked against the rules above.

    Raises:
        extraction.batch.InvalidBatch: naming the field of the first broken rules.
    """
    try:
        return CorrectionBatch.model_validate(
            {"night": night, "corrections": [c.model_dump() for c in corrections]})
    except ValidationError as exc:
        raise InvalidBatch(describe(exc)) from None


@dataclass(frozen=True)
class CorrectionOutcome:
    """What a graph did, or (previewed) would do, with one correction: `status` is `applied`
    (now), `applicable` (a preview: it would be applied), `already_applied` (by an earlier run:
    nothing changes), `superseded` (a later correction of the document is applied) or `waiting`
    (the document is not in the ledger yet). Except when waiting: the document's `path` and
    `stream` as the ledger holds them; when applied: the night that applied it; and
    `extractor_answer`, the (name, type) pairs the extractor had answered before any
    correction (None: not known, the document had not been extracted)."""

    id: str
    document: str
    status: Literal["applied", "applicable", "already_applied", "superseded", "waiting"]
    path: str = ""
    stream: str = ""
    applied_night: str = ""
    extractor_answer: list[tuple[str, str]] | None = None


@dataclass(frozen=True)
class PlannedCorrection:
    """One of a night's corrections with what the graph said of it before the night's writes
    (`preview`): the `corrections` asset's output."""

    correction: Correction
    preview: CorrectionOutcome


@dataclass
class CorrectionScan:
    """The corrections of a night (the latest per document, in document order), the
    operators' identity decisions made by then (file order), the lines rejected, and how many
    valid lines are later than the night."""

    corrections: list[Correction] = field(default_factory=list)
    rejected: list[InvalidLine] = field(default_factory=list)
    later: int = 0
    decisions: list[IdentityDecision] = field(default_factory=list)


def _document_hash(record: dict, data_root: Path, max_bytes: int) -> str:
    """The SHA-256 of the document the record names: its `document`, or the bytes of its
    `path` (a regular file inside the data root, at most `max_bytes`: a larger one was never
    read as a document, so no correction can apply to it)."""
    if "document" in record:
        return record["document"]
    path = Path(record["path"])
    path = path if path.is_absolute() else data_root / path
    if not os.path.realpath(path).startswith(os.path.realpath(data_root) + os.sep):
        raise ValueError(f"path {quoted(record['path'])} is outside the data root")
    try:
        data, _ = read_regular_file(path, data_root, max_bytes)
    except UnusableFile as exc:
        raise ValueError(f"path {quoted(record['path'])}: {exc.reason}") from None
    except OSError as exc:
        raise ValueError(f"path {quoted(record['path'])}: {exc.strerror or exc}") from None
    return hashlib.sha256(data).hexdigest()


def parse_correction(text: str, data_root: Path,
                     max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> Correction:
    """One line of a corrections file as a `Correction`; a `path` is read under
    `max_document_bytes` (bytes).

    Raises:
        ValueError: not JSON (or nested too deeply, a number too large), breaks
            `CORRECTION_SCHEMA` or `Correction`'s rules (the message names the field), or its
            `path` cannot be read.
    """
    try:
        record = parse_json(text)
    except InvalidJson as exc:
        raise ValueError(f"not JSON: {exc.reason}") from None
    return _correction_of(record, data_root, max_document_bytes)


def parse_line(text: str, data_root: Path,
               max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
               decisions_only: bool = False) -> Correction | IdentityDecision | None:
    """One line of a corrections file: a document's `Correction`, or an operator's
    `identity_decisions.IdentityDecision` (a line with `same` or `not_same`); with
    `decisions_only`, None for a line that is no decision (nothing of it is read further).

    Raises:
        ValueError: as `parse_correction`, or `identity_decisions.parse_decision`.
    """
    try:
        record = parse_json(text)
    except InvalidJson as exc:
        raise ValueError(f"not JSON: {exc.reason}") from None
    if not is_decision(record):
        return None if decisions_only else _correction_of(record, data_root,
                                                          max_document_bytes)
    try:
        at = _instant(record["at"]) if isinstance(record.get("at"), str) else ""
    except ValueError as exc:
        raise ValueError(f"at at: {exc}") from None
    return parse_decision(record, at)


def _correction_of(record: Any, data_root: Path, max_document_bytes: int) -> Correction:
    """`parse_correction` of a parsed line."""
    if isinstance(record, dict) and not {"document", "path"} & set(record):
        raise ValueError("at (root): names no document: give `document` (its SHA-256) or `path`")
    problem = schema_violation(_VALIDATOR, record)
    if problem:
        raise ValueError(problem)
    entities = {}
    for index, entity in enumerate(record["entities"]):
        name = normalise_name(entity["name"])
        if not name:
            raise ValueError(f"at entities/{index}/name: no name left once normalised")
        entities.setdefault(entity_key(name, entity["type"]),
                            {"name": name, "type": entity["type"]})
    try:
        at = _instant(record["at"])
    except ValueError as exc:
        raise ValueError(f"at at: {exc}") from None
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    try:
        return Correction.model_validate({
            "id": hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
            "document": _document_hash(record, data_root, max_document_bytes),
            "by": record["by"], "at": at,
            "entities": [{"key": key, **e} for key, e in entities.items()]})
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def read_corrections(data_root: Path, arrived_by: float,
                     max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
                     decisions_only: bool = False) -> CorrectionScan:
    """The corrections under `<data_root>/corrections/*.jsonl` made by `arrived_by` (Unix
    seconds), the latest per document, and the lines rejected (file, line, reason; line 0: the
    whole file, such as one that is not a regular file inside the data root). A missing folder
    holds none; a `path` correction's file is read under `max_document_bytes`. With
    `decisions_only`, only the identity decisions are read (document corrections are left
    unparsed: the `corrections` asset reads and reports them)."""
    scan, latest = CorrectionScan(), {}
    folder = data_root / FOLDER
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            lines, _ = read_text_lines(path, data_root, MAX_FILE_BYTES)
        except UnusableFile as exc:
            scan.rejected.append(InvalidLine(printable(str(path)), 0, exc.reason))
            continue
        except FileNotFoundError as exc:
            scan.rejected.append(InvalidLine(printable(str(path)), 0,
                                             f"unreadable: {exc.strerror}"))
            continue
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                correction = isolated(parse_line, text, data_root, max_document_bytes,
                                      decisions_only)
            except ValueError as exc:
                scan.rejected.append(InvalidLine(printable(str(path)), number, str(exc)))
                continue
            if correction is None:
                continue
            if datetime.datetime.fromisoformat(correction.at).timestamp() > arrived_by:
                scan.later += 1
                continue
            if isinstance(correction, IdentityDecision):
                scan.decisions.append(correction)
                continue
            known = latest.get(correction.document)
            if known is None or correction.at >= known.at:
                latest[correction.document] = correction
    scan.corrections = sorted(latest.values(), key=lambda c: c.document)
    return scan
