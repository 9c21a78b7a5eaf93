"""The `service` graph sink against the reference graph service (a real uvicorn process over a
LadybugDB file): the same graph as the embedded sink, idempotent batches, refused and
unreachable requests, hostile requests (each a 4xx naming the field, the service up after),
limits before work, the bearer token, and the embedded sink refusing a file the service holds.
(A whole night through the service, with crashes: test_pipeline; fuzzing: test_graph_fuzz.)"""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from yoyo_assets.datagraph.graph.client import (GraphServiceClient, GraphServiceRejected,
                                                GraphServiceUnavailable)
from yoyo_assets.datagraph.graph.store import GraphFileBusy, open_graph
from yoyo_assets.datagraph.graph.wire import MUTATE_PATH, MutateRequest
from yoyo_assets.datagraph.resources import GraphStore

from .helpers import REPO_ROOT, GraphService, free_port, graph_snapshot
from .test_graph_store import extraction

NIGHTS = ("2026-11-20", "2026-11-21")


def batches():
    """Two nights of batches with shared entities across documents and nights."""
    return [
        ([extraction("a" * 64, [("Ada Lovelace", "person"), ("London", "location")]),
          extraction("b" * 64, [("Ada Lovelace", "person"), ("Acme", "company")])], NIGHTS[0]),
        ([extraction("c" * 64, [("ada lovelace", "person"), ("Analytical Engine", "project")],
                     stream="transcripts")], NIGHTS[1]),
    ]


@pytest.fixture
def service(tmp_path):
    running = GraphService(tmp_path / "service" / "graph.lbug", tmp_path / "service.log",
                           max_batch_documents=2)
    running.start()
    yield running
    running.stop()


def test_the_service_builds_the_graph_the_embedded_sink_builds(service, tmp_path):
    client = GraphServiceClient(service.url, attempts=2)
    embedded_path = tmp_path / "embedded.lbug"
    with open_graph(embedded_path) as embedded:
        for batch, night in batches():
            assert client.write_extractions(batch, night) == embedded.write_extractions(batch,
                                                                                       night)
        # Replayed (a retry, or a re-run after a crash): nothing counted twice.
        first, night = batches()[0]
        again = client.write_extractions(first, night)
        assert again.documents_already_recorded == 2 and again.documents_recorded == 0
        # A batch mixing a recorded document and a new one: only the new one is written.
        mixed = [first[0], extraction("d" * 64, [("London", "location")])]
        assert client.write_extractions(mixed, NIGHTS[1]) == embedded.write_extractions(
            mixed, NIGHTS[1])
        assert client.counts() == embedded.counts() == {"documents": 4, "entities": 4,
                                                        "mentions": 7}
        for night in NIGHTS:
            assert client.night_totals(night) == embedded.night_totals(night)
        assert client.known_documents(["a" * 64, "e" * 64]) == {"a" * 64}
    client.close()
    service.stop()
    assert graph_snapshot(service.graph_path) == graph_snapshot(embedded_path)


def test_a_refused_batch_fails_with_the_services_answer(service):
    client = GraphServiceClient(service.url, attempts=2)
    three = [extraction(c * 64, [("Acme", "company")]) for c in "abc"]
    with pytest.raises(GraphServiceRejected, match="413.*over this service's limit of 2"):
        client.write_extractions(three, NIGHTS[0])
    body = MutateRequest.of(three[:1], NIGHTS[0]).model_dump(mode="json")
    body["documents"][0]["entities"][0]["type"] = "planet"
    answer = httpx.post(service.url + MUTATE_PATH, json=body)
    assert answer.status_code == 422 and "documents.0.entities.0.type" in answer.text
    body = MutateRequest.of(three[:1], NIGHTS[0]).model_dump(mode="json")
    body["request_id"] = "0" * 64
    answer = httpx.post(service.url + MUTATE_PATH, json=body)
    assert answer.status_code == 422 and "request_id" in answer.text
    assert client.counts() == {"documents": 0, "entities": 0, "mentions": 0}
    client.close()


def test_an_unreachable_service_is_unavailable_after_the_attempts():
    url = f"http://127.0.0.1:{free_port()}"
    client = GraphServiceClient(url, timeout_s=2, attempts=3, max_wait_s=0.2)
    with pytest.raises(GraphServiceUnavailable, match=f"{url} unreachable after 3 attempts"):
        client.write_extractions([extraction("a" * 64, [("Acme", "company")])], NIGHTS[0])
    client.close()


def test_the_embedded_sink_refuses_the_file_the_service_holds(service):
    store = GraphStore(path=str(service.graph_path))
    with pytest.raises(GraphFileBusy, match=f"graph file {service.graph_path} is open for "
                       "writing in another process.*YOYO_GRAPH_SINK=service"):
        with store.open():
            pass
    through_service = GraphStore(path=str(service.graph_path), sink="service",
                                 service_url=service.url)
    with through_service.open() as graph:
        assert graph.counts()["documents"] == 0
    assert through_service.location() == service.url


def _valid_body(count=1):
    docs = [extraction(c * 64, [("Ada Lovelace", "person"), ("London", "location")])
            for c in "abcdef"[:count]]
    return MutateRequest.of(docs, NIGHTS[0]).model_dump(mode="json")


def _changed(path, value, count=1):
    """A valid body with the value at `path` (keys and indexes) replaced."""
    body = _valid_body(count)
    *parents, last = path
    target = body
    for key in parents:
        target = target[key]
    target[last] = value
    return body


ENTITY = ("documents", 0, "entities", 0)
#: (body as bytes, status, what the answer must name). json.dumps escapes a lone surrogate as
#: `\ud800`, as a hostile client would send it.
HOSTILE = [
    (_changed(("documents", 0, "path"), "/d/\ud800.md"), 422,
     "documents.0.path: lone surrogate U+D800"),
    (_changed(("documents", 0, "stream"), "\ud800"), 422, "documents.0.stream"),
    (_changed((*ENTITY, "aliases"), ["Ada\ud800"]), 422, "documents.0.entities.0.aliases.0"),
    (_changed(("documents", 0, "extractor"), "m\x00"), 422, "documents.0.extractor: control"),
    (_changed(("documents", 1), _valid_body()["documents"][0], count=2), 422,
     "documents.1: document aaaa"),
    (_changed((*ENTITY, "mentions"), 2**63), 422, "documents.0.entities.0.mentions"),
    (_changed((*ENTITY, "mentions"), "3"), 422, "documents.0.entities.0.mentions"),
    (_changed((*ENTITY, "mentions"), 2.0), 422, "documents.0.entities.0.mentions"),
    (_changed((*ENTITY, "mentions"), True), 422, "documents.0.entities.0.mentions"),
    (_changed((*ENTITY, "key"), "person:someone else"), 422,
     "documents.0.entities.0: key 'person:someone else' is not the key"),
    (_changed(("documents", 0, "entities", 1), _valid_body()["documents"][0]["entities"][0]),
     422, "documents.0: entities.1: entity 'person:ada lovelace' given twice"),
    (_changed(("night",), "2026-13-45"), 422, "night: month must be in 1..12"),
    (_changed(("night",), "２０２６-11-20"), 422, "night"),
    (_changed(("request_id",), "0" * 64), 422, "request_id is not the SHA-256"),
    (_changed(("documents",), []), 422, "documents: List should have at least 1 item"),
    (_changed(("surprise",), 1), 422, "surprise: Extra inputs are not permitted"),
    (b"{not json", 422, "body: malformed JSON"),
    (b"\xff\xfe\x00", 422, "body:"),
    (b"[]", 422, "Input should be a valid dictionary"),
    (b"null", 422, "Input should be a valid dictionary"),
]


def test_hostile_requests_get_a_4xx_naming_the_field_and_the_service_stays_up(service):
    for body, status, field in HOSTILE:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx.post(service.url + MUTATE_PATH, content=raw,
                            headers={"content-type": "application/json"})
        assert (answer.status_code, field in answer.json()["detail"]) == (status, True), \
            (body if isinstance(body, bytes) else field, answer.text)
    for path, query in [("/v1/graph/nights/2026-02-30", ""), ("/v1/graph/nights/x", ""),
                        ("/v1/graph/nights/2026-11-20", "?sample=-1"),
                        ("/v1/graph/nights/2026-11-20", "?sample=abc")]:
        answer = httpx.get(service.url + path + query)
        assert answer.status_code == 422, (path, query, answer.text)
    answer = httpx.post(service.url + "/v1/graph/documents/known", json={"hashes": ["x"]})
    assert answer.status_code == 422 and "hashes.0" in answer.text
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    client = GraphServiceClient(service.url, attempts=1)
    assert client.counts() == {"documents": 0, "entities": 0, "mentions": 0}
    assert client.write_extractions([extraction("a" * 64, [("Ada", "person")])],
                                    NIGHTS[0]).documents_recorded == 1
    client.close()


def test_limits_come_before_the_work(tmp_path):
    running = GraphService(tmp_path / "graph.lbug", tmp_path / "service.log",
                           max_batch_documents=2, options=(
                               "--max-body-mib", "1", "--read-timeout-s", "1",
                               "--max-requests", "3"))
    running.start()
    try:
        # 20 MB announced: refused from the headers, before a byte of the body is parsed.
        answer = httpx.post(running.url + MUTATE_PATH, content=b" " * (20 * 2**20))
        assert answer.status_code == 413 and "over this service's limit" in answer.text
        # The same without a Content-Length (chunked): refused while it is read.
        chunks = (b" " * 2**16 for _ in range(320))
        answer = httpx.post(running.url + MUTATE_PATH, content=chunks)
        assert answer.status_code == 413
        # Three documents over a limit of two: refused before they are validated.
        answer = httpx.post(running.url + MUTATE_PATH, json=_valid_body(count=3))
        assert answer.status_code == 413 and answer.json()["detail"].startswith("documents:")
        # A client that announces a body and never sends it: 408 after the read timeout.
        with socket.create_connection(("127.0.0.1", running.port)) as slow:
            slow.sendall(b"POST " + MUTATE_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(30)
            assert slow.recv(200).startswith(b"HTTP/1.1 408")
        # Requests beyond the limit (counted once their headers are in) are turned away with
        # 503, which the client retries; the health check is not one of them.
        held = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]
        for connection in held:
            connection.sendall(b"POST " + MUTATE_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 10\r\n\r\n{")
        time.sleep(0.3)
        answer = httpx.get(running.url + "/v1/graph/counts")
        assert answer.status_code == 503 and answer.json()["error"] == "busy"
        assert httpx.get(running.url + "/healthz").status_code == 200
        for connection in held:
            connection.close()
        client = GraphServiceClient(running.url, attempts=5, max_wait_s=1)
        assert client.counts()["documents"] == 0
        client.close()
    finally:
        running.stop()


def test_a_token_is_required_when_set_and_beyond_loopback(tmp_path):
    running = GraphService(tmp_path / "graph.lbug", tmp_path / "service.log", token="s3cret")
    running.start()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            answer = httpx.get(running.url + "/v1/graph/counts", headers=headers)
            assert answer.status_code == 401 and "Authorization" in answer.json()["detail"]
            assert answer.headers["www-authenticate"] == "Bearer"
        with pytest.raises(GraphServiceRejected, match="401"):
            GraphServiceClient(running.url, attempts=1).counts()
        client = GraphServiceClient(running.url, attempts=1, token="s3cret")
        assert client.write_extractions([extraction("a" * 64, [("Ada", "person")])],
                                        NIGHTS[0]).documents_recorded == 1
        client.close()
    finally:
        running.stop()
    refused = subprocess.run(
        [sys.executable, "-m", "yoyo_assets", "graph-service", "--graph",
         str(tmp_path / "other.lbug"), "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "YOYO_GRAPH_SERVICE_TOKEN": ""})
    assert refused.returncode == 2
    assert "refusing to serve the graph on 0.0.0.0 without a token" in refused.stderr
