"""The graph service's wire format (docs/graph-service.md): the JSON bodies of
`POST /v1/graph/mutate` and of the read endpoints, as pydantic models that the `service` sink
(graph_client.py) sends and the reference server (graph_service.py) validates.

A mutate request carries one write batch: its documents (the ledger entries), each with its
entities and their mention counts. Its `request_id` is derived from the batch's document hashes,
so a retry, or a re-run after a crash, sends the same id for the same documents.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ..corrections.stream import CorrectionBatch, CorrectionOutcome
from ..extraction.extractor import DocumentExtraction, ExtractedEntity
from ...resolution.resolver import Anchor
from ..extraction.batch import (MAX_DOCUMENTS_PER_BATCH, MAX_KEY_CHARS, MAX_PATH_CHARS, Batch,
                                Night, SafeText, Sha256, StrictModel, documents_of)
from .identity import IdentityStats, IdentityView, ResolvedMention
from ..corrections.identity_decisions import IdentityDecision
from .store import NightTotals, WriteStats

MUTATE_PATH = "/v1/graph/mutate"
CORRECTIONS_PATH = "/v1/graph/corrections"
KNOWN_PATH = "/v1/graph/documents/known"
COUNTS_PATH = "/v1/graph/counts"
NIGHT_PATH = "/v1/graph/nights/{night}"
HEALTH_PATH = "/healthz"
ANCHORS_PATH = "/v1/graph/identities/anchors"
ANCHORS_NAMED_PATH = "/v1/graph/identities/named"
RESOLUTIONS_PATH = "/v1/graph/identities/resolutions"
IDENTITY_PATH = "/v1/graph/identities/id/{identity:path}"
#: Anchors, surname words or resolutions one identity request may carry.
MAX_IDENTITY_ITEMS = 100_000
#: Hashes one ledger lookup may ask about (the pipeline asks about one night's documents).
MAX_KNOWN_HASHES = MAX_DOCUMENTS_PER_BATCH
#: Most mentioned entities a night's totals may list.
MAX_NIGHT_SAMPLE = 1000


def request_id(hashes: list[str]) -> str:
    """The id of the batch holding documents `hashes`: SHA-256 of the sorted hashes joined by
    newlines, hex."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


class MutateRequest(Batch):
    """Body of `POST /v1/graph/mutate`: one batch (graph_batch.Batch: its night and documents),
    applied in one transaction, and its id, which must be `request_id` of its documents."""

    request_id: Sha256

    @model_validator(mode="after")
    def _id_of_the_documents(self) -> "MutateRequest":
        if self.request_id != request_id([d.sha256 for d in self.documents]):
            raise ValueError("request_id is not the SHA-256 of the sorted document hashes")
        return self

    @classmethod
    def of(cls, extractions: list[DocumentExtraction], night: str) -> MutateRequest:
        """The request for one batch of extractions; raises pydantic's ValidationError when the
        batch breaks graph_batch's rules."""
        return cls.model_validate({"request_id": request_id([x.sha256 for x in extractions]),
                                   "night": night, "documents": documents_of(extractions)})

    def extractions(self) -> list[DocumentExtraction]:
        """The batch as the graph writer takes it (token counts are not sent: 0)."""
        return [DocumentExtraction(sha256=d.sha256, stream=d.stream, path=d.path, chunks=0,
                                   extractor=d.extractor,
                                   entities=[ExtractedEntity(e.key, e.name, e.type,
                                                             list(e.aliases), e.mentions)
                                             for e in d.entities])
                for d in self.documents]


class MutateResponse(BaseModel):
    """Answer to a mutate request: what the transaction changed. `replayed` is true when every
    document of the batch was already in the ledger (a retry or a re-run): nothing was written."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    replayed: bool
    stats: WriteStats


class CorrectionsRequest(CorrectionBatch):
    """Body of `POST /v1/graph/corrections`: operators' corrections applied during `night`, in
    one transaction (corrections.CorrectionBatch's rules), or with `preview` only said what
    would be done. Applying one twice changes nothing, so a retry needs no id of its own."""

    preview: bool = False


class CorrectionsResponse(BaseModel):
    """What the service did with each correction, in the request's order."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[CorrectionOutcome]


class KnownRequest(StrictModel):
    """Body of `POST /v1/graph/documents/known`: document hashes to look up in the ledger."""

    hashes: list[Sha256] = Field(max_length=MAX_KNOWN_HASHES)


class KnownResponse(BaseModel):
    """The subset of the asked hashes that the ledger holds."""

    known: list[str]


class NightQuery(StrictModel):
    """`GET /v1/graph/nights/{night}?sample=N`: the night (a calendar date) and how many of its
    most mentioned entities to list."""

    night: Night
    sample: int = Field(default=10, ge=0, le=MAX_NIGHT_SAMPLE)


Word = SafeText(MAX_KEY_CHARS)


class AnchorBody(StrictModel):
    """An anchor on the wire (resolver.Anchor's fields; `role` and `region` "" for none)."""

    id: SafeText(MAX_KEY_CHARS)
    name: SafeText(MAX_KEY_CHARS)
    given_names: list[Word] = Field(max_length=64)
    surnames: list[Word] = Field(min_length=1, max_length=16)
    role: SafeText(64, min_length=0) = ""
    region: SafeText(MAX_KEY_CHARS, min_length=0) = ""
    groups: list[SafeText(MAX_KEY_CHARS)] = Field(default=[], max_length=256)

    @classmethod
    def of(cls, anchor: Anchor) -> "AnchorBody":
        return cls(id=anchor.id, name=anchor.name, given_names=list(anchor.given_names),
                   surnames=list(anchor.surnames), role=anchor.role or "",
                   region=anchor.region or "", groups=list(anchor.groups))

    def anchor(self) -> Anchor:
        return Anchor(self.id, self.name, tuple(self.given_names), tuple(self.surnames),
                      self.role or None, self.region or None, tuple(self.groups))


class AnchorsRequest(StrictModel):
    """Body of `POST /v1/graph/identities/anchors`: records that carry an id, for `night`."""

    night: Night
    anchors: list[AnchorBody] = Field(max_length=MAX_IDENTITY_ITEMS)


class NamedRequest(StrictModel):
    """Body of `POST /v1/graph/identities/named`: surname words to look anchors up by."""

    words: list[Word] = Field(max_length=MAX_IDENTITY_ITEMS)


class ResolutionBody(StrictModel):
    """One resolved surface form on the wire (graph_identity.ResolvedMention's fields)."""

    document: Sha256
    name: SafeText(MAX_KEY_CHARS)
    type: Literal["person"]
    identity: SafeText(MAX_PATH_CHARS)
    identity_name: SafeText(MAX_KEY_CHARS)
    reason: SafeText(64)


class ResolutionsRequest(StrictModel):
    """Body of `POST /v1/graph/identities/resolutions`: the night's resolved forms, then
    operators' identity decisions, recorded in one transaction, each document's form and
    each decision once."""

    night: Night
    resolutions: list[ResolutionBody] = Field(max_length=MAX_IDENTITY_ITEMS)
    decisions: list[IdentityDecision] = Field(default=[], max_length=MAX_IDENTITY_ITEMS)

    def resolved(self) -> list[ResolvedMention]:
        return [ResolvedMention(**r.model_dump()) for r in self.resolutions]


COUNTS = TypeAdapter(dict[Literal["documents", "entities", "mentions"], int])
NIGHT_TOTALS = TypeAdapter(NightTotals)
IDENTITY_STATS = TypeAdapter(IdentityStats)
IDENTITY_VIEW = TypeAdapter(IdentityView)


class IdentityQuery(StrictModel):
    """`GET /v1/graph/identities/id/{identity}?limit=N`: the id and how many references."""

    identity: SafeText(MAX_PATH_CHARS)
    limit: int = Field(default=100, ge=0, le=MAX_NIGHT_SAMPLE)
