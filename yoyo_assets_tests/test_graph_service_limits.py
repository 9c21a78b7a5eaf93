"""The graph service behind the limits a production server sets, each tried as a hostile client
would (docs/reliability.md, "Hostile clients of the graph service"): huge and slow headers, a
long write beside the health check, JSON built to break the parser, ids replayed with other
content, the query string against the path, weak tokens beyond loopback."""

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from yoyo_assets.datagraph.graph.client import GraphServiceClient
from yoyo_assets.datagraph.graph.wire import CORRECTIONS_PATH, MUTATE_PATH, MutateRequest

from .helpers import REPO_ROOT, GraphService, free_port, timeout
from .test_corrections import correction
from .test_graph_store import extraction

NIGHT = "2026-11-20"
HEADER_TIMEOUT_S = 2


@pytest.fixture
def service(tmp_path):
    running = GraphService(tmp_path / "graph.lbug", tmp_path / "service.log",
                           options=("--header-timeout-s", str(HEADER_TIMEOUT_S)))
    running.start()
    yield running
    running.stop()


def _status_of_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(timeout(30))
        try:
            connection.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send: the answer is already waiting
        return connection.recv(200).split(b"\r\n", 1)[0]


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def test_a_1_mib_header_is_refused_431_and_the_process_does_not_grow(service):
    before = _rss_mib(service.process.pid)
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2**20 + b"\r\n\r\n"
    for _ in range(5):
        assert _status_of_raw(service.port, huge).startswith(b"HTTP/1.1 431")
    assert _rss_mib(service.process.pid) - before < 10
    assert httpx.get(service.url + "/healthz").status_code == 200


def test_slow_header_connections_hold_no_slot_and_are_closed(service):
    slow = []
    for _ in range(50):
        connection = socket.create_connection(("127.0.0.1", service.port))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        slow.append(connection)
    try:
        for _ in range(3):
            for connection in slow:
                connection.sendall(b"s")  # one byte a second, as a slowloris client
            started = time.monotonic()
            assert httpx.get(service.url + "/v1/graph/counts", timeout=2).status_code == 200
            assert time.monotonic() - started < 2
            time.sleep(1)
        # The server closes a connection whose headers are not in within the header timeout.
        slow[0].settimeout(timeout(HEADER_TIMEOUT_S + 10))
        deadline = time.monotonic() + timeout(HEADER_TIMEOUT_S + 10)
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                slow[0].sendall(b"s")
                closed = slow[0].recv(100) == b""
            except (socket.timeout, OSError):
                closed = True
        assert closed
    finally:
        for connection in slow:
            connection.close()


def _ledger_of(client: GraphServiceClient, documents: int) -> list[str]:
    hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(documents)]
    batch = [extraction(sha, [(f"Person {n} {i}", "person") for i in range(5)])
             for n, sha in enumerate(hashes)]
    assert client.write_extractions(batch, NIGHT).documents_recorded == documents
    return hashes


def test_health_answers_within_a_second_while_a_large_request_is_applied(service):
    client = GraphServiceClient(service.url, attempts=1, timeout_s=timeout(300))
    hashes = _ledger_of(client, 400)
    names = [("Ada Lovelace", "person"), ("Acme", "company"), ("Kestrel", "project"),
             ("Lisbon", "location"), ("ACC-1", "account")]
    body = {"night": NIGHT, "corrections": [
        correction(document=sha, entities=names, by=f"op{n}").model_dump(mode="json")
        for n, sha in enumerate(hashes)]}
    answer = {}

    def apply():
        answer["response"] = httpx.post(service.url + CORRECTIONS_PATH, json=body,
                                        timeout=timeout(300))

    writer = threading.Thread(target=apply)
    started = time.monotonic()
    writer.start()
    waits = []
    while writer.is_alive():
        asked = time.monotonic()
        assert httpx.get(service.url + "/healthz", timeout=5).status_code == 200
        waits.append(time.monotonic() - asked)
        time.sleep(0.1)
    took = time.monotonic() - started
    assert answer["response"].status_code == 200
    assert {o["status"] for o in answer["response"].json()["outcomes"]} == {"applied"}
    assert took > 1 and len(waits) > 5, (took, waits)  # the health checks overlapped the work
    assert max(waits) < 1, (took, max(waits))
    client.close()


def _post(service, raw: bytes, path: str = MUTATE_PATH) -> httpx.Response:
    return httpx.post(service.url + path, content=raw, timeout=timeout(60),
                      headers={"content-type": "application/json"})


def _valid_text() -> str:
    return json.dumps(MutateRequest.of([extraction("a" * 64, [("Ada", "person")])],
                                       NIGHT).model_dump(mode="json"))


#: finding -> (body, what the 422's detail must say)
BROKEN_JSON = {
    "nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    "a 5,000-digit integer": (b'{"night": ' + b"9" * 5000 + b"}", "a number too large"),
    "a duplicate key": (_valid_text()[:-1].encode() + b', "night": "2026-11-21"}',
                        "duplicate key 'night'"),
    "UTF-16": (_valid_text().encode("utf-16"), "not UTF-8"),
    "a 15 MB unknown key": (_valid_text()[:-1].encode() + b', "' + b"k" * (15 * 2**20)
                            + b'": 1}', "Extra inputs"),
}


@pytest.mark.parametrize("finding", BROKEN_JSON)
def test_json_built_to_break_the_parser_is_a_422_with_a_short_detail(service, finding):
    raw, reason = BROKEN_JSON[finding]
    answer = _post(service, raw)
    assert answer.status_code == 422, (answer.status_code, answer.text[:300])
    detail = answer.json()["detail"]
    assert reason in detail and len(detail) < 1100, detail[:300]
    assert httpx.get(service.url + "/healthz").status_code == 200


def test_an_id_sent_again_with_other_content_is_a_409_naming_it(service):
    first = MutateRequest.of([extraction("a" * 64, [("Ada", "person")])],
                             NIGHT).model_dump(mode="json")
    assert _post(service, json.dumps(first).encode()).status_code == 200
    again = _post(service, json.dumps(first).encode())
    assert again.status_code == 200 and again.json()["replayed"] is True
    other = MutateRequest.of([extraction("a" * 64, [("Mallory", "person")])],
                             NIGHT).model_dump(mode="json")
    assert other["request_id"] == first["request_id"]
    refused = _post(service, json.dumps(other).encode())
    assert refused.status_code == 409 and first["request_id"] in refused.json()["detail"]

    second = MutateRequest.of([extraction("b" * 64, [("Ada", "person")])],
                              NIGHT).model_dump(mode="json")
    assert _post(service, json.dumps(second).encode()).status_code == 200
    applied = correction(document="a" * 64).model_dump(mode="json")
    body = {"night": NIGHT, "corrections": [applied]}
    assert _post(service, json.dumps(body).encode(), CORRECTIONS_PATH).status_code == 200
    assert _post(service, json.dumps(body).encode(), CORRECTIONS_PATH).json()["outcomes"][0][
        "status"] == "already_applied"
    for changed in ({"document": "b" * 64}, {"by": "mallory"}):
        body = {"night": NIGHT, "corrections": [{**applied, **changed}]}
        refused = _post(service, json.dumps(body).encode(), CORRECTIONS_PATH)
        assert refused.status_code == 409 and applied["id"] in refused.json()["detail"]
    client = GraphServiceClient(service.url, attempts=1)
    assert client.counts() == {"documents": 2, "entities": 2, "mentions": 2}  # Ada, Ada Lovelace
    client.close()


def test_the_query_string_cannot_choose_another_night(service):
    answer = httpx.get(service.url + f"/v1/graph/nights/{NIGHT}?night=2026-11-21")
    assert answer.status_code == 422 and "night" in answer.json()["detail"]
    assert httpx.get(service.url + f"/v1/graph/nights/{NIGHT}?sample=3").status_code == 200


@pytest.mark.parametrize("token", ["x", "a" * 64, "abcd" * 11])
def test_a_weak_token_does_not_bind_beyond_loopback(tmp_path, token):
    refused = subprocess.run(
        [sys.executable, "-m", "yoyo_assets", "graph-service", "--graph",
         str(tmp_path / "g.lbug"), "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout(120),
        env={**os.environ, "YOYO_GRAPH_SERVICE_TOKEN": token})
    assert refused.returncode == 2
    assert "without a token of at least 32 random bytes" in refused.stderr


def test_a_strong_token_binds_beyond_loopback_and_is_required(tmp_path):
    token = secrets.token_urlsafe(32)
    running = GraphService(tmp_path / "g.lbug", tmp_path / "service.log", token=token,
                           options=("--host", "0.0.0.0"))
    running.start()  # its health check is asked on 127.0.0.1
    try:
        assert httpx.get(running.url + "/v1/graph/counts").status_code == 401
        assert httpx.get(running.url + "/v1/graph/counts",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        running.stop()
