"""The reference graph service: the endpoints of docs/graph-service.md over one LadybugDB file,
for tests and for deployments that run everything on one machine
(`python -m yoyo_assets graph-service`). Starlette app, served by Hypercorn.

One writer by construction: the service is one process that opens the file once, at startup,
and runs every graph operation on one thread of its own, one after the other; parsing and
validating a body run on other threads, so the event loop (and `/healthz`) stays free while a
large request is applied.

Limits come before work, most of them the HTTP server's own (Hypercorn, chosen over uvicorn,
whose httptools parser has no header limit and whose connection limit counts connections still
sending their headers; docs/reliability.md has the measurements): request headers over
`max_header_bytes` get 431 (h11's limit on an incomplete event); a connection whose headers are
not complete within `header_timeout_s` is closed (Hypercorn's idle timer, which runs until a
request's headers are in); connections themselves are not counted, so clients slow to send
headers hold no slot. Past the headers, at most `max_requests` requests are read and worked on at
once (503 beyond, which the client retries); a body is refused with 413 while it is read, once it
passes `max_body_bytes` (or at once, when its Content-Length says so); a body not received
within `read_timeout_s` gets 408; a body must be UTF-8 JSON without duplicate keys, nested at
most 64 deep, its integers within Python's digit limit (422 otherwise). With a token, every
endpoint but `/healthz` wants `Authorization: Bearer <token>` (401 without); without a token of
at least 32 bytes of entropy, the service binds loopback addresses only. Every client error is a
4xx whose `detail` names the field (cut to MAX_DETAIL_CHARS, control characters escaped); an id
the graph recorded sent again with other content is a 409 naming it; a 5xx is the server's
fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import string
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...shared.faults import crash_point
from ...shared.input_files import InvalidJson, parse_json
from ...shared.text import printable
from ..extraction.batch import ConflictingReplay, InvalidBatch, describe
from .store import DEFAULT_BUFFER_POOL_MIB, DEFAULT_CHECKPOINT_MIB, GraphDatabase, open_graph
from .wire import (ANCHORS_NAMED_PATH, ANCHORS_PATH, CORRECTIONS_PATH, COUNTS_PATH,
                         HEALTH_PATH, IDENTITY_PATH, IDENTITY_STATS, IDENTITY_VIEW, KNOWN_PATH,
                         MUTATE_PATH, NIGHT_PATH, NIGHT_TOTALS, RESOLUTIONS_PATH, AnchorBody,
                         AnchorsRequest, CorrectionsRequest, CorrectionsResponse, KnownRequest,
                         KnownResponse, IdentityQuery, MutateRequest, MutateResponse, NamedRequest,
                         NightQuery, ResolutionsRequest)

log = logging.getLogger(__name__)

#: The production service's port (the deployment's content service); the reference server's too.
DEFAULT_PORT = 9081


#: Characters of a refusal's `detail` sent back and logged (a hostile key can be megabytes).
MAX_DETAIL_CHARS = 1000
#: Entropy a token needs before the service binds beyond loopback, bits: 32 random bytes, as
#: `secrets.token_urlsafe(32)` (43 characters) or `openssl rand -hex 32` (64) make.
MIN_TOKEN_BITS = 256


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may cost the service.

    `max_batch_documents`: documents per mutate request (413 above; the pipeline's default
    batch is 256). `max_body_bytes`: request body size, bytes (413 above; a 256-document batch
    of the demo night is ~150 KB). `read_timeout_s`: seconds to receive a body (408 after).
    `max_requests`: requests past their headers read and worked on at once (503 beyond).
    `max_header_bytes`: a request's line and headers, bytes (431 above; Hypercorn's
    `h11_max_incomplete_size`). `header_timeout_s`: seconds a connection has to complete a
    request's headers, and to start the next on a kept-alive connection (then it is closed;
    Hypercorn's `keep_alive_timeout`).
    """

    max_batch_documents: int = 1024
    max_body_bytes: int = 16 * 2**20
    read_timeout_s: float = 30.0
    max_requests: int = 32
    max_header_bytes: int = 64 * 2**10
    header_timeout_s: float = 10.0


class ClientError(Exception):
    """A request the service refuses: its status (4xx) and what was wrong, naming the field
    (at most MAX_DETAIL_CHARS characters, control characters escaped)."""

    def __init__(self, status: int, detail: str, error: str = "invalid request"):
        if len(detail) > MAX_DETAIL_CHARS:
            detail = f"{detail[:MAX_DETAIL_CHARS]}... ({len(detail)} characters in all)"
        detail = printable(detail)
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
    return await asyncio.to_thread(parse_body, b"".join(chunks))


def parse_body(body: bytes) -> Any:
    """A request body as JSON: UTF-8 only (json.loads would take UTF-16 and UTF-32 too), no
    duplicate keys, within `input_files.parse_json`'s depth and number limits.

    Raises:
        ClientError: 422 naming `body` and what is wrong.
    """
    try:
        return parse_json(body.decode("utf-8"), duplicate_keys=False)
    except UnicodeDecodeError as exc:
        raise ClientError(422, f"body: not UTF-8: {exc.reason} at byte {exc.start}") from None
    except InvalidJson as exc:
        raise ClientError(422, f"body: {exc.reason}") from None


def _validated(model: type[BaseModel], raw: Any) -> Any:
    """`raw` validated as `model`; a ClientError 422 naming the fields otherwise."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ClientError(422, describe(exc)) from None


def _path_query(request: Request, model: type[BaseModel], path_field: str,
                query_field: str) -> Any:
    """`model` of the path's `path_field` and the query's optional `query_field`; any other
    query parameter (the path's own field included: `?night=` must not answer for another
    night) is a 422, and so is a value the model refuses."""
    unknown = sorted(set(request.query_params) - {query_field})
    if unknown:
        raise ClientError(422, f"query: unknown parameter(s) {unknown!r}: only `{query_field}`")
    try:
        return model.model_validate_strings(
            {**request.query_params, path_field: request.path_params[path_field]},
            strict=False)
    except ValidationError as exc:
        raise ClientError(422, describe(exc)) from None


def body_digest(body: BaseModel) -> str:
    """SHA-256 hex of a request body's canonical JSON, its `request_id` left out."""
    content = body.model_dump(mode="json", exclude={"request_id"})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _documents_in(raw: Any) -> int:
    documents = raw.get("documents") if isinstance(raw, dict) else None
    return len(documents) if isinstance(documents, list) else 0


class _Endpoints:
    """The handlers, over the graph that `lifespan` holds while the app runs. Every graph call
    runs on `writer`, one thread: one writer, and the event loop stays free."""

    def __init__(self, graph_path: Path, limits: ServiceLimits, token: str,
                 buffer_pool_mib: int, checkpoint_mib: int):
        self.graph_path, self.limits, self.token = graph_path, limits, token
        self.buffer_pool_mib, self.checkpoint_mib = buffer_pool_mib, checkpoint_mib
        self.graph: GraphDatabase | None = None
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-writer")
        self.in_flight = 0

    async def on_graph(self, operation: Callable[..., Any], *args: Any) -> Any:
        """`operation(*args)` on the writer thread (graph calls, one at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, operation, *args)

    async def body(self, request: Request, model: type[BaseModel]) -> Any:
        """The request's body read under the limits and validated as `model`, off the loop."""
        return await asyncio.to_thread(_validated, model, await read_json(request, self.limits))

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        opened = open_graph(self.graph_path, self.buffer_pool_mib, self.checkpoint_mib)
        self.graph = await self.on_graph(opened.__enter__)
        log.info("graph service holds %s", self.graph_path)
        try:
            yield
        finally:
            await self.on_graph(opened.__exit__, None, None, None)
            self.writer.shutdown()

    def guarded(self, handler: Callable[[Request], Awaitable[JSONResponse]]):
        """`handler` behind the token check and the `max_requests` slots, with its ClientErrors
        as their 4xx answers (a conflicting replay: 409)."""
        async def endpoint(request: Request) -> JSONResponse:
            try:
                self._authorise(request)
                if self.in_flight >= self.limits.max_requests:
                    raise ClientError(503, f"{self.in_flight} requests in progress, this "
                                           f"service's limit: retry", "busy")
                self.in_flight += 1
                try:
                    return await handler(request)
                finally:
                    self.in_flight -= 1
            except ConflictingReplay as exc:
                return ClientError(409, str(exc), "conflict").response()
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
        body = await asyncio.to_thread(_validated, MutateRequest, raw)
        extractions, digest = await asyncio.to_thread(
            lambda: (body.extractions(), body_digest(body)))
        try:
            stats = await self.on_graph(self.graph.write_extractions, extractions, body.night,
                                        True, (body.request_id, digest))
        except InvalidBatch as exc:
            raise ClientError(422, str(exc)) from None
        crash_point("graph_service.before_response")
        replayed = stats.documents_already_recorded == len(body.documents)
        log.info("mutate %s: %s%s", body.request_id[:12], vars(stats),
                 " (replayed)" if replayed else "")
        return JSONResponse(MutateResponse(request_id=body.request_id, replayed=replayed,
                                           stats=stats).model_dump(mode="json"))

    async def corrections(self, request: Request) -> JSONResponse:
        body = await self.body(request, CorrectionsRequest)
        outcomes = await self.on_graph(self.graph.apply_corrections, body.corrections,
                                       body.night, body.preview, True)
        log.info("corrections for %s: %s", body.night,
                 dict(Counter(outcome.status for outcome in outcomes)))
        return JSONResponse(CorrectionsResponse(outcomes=outcomes).model_dump(mode="json"))

    async def known(self, request: Request) -> JSONResponse:
        body = await self.body(request, KnownRequest)
        found = await self.on_graph(self.graph.known_documents, body.hashes)
        return JSONResponse(KnownResponse(known=sorted(found)).model_dump())

    async def anchors(self, request: Request) -> JSONResponse:
        body = await self.body(request, AnchorsRequest)
        created = await self.on_graph(self.graph.record_anchors,
                                      [a.anchor() for a in body.anchors], body.night)
        return JSONResponse({"created": created})

    async def anchors_named(self, request: Request) -> JSONResponse:
        body = await self.body(request, NamedRequest)
        found = await self.on_graph(self.graph.anchors_named, body.words)
        return JSONResponse({"anchors": [AnchorBody.of(a).model_dump() for a in found]})

    async def resolutions(self, request: Request) -> JSONResponse:
        body = await self.body(request, ResolutionsRequest)
        stats = await self.on_graph(self.graph.record_resolutions, body.resolved(), body.night,
                                    body.decisions)
        return JSONResponse(IDENTITY_STATS.dump_python(stats, mode="json"))

    async def identity(self, request: Request) -> JSONResponse:
        query = _path_query(request, IdentityQuery, "identity", "limit")
        found = await self.on_graph(self.graph.identity, query.identity, query.limit)
        if found is None:
            raise ClientError(404, f"identity: no identity {query.identity!r}", "not found")
        return JSONResponse(IDENTITY_VIEW.dump_python(found, mode="json"))

    async def counts(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.on_graph(self.graph.counts))

    async def night(self, request: Request) -> JSONResponse:
        query = _path_query(request, NightQuery, "night", "sample")
        totals = await self.on_graph(self.graph.night_totals, query.night, query.sample)
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
                         Route(ANCHORS_PATH, guarded(endpoints.anchors), methods=["POST"]),
                         Route(ANCHORS_NAMED_PATH, guarded(endpoints.anchors_named),
                               methods=["POST"]),
                         Route(RESOLUTIONS_PATH, guarded(endpoints.resolutions),
                               methods=["POST"]),
                         Route(IDENTITY_PATH, guarded(endpoints.identity), methods=["GET"]),
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


def token_bits(token: str) -> float:
    """An upper estimate of a token's entropy, bits: its length times log2 of the smallest
    usual alphabet holding all its characters (hexadecimal 16, base64url 64, printable ASCII
    95, else 2**16). A token of fewer than 16 distinct characters counts 0: a repeated or
    patterned string, whatever its length."""
    if len(set(token)) < 16:
        return 0.0
    for alphabet in (string.hexdigits.lower(), string.ascii_letters + string.digits + "-_",
                     string.printable.strip()):
        if set(token) <= set(alphabet):
            return len(token) * math.log2(len(set(alphabet)))
    return len(token) * 16.0


class UnsafeBinding(ValueError):
    """The service was asked to listen beyond loopback without a strong enough token."""


def server_config(host: str, port: int, limits: ServiceLimits) -> HypercornConfig:
    """Hypercorn's settings for the service: where it listens and the limits of
    `ServiceLimits` that the server enforces (header size and time); logs to standard error."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.keep_alive_timeout = limits.header_timeout_s
    config.accesslog, config.errorlog, config.loglevel = "-", "-", "INFO"
    return config


def serve(graph_path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          limits: ServiceLimits = ServiceLimits(), token: str = "",
          buffer_pool_mib: int = DEFAULT_BUFFER_POOL_MIB,
          checkpoint_mib: int = DEFAULT_CHECKPOINT_MIB) -> None:
    """Serve the graph at `graph_path` on `host:port` until SIGINT or SIGTERM (one process:
    one writer), under `limits`.

    Raises:
        UnsafeBinding: `host` is not a loopback address and `token` has under MIN_TOKEN_BITS
            of entropy (`token_bits`).
    """
    if not is_loopback(host) and token_bits(token) < MIN_TOKEN_BITS:
        raise UnsafeBinding(
            f"refusing to serve the graph on {host} without a token of at least "
            f"{MIN_TOKEN_BITS // 8} random bytes: set YOYO_GRAPH_SERVICE_TOKEN (python -c "
            f"'import secrets; print(secrets.token_urlsafe(32))'), or bind 127.0.0.1")
    app = build_app(graph_path.resolve(), limits, token, buffer_pool_mib, checkpoint_mib)
    asyncio.run(hypercorn_serve(app, server_config(host, port, limits)))
