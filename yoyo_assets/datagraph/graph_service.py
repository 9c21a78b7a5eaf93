"""The reference graph service: the endpoints of docs/graph-service.md over one LadybugDB file,
for tests and for deployments that run everything on one machine
(`python -m yoyo_assets graph-service`). Starlette app, served by uvicorn.

One writer by construction: the service is one process that opens the file once, at startup,
and runs every operation on the event loop's thread, one after the other (the handlers do not
await while they use the graph). A mutate request is one `GraphDatabase.write_extractions`
transaction, the same code the `embedded` sink runs, so both sinks build the same graph.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..shared.faults import crash_point
from .graph_store import GraphDatabase, open_graph
from .graph_wire import (COUNTS_PATH, HEALTH_PATH, KNOWN_PATH, MUTATE_PATH, NIGHT_PATH,
                         NIGHT_TOTALS, KnownRequest, KnownResponse, MutateRequest, MutateResponse,
                         request_id)

log = logging.getLogger(__name__)

#: The production service's port (the deployment's content service); the reference server's too.
DEFAULT_PORT = 9081
#: Documents one mutate request may carry: a transaction's size stays bounded whatever the
#: client's YOYO_GRAPH_WRITE_BATCH (the pipeline's default batch is 256).
DEFAULT_MAX_BATCH_DOCUMENTS = 1024


def _invalid(error: ValidationError | ValueError) -> JSONResponse:
    return JSONResponse({"error": "invalid request", "detail": str(error)}, status_code=422)


class _Endpoints:
    """The handlers, over the graph that `lifespan` holds while the app runs."""

    def __init__(self, graph_path: Path, max_batch_documents: int):
        self.graph_path, self.max_batch_documents = graph_path, max_batch_documents
        self.graph: GraphDatabase | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        with open_graph(self.graph_path) as graph:
            self.graph = graph
            log.info("graph service holds %s", self.graph_path)
            yield

    async def mutate(self, request: Request) -> JSONResponse:
        try:
            body = MutateRequest.model_validate(await request.json())
            if body.request_id != request_id([d.sha256 for d in body.documents]):
                raise ValueError("request_id is not the SHA-256 of the sorted document hashes")
        except (ValidationError, ValueError) as exc:
            return _invalid(exc)
        if len(body.documents) > self.max_batch_documents:
            return JSONResponse({"error": f"batch of {len(body.documents)} documents is over "
                                 f"this service's limit of {self.max_batch_documents}"}, 413)
        stats = self.graph.write_extractions(body.extractions(), body.night)
        crash_point("graph_service.before_response")
        replayed = stats.documents_already_recorded == len(body.documents)
        log.info("mutate %s: %s%s", body.request_id[:12], vars(stats),
                 " (replayed)" if replayed else "")
        return JSONResponse(MutateResponse(request_id=body.request_id, replayed=replayed,
                                           stats=stats).model_dump(mode="json"))

    async def known(self, request: Request) -> JSONResponse:
        try:
            body = KnownRequest.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return _invalid(exc)
        found = self.graph.known_documents(body.hashes)
        return JSONResponse(KnownResponse(known=sorted(found)).model_dump())

    async def counts(self, request: Request) -> JSONResponse:
        return JSONResponse(self.graph.counts())

    async def night(self, request: Request) -> JSONResponse:
        try:
            sample = int(request.query_params.get("sample", "10"))
        except ValueError as exc:
            return _invalid(exc)
        totals = self.graph.night_totals(request.path_params["night"], sample)
        return JSONResponse(NIGHT_TOTALS.dump_python(totals, mode="json"))

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "graph": str(self.graph_path)})


def build_app(graph_path: Path,
              max_batch_documents: int = DEFAULT_MAX_BATCH_DOCUMENTS) -> Starlette:
    """The service's ASGI app over the LadybugDB file `graph_path` (opened at startup; raises
    `graph_store.GraphFileBusy` there if another process holds it). A mutate request with more
    than `max_batch_documents` documents is refused with 413."""
    endpoints = _Endpoints(graph_path, max_batch_documents)
    return Starlette(lifespan=endpoints.lifespan, routes=[
        Route(MUTATE_PATH, endpoints.mutate, methods=["POST"]),
        Route(KNOWN_PATH, endpoints.known, methods=["POST"]),
        Route(COUNTS_PATH, endpoints.counts, methods=["GET"]),
        Route(NIGHT_PATH, endpoints.night, methods=["GET"]),
        Route(HEALTH_PATH, endpoints.health, methods=["GET"]),
    ])


def serve(graph_path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          max_batch_documents: int = DEFAULT_MAX_BATCH_DOCUMENTS) -> None:
    """Serve the graph at `graph_path` on `host:port` until interrupted (one uvicorn worker:
    one writer)."""
    uvicorn.run(build_app(graph_path.resolve(), max_batch_documents), host=host, port=port,
                workers=1, log_level="info")
