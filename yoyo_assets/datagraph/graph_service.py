"""The reference graph service: the endpoints of docs/graph-service.md over one LadybugDB file,
for tests and for deployments that run everything on one machine
(`python -m yoyo_assets graph-service`). Starlette app, served by uvicorn.

One writer by construction: the service is one process that opens the file once, at startup,
and runs every operation on the event loop's thread, one after the other (the handlers do not
await while they use the graph). A mutate request is one `GraphDatabase.write_extractions`
transaction, the same code the `embedded` sink runs, so both sinks build the same graph.

Limits come before work: a body is refused with 413 while it is read, once it passes
`max_body_bytes` (or at once, when its Content-Length says so), and a mutate request's document
count is checked before its documents are validated; a body not received within
`read_timeout_s` gets 408; uvicorn answers 503 beyond `max_connections` concurrent connections.
With a token, every endpoint but `/healthz` wants `Authorization: Bearer <token>` (401 without);
without one, the service binds loopback addresses only. Every client error is a 4xx whose
`detail` names the field; a 5xx is the server's fault.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..shared.faults import crash_point
from .graph_batch import InvalidBatch, describe
from .graph_store import DEFAULT_BUFFER_POOL_MIB, DEFAULT_CHECKPOINT_MIB, GraphDatabase, open_graph
from .graph_wire import (CORRECTIONS_PATH, COUNTS_PATH, HEALTH_PATH, KNOWN_PATH, MUTATE_PATH,
                         NIGHT_PATH, NIGHT_TOTALS, CorrectionsRequest, CorrectionsResponse,
                         KnownRequest, KnownResponse, MutateRequest, MutateResponse, NightQuery)

log = logging.getLogger(__name__)

#: The production service's port (the deployment's content service); the reference server's too.
DEFAULT_PORT = 9081


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may cost the service.

    `max_batch_documents`: documents per mutate request (413 above; the pipeline's default
    batch is 256). `max_body_bytes`: request body size, bytes (413 above; a 256-document batch
    of the demo night is ~150 KB). `read_timeout_s`: seconds to receive a body (408 after).
    `max_connections`: concurrent connections (uvicorn answers 503 beyond).
    """

    max_batch_documents: int = 1024
    max_body_bytes: int = 16 * 2**20
    read_timeout_s: float = 30.0
    max_connections: int = 32


class ClientError(Exception):
    """A request the service refuses: its status (4xx) and what was wrong, naming the field."""

    def __init__(self, status: int, detail: str, error: str = "invalid request"):
        super().__init__(detail)
        self.status, self.detail, self.error = status, detail, error

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": self.error, "detail": self.detail}, self.status,
                            headers=headers)


async def read_json(request: Request, limits: ServiceLimits) -> Any:
    """The request's JSON body, read under `limits`.

    Raises:
        ClientError: 413 past `max_body_bytes` (before parsing), 408 after `read_timeout_s`,
            422 for a body that is not JSON.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ClientError(413, f"body: {declared} bytes, over this service's limit of "
                               f"{limits.max_body_bytes}", "request too large")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise ClientError(413, f"body: over this service's limit of "
                                           f"{limits.max_body_bytes} bytes", "request too large")
                chunks.append(chunk)
    except TimeoutError:
        raise ClientError(408, f"body: not received within {limits.read_timeout_s} s",
                          "request timeout") from None
    try:
        return json.loads(b"".join(chunks))
    except json.JSONDecodeError as exc:
        raise ClientError(422, f"body: malformed JSON: {exc.msg} (line {exc.lineno}, column "
                               f"{exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ClientError(422, f"body: not UTF-8: {exc.reason} at byte {exc.start}") from None


def _documents_in(raw: Any) -> int:
    documents = raw.get("documents") if isinstance(raw, dict) else None
    return len(documents) if isinstance(documents, list) else 0


class _Endpoints:
    """The handlers, over the graph that `lifespan` holds while the app runs."""

    def __init__(self, graph_path: Path, limits: ServiceLimits, token: str,
                 buffer_pool_mib: int, checkpoint_mib: int):
        self.graph_path, self.limits, self.token = graph_path, limits, token
        self.buffer_pool_mib, self.checkpoint_mib = buffer_pool_mib, checkpoint_mib
        self.graph: GraphDatabase | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        with open_graph(self.graph_path, self.buffer_pool_mib, self.checkpoint_mib) as graph:
            self.graph = graph
            log.info("graph service holds %s", self.graph_path)
            yield

    def guarded(self, handler: Callable[[Request], Awaitable[JSONResponse]]):
        """`handler` behind the token check, with its ClientErrors as their 4xx answers."""
        async def endpoint(request: Request) -> JSONResponse:
            try:
                self._authorise(request)
                return await handler(request)
            except ClientError as refused:
                return refused.response()
        return endpoint

    def _authorise(self, request: Request) -> None:
        if not self.token:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                 self.token.encode()):
            raise ClientError(401, "Authorization: a valid bearer token is required",
                              "unauthorized")

    async def mutate(self, request: Request) -> JSONResponse:
        raw = await read_json(request, self.limits)
        count = _documents_in(raw)
        if count > self.limits.max_batch_documents:
            raise ClientError(413, f"documents: a batch of {count} documents is over this "
                                   f"service's limit of {self.limits.max_batch_documents}",
                              "request too large")
        try:
            body = MutateRequest.model_validate(raw)
            stats = self.graph.write_extractions(body.extractions(), body.night,
                                                 checked=True)
        except ValidationError as exc:
            raise ClientError(422, describe(exc)) from None
        except InvalidBatch as exc:
            raise ClientError(422, str(exc)) from None
        crash_point("graph_service.before_response")
        replayed = stats.documents_already_recorded == len(body.documents)
        log.info("mutate %s: %s%s", body.request_id[:12], vars(stats),
                 " (replayed)" if replayed else "")
        return JSONResponse(MutateResponse(request_id=body.request_id, replayed=replayed,
                                           stats=stats).model_dump(mode="json"))

    async def corrections(self, request: Request) -> JSONResponse:
        raw = await read_json(request, self.limits)
        try:
            body = CorrectionsRequest.model_validate(raw)
        except ValidationError as exc:
            raise ClientError(422, describe(exc)) from None
        outcomes = self.graph.apply_corrections(body.corrections, body.night, body.preview,
                                                checked=True)
        log.info("corrections for %s: %s", body.night,
                 dict(Counter(outcome.status for outcome in outcomes)))
        return JSONResponse(CorrectionsResponse(outcomes=outcomes).model_dump(mode="json"))

    async def known(self, request: Request) -> JSONResponse:
        try:
            body = KnownRequest.model_validate(await read_json(request, self.limits))
        except ValidationError as exc:
            raise ClientError(422, describe(exc)) from None
        found = self.graph.known_documents(body.hashes)
        return JSONResponse(KnownResponse(known=sorted(found)).model_dump())

    async def counts(self, request: Request) -> JSONResponse:
        return JSONResponse(self.graph.counts())

    async def night(self, request: Request) -> JSONResponse:
        try:
            query = NightQuery.model_validate_strings(
                {"night": request.path_params["night"], **request.query_params}, strict=False)
        except ValidationError as exc:
            raise ClientError(422, describe(exc)) from None
        totals = self.graph.night_totals(query.night, query.sample)
        return JSONResponse(NIGHT_TOTALS.dump_python(totals, mode="json"))

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error", "detail": type(exc).__name__}, 500)


def build_app(graph_path: Path, limits: ServiceLimits = ServiceLimits(), token: str = "",
              buffer_pool_mib: int = DEFAULT_BUFFER_POOL_MIB,
              checkpoint_mib: int = DEFAULT_CHECKPOINT_MIB) -> Starlette:
    """The service's ASGI app over the LadybugDB file `graph_path` (opened at startup with
    `buffer_pool_mib` and `checkpoint_mib`, see `graph_store.open_graph`; raises
    `graph_store.GraphFileBusy` there if another process holds it). `token`: the bearer token
    every endpoint but the health check wants; empty: none."""
    endpoints = _Endpoints(graph_path, limits, token, buffer_pool_mib, checkpoint_mib)
    guarded = endpoints.guarded
    return Starlette(lifespan=endpoints.lifespan, exception_handlers={Exception: _server_error},
                     routes=[
                         Route(MUTATE_PATH, guarded(endpoints.mutate), methods=["POST"]),
                         Route(CORRECTIONS_PATH, guarded(endpoints.corrections),
                               methods=["POST"]),
                         Route(KNOWN_PATH, guarded(endpoints.known), methods=["POST"]),
                         Route(COUNTS_PATH, guarded(endpoints.counts), methods=["GET"]),
                         Route(NIGHT_PATH, guarded(endpoints.night), methods=["GET"]),
                         Route(HEALTH_PATH, endpoints.health, methods=["GET"]),
                     ])


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond loopback


class UnsafeBinding(ValueError):
    """The service was asked to listen beyond loopback without a token."""


def serve(graph_path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          limits: ServiceLimits = ServiceLimits(), token: str = "",
          buffer_pool_mib: int = DEFAULT_BUFFER_POOL_MIB,
          checkpoint_mib: int = DEFAULT_CHECKPOINT_MIB) -> None:
    """Serve the graph at `graph_path` on `host:port` until interrupted (one uvicorn worker:
    one writer; `limits.max_connections` concurrent connections).

    Raises:
        UnsafeBinding: `host` is not a loopback address and `token` is empty.
    """
    if not token and not is_loopback(host):
        raise UnsafeBinding(f"refusing to serve the graph on {host} without a token: set "
                            f"YOYO_GRAPH_SERVICE_TOKEN, or bind 127.0.0.1")
    uvicorn.run(build_app(graph_path.resolve(), limits, token, buffer_pool_mib, checkpoint_mib),
                host=host, port=port, workers=1, log_level="info",
                limit_concurrency=limits.max_connections)
