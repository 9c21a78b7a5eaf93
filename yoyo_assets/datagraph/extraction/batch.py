"""What one graph write batch may hold, checked before any of it reaches LadybugDB: the rules
both sinks apply (the embedded writer to the batch it is given, the graph service to each
mutate request), so a batch one sink takes the other takes too.

The models are strict (no coercion: `"3"`, `2.0` or `true` are not a mention count), every
string and number is bounded, no string holds a control character or a lone surrogate, an
entity's key is the one its type and name give, a night is a calendar date, and a batch names
each document once and each document each entity once. A batch that breaks a rule raises
`InvalidBatch`, whose message names the field (`documents.0.entities.2.mentions: ...`).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      StringConstraints, ValidationError, model_validator)

from ...shared.text import unsafe_character
from ..documents.streams import STREAM_PATTERNS
from .extractor import ENTITY_TYPES, MAX_NAME_CHARS, DocumentExtraction, entity_key

#: Bounds of a batch (the pipeline's are far below them: a 2 MiB document, 24 entities per
#: chunk answer, names of at most MAX_NAME_CHARS characters).
MAX_DOCUMENTS_PER_BATCH = 100_000
MAX_ENTITIES_PER_DOCUMENT = 10_000
MAX_ALIASES_PER_ENTITY = 256
MAX_PATH_CHARS = 4096
MAX_EXTRACTOR_CHARS = 512
#: How often one document may name one entity: a 2 MiB document holds fewer words than this,
#: and it fits LadybugDB's INT64 with room for the sums over documents.
MAX_MENTIONS = 1_000_000_000
#: Longest key: the type, a colon and the case-folded name (case folding can triple a
#: character: 'ΐ' -> 'ΐ').
MAX_KEY_CHARS = len("location:") + 3 * MAX_NAME_CHARS


class InvalidBatch(ValueError):
    """A write batch that breaks one of the rules above; the message names the field."""


class ConflictingReplay(ValueError):
    """An id the graph has recorded (a mutate request's `request_id`, a correction's `id`) sent
    again with other content; the message names the id. Nothing of the request is written."""


def _safe(value: object) -> object:
    problem = unsafe_character(value) if isinstance(value, str) else None
    if problem:
        raise ValueError(problem)
    return value


def _calendar_date(text: str) -> str:
    datetime.date.fromisoformat(text)  # ValueError: not a date (2026-13-45)
    return text


def SafeText(max_length: int, min_length: int = 1):
    """A strict string of `min_length`..`max_length` characters without control characters or
    lone surrogates."""
    # Checked before pydantic's own string check, whose message for a lone surrogate is
    # "unable to parse raw data as a unicode string".
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length),
                     BeforeValidator(_safe)]


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A partition key: 'YYYY-MM-DD' in ASCII digits, a real calendar date.
Night = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
                  AfterValidator(_calendar_date)]
Stream = Literal[tuple(STREAM_PATTERNS)]


def check_once(field: str, what: str, keys: list[str]) -> None:
    """Raises ValueError naming the first item of `field` whose key came before."""
    seen = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise ValueError(f"{field}.{index}: {what} {key} given twice")
        seen.add(key)


class StrictModel(BaseModel):
    """No coercion, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class BatchEntity(StrictModel):
    """One entity of one document: graph key `<type>:<case-folded name>` (as
    `extraction.entity_key` gives it), display name, type, `aliases` (wire format v1's name for
    the spellings seen: case and spacing variants sharing the key, stored as the entity's
    `spellings`), and how often the document names it (1..MAX_MENTIONS)."""

    key: SafeText(MAX_KEY_CHARS)
    name: SafeText(MAX_NAME_CHARS)
    type: Literal[ENTITY_TYPES]
    aliases: list[SafeText(MAX_NAME_CHARS)] = Field(max_length=MAX_ALIASES_PER_ENTITY)
    mentions: int = Field(ge=1, le=MAX_MENTIONS)

    @model_validator(mode="after")
    def _key_is_type_and_name(self) -> "BatchEntity":
        expected = entity_key(self.name, self.type)
        if self.key != expected:
            raise ValueError(f"key {self.key!r} is not the key of its type and name "
                             f"({expected!r})")
        return self


class BatchDocument(StrictModel):
    """One ledger entry: the document's SHA-256, path, stream, which extractor answered, and
    its entities (each key once)."""

    sha256: Sha256
    path: SafeText(MAX_PATH_CHARS)
    stream: Stream
    extractor: SafeText(MAX_EXTRACTOR_CHARS, min_length=0) = ""
    entities: list[BatchEntity] = Field(max_length=MAX_ENTITIES_PER_DOCUMENT)

    @model_validator(mode="after")
    def _entities_once(self) -> "BatchDocument":
        check_once("entities", "entity", [repr(entity.key) for entity in self.entities])
        return self


class Batch(StrictModel):
    """One write batch: the night it is written for and its documents (each hash once)."""

    night: Night
    documents: list[BatchDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_BATCH)

    @model_validator(mode="after")
    def _documents_once(self) -> "Batch":
        check_once("documents", "document", [document.sha256 for document in self.documents])
        return self


def _field_name(part: object, limit: int = 100) -> str:
    """One part of a field's path, cut to `limit` characters (a client's key can be megabytes)."""
    text = str(part)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def describe(error: ValidationError, limit: int = 5) -> str:
    """A validation error as `field.path: message; ...` (the first `limit` errors; each part of
    a path cut to 100 characters)."""
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(_field_name(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def documents_of(extractions: list[DocumentExtraction]) -> list[dict]:
    """The batch's documents as plain data (what `Batch` validates and the wire carries)."""
    return [{"sha256": x.sha256, "path": x.path, "stream": x.stream, "extractor": x.extractor,
             "entities": [{"key": e.key, "name": e.name, "type": e.type,
                           "aliases": list(e.spellings), "mentions": e.mentions}
                          for e in x.entities]}
            for x in extractions]


def check_batch(extractions: list[DocumentExtraction], night: str) -> None:
    """Check a batch against the rules above.

    Raises:
        InvalidBatch: naming the first broken rules' fields.
    """
    try:
        Batch.model_validate({"night": night, "documents": documents_of(extractions)})
    except ValidationError as exc:
        raise InvalidBatch(describe(exc)) from None
