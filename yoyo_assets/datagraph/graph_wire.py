"""The graph service's wire format (docs/graph-service.md): the JSON bodies of
`POST /v1/graph/mutate` and of the read endpoints, as pydantic models that the `service` sink
(graph_client.py) sends and the reference server (graph_service.py) validates.

A mutate request carries one write batch: its documents (the ledger entries), each with its
entities and their mention counts. Its `request_id` is derived from the batch's document hashes,
so a retry, or a re-run after a crash, sends the same id for the same documents.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from .extraction import ENTITY_TYPES, DocumentExtraction, ExtractedEntity
from .graph_store import NightTotals, WriteStats

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Night = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]

MUTATE_PATH = "/v1/graph/mutate"
KNOWN_PATH = "/v1/graph/documents/known"
COUNTS_PATH = "/v1/graph/counts"
NIGHT_PATH = "/v1/graph/nights/{night}"
HEALTH_PATH = "/healthz"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WireEntity(_Strict):
    """One entity of one document: graph key `<type>:<name>`, display name, type, surface names,
    and how often the document names it (≥ 1)."""

    key: str = Field(min_length=3)
    name: str = Field(min_length=1)
    type: Literal[ENTITY_TYPES]
    aliases: list[str]
    mentions: int = Field(ge=1)


class WireDocument(_Strict):
    """One ledger entry: the document's SHA-256, path, stream, which extractor answered, and
    its entities."""

    sha256: Sha256
    path: str
    stream: str
    extractor: str = ""
    entities: list[WireEntity]


def request_id(hashes: list[str]) -> str:
    """The id of the batch holding documents `hashes`: SHA-256 of the sorted hashes joined by
    newlines, hex."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


class MutateRequest(_Strict):
    """Body of `POST /v1/graph/mutate`: one batch, applied in one transaction."""

    request_id: Sha256
    night: Night = Field(description="partition key recorded on documents and entities")
    documents: list[WireDocument] = Field(min_length=1)

    @classmethod
    def of(cls, extractions: list[DocumentExtraction], night: str) -> MutateRequest:
        """The request for one batch of extractions."""
        documents = [WireDocument(sha256=x.sha256, path=x.path, stream=x.stream,
                                  extractor=x.extractor,
                                  entities=[WireEntity(**vars(e)) for e in x.entities])
                     for x in extractions]
        return cls(request_id=request_id([x.sha256 for x in extractions]), night=night,
                   documents=documents)

    def extractions(self) -> list[DocumentExtraction]:
        """The batch as the graph writer takes it (token counts are not sent: 0)."""
        return [DocumentExtraction(sha256=d.sha256, stream=d.stream, path=d.path, chunks=0,
                                   extractor=d.extractor,
                                   entities=[ExtractedEntity(**e.model_dump())
                                             for e in d.entities])
                for d in self.documents]


class MutateResponse(_Strict):
    """Answer to a mutate request: what the transaction changed. `replayed` is true when every
    document of the batch was already in the ledger (a retry or a re-run): nothing was written."""

    request_id: str
    replayed: bool
    stats: WriteStats


class KnownRequest(_Strict):
    """Body of `POST /v1/graph/documents/known`: document hashes to look up in the ledger."""

    hashes: list[Sha256]


class KnownResponse(_Strict):
    """The subset of the asked hashes that the ledger holds."""

    known: list[str]


COUNTS = TypeAdapter(dict[Literal["documents", "entities", "mentions"], int])
NIGHT_TOTALS = TypeAdapter(NightTotals)
