"""The `service` sink: Phase 1's graph operations over HTTP to the service that owns the
LadybugDB file (`POST /v1/graph/mutate` and the read endpoints, docs/graph-service.md).

Each write batch is one request, applied by the service in one transaction; its id comes from
the batch's document hashes and the service skips documents already in the ledger, so a retry
or a re-run after a crash never counts a document twice. Connection errors, timeouts, 429 and
5xx answers are retried with tenacity (exponential backoff with jitter); a 4xx answer is final.
"""

from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import quote

import httpx
import tenacity
from pydantic import ValidationError

from ...shared.faults import crash_point
from ...shared.http_retry import is_transient, tls_context
from ..corrections.stream import Correction, CorrectionOutcome, check_corrections
from ..extraction.extractor import DocumentExtraction
from ..extraction.batch import InvalidBatch, describe
from .store import NightTotals, WriteStats
from ...resolution.resolver import Anchor
from .identity import IdentityStats, IdentityView, ResolvedMention
from ..corrections.identity_decisions import IdentityDecision
from .wire import (ANCHORS_NAMED_PATH, ANCHORS_PATH, CORRECTIONS_PATH, COUNTS, COUNTS_PATH,
                         IDENTITY_PATH, IDENTITY_STATS, IDENTITY_VIEW, KNOWN_PATH, MUTATE_PATH,
                         NIGHT_PATH, NIGHT_TOTALS, RESOLUTIONS_PATH, AnchorBody, AnchorsRequest,
                         CorrectionsResponse, KnownRequest, KnownResponse, MutateRequest,
                         MutateResponse, NamedRequest, ResolutionBody, ResolutionsRequest)


class GraphServiceUnavailable(RuntimeError):
    """The graph service did not answer, or answered 429/5xx, on every attempt: what was not
    written waits for the next run."""


class GraphServiceRejected(RuntimeError):
    """The graph service refused a request (4xx); the message holds its answer."""


class GraphServiceClient:
    """Phase 1's graph operations (`graph_store.DataGraph`) against a graph service.

    `base_url` e.g. http://127.0.0.1:9081; `timeout_s` per request (seconds); `attempts` per
    call, with waits of up to `max_wait_s` seconds between them; `token`: the bearer token the
    service wants (empty: none sent).
    """

    def __init__(self, base_url: str, timeout_s: float = 60.0, attempts: int = 5,
                 max_wait_s: float = 10.0, token: str = ""):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers,
                                  verify=tls_context())
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=max_wait_s),
            stop=tenacity.stop_after_attempt(attempts), reraise=True)
        self._attempts = attempts

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of one call, retried while the failure is transient.

        Raises GraphServiceUnavailable or GraphServiceRejected (with the server's message)."""
        try:
            for attempt in self._retrying.copy():
                with attempt:
                    response = self._http.request(method, path, json=body)
                    response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            answer = f"{exc.response.status_code} {exc.response.text[:2000]}"
            if is_transient(exc):
                raise GraphServiceUnavailable(
                    f"graph service {self.base_url}{path}: {answer} on each of "
                    f"{self._attempts} attempts") from None
            raise GraphServiceRejected(f"graph service refused {method} {path}: {answer}") \
                from None
        except httpx.TransportError as exc:
            raise GraphServiceUnavailable(
                f"graph service {self.base_url} unreachable after {self._attempts} attempts: "
                f"{type(exc).__name__}: {exc}") from None
        return response.json()

    def known_documents(self, hashes: Iterable[str]) -> set[str]:
        """The subset of `hashes` (SHA-256 hex) already in the service's ledger."""
        hashes = list(hashes)
        if not hashes:
            return set()
        answer = self._call("POST", KNOWN_PATH, KnownRequest(hashes=hashes).model_dump())
        return set(KnownResponse.model_validate(answer).known)

    def write_extractions(self, extractions: list[DocumentExtraction], night: str) -> WriteStats:
        """Send one batch as one mutate request; the service writes its new documents, entities
        and `MENTIONS` in one transaction and skips documents already in the ledger.

        Raises:
            graph_batch.InvalidBatch: the batch breaks graph_batch's rules (nothing is sent).
            GraphServiceRejected, GraphServiceUnavailable: see `_call`.
        """
        if not extractions:
            return WriteStats()
        try:
            request = MutateRequest.of(extractions, night)
        except ValidationError as exc:
            raise InvalidBatch(describe(exc)) from None
        crash_point("graph.before_request")
        answer = self._call("POST", MUTATE_PATH, request.model_dump(mode="json"))
        return MutateResponse.model_validate(answer).stats

    def apply_corrections(self, corrections: list[Correction], night: str,
                          preview: bool = False) -> list[CorrectionOutcome]:
        """Send operators' corrections as one request; the service applies them in one
        transaction (graph_corrections.py), or with `preview` only says what it would do, and
        answers each one's outcome.

        Raises:
            graph_batch.InvalidBatch: the corrections break corrections.CorrectionBatch's rules
                (nothing is sent).
            GraphServiceRejected, GraphServiceUnavailable: see `_call`.
        """
        if not corrections:
            return []
        batch = check_corrections(corrections, night)
        answer = self._call("POST", CORRECTIONS_PATH,
                            {**batch.model_dump(mode="json"), "preview": preview})
        return CorrectionsResponse.model_validate(answer).outcomes

    def record_anchors(self, anchors: list[Anchor], night: str) -> int:
        """Send the anchors in one request; returns how many were new (see
        `GraphDatabase.record_anchors`)."""
        if not anchors:
            return 0
        body = AnchorsRequest(night=night, anchors=[AnchorBody.of(a) for a in anchors])
        return int(self._call("POST", ANCHORS_PATH, body.model_dump())["created"])

    def anchors_named(self, words: Iterable[str]) -> list[Anchor]:
        """The service's anchors whose surname holds one of `words`."""
        words = sorted(set(words))
        if not words:
            return []
        answer = self._call("POST", ANCHORS_NAMED_PATH, NamedRequest(words=words).model_dump())
        return [AnchorBody.model_validate(a).anchor() for a in answer["anchors"]]

    def record_resolutions(self, resolved: list[ResolvedMention], night: str,
                           decisions: list[IdentityDecision] = ()) -> IdentityStats:
        """Send the night's resolved forms and operators' identity decisions in one request,
        recorded in one transaction."""
        body = ResolutionsRequest(night=night, decisions=list(decisions), resolutions=[
            ResolutionBody(**vars(r)) for r in resolved])
        return IDENTITY_STATS.validate_python(self._call("POST", RESOLUTIONS_PATH,
                                                         body.model_dump()))

    def identity(self, identity: str, limit: int = 100) -> IdentityView | None:
        """One identity of the service's graph with its forms and references; None if
        unknown (404)."""
        path = IDENTITY_PATH.replace("{identity:path}", quote(identity, safe="")) \
            + f"?limit={limit}"
        try:
            return IDENTITY_VIEW.validate_python(self._call("GET", path))
        except GraphServiceRejected as exc:
            if f"{path}: 404 " in str(exc):
                return None
            raise

    def night_totals(self, night: str, sample: int = 10) -> NightTotals:
        """What the service's ledger holds for `night` (a partition key)."""
        answer = self._call("GET", NIGHT_PATH.format(night=night) + f"?sample={sample}")
        return NIGHT_TOTALS.validate_python(answer)

    def counts(self) -> dict[str, int]:
        """Node and relationship counts of the service's graph: documents, entities, mentions."""
        return COUNTS.validate_python(self._call("GET", COUNTS_PATH))
