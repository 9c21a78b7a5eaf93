"""The graph service under hostile clients (issue 47's figures): huge headers, slow headers, and
the health check while one large corrections request is applied.

    .venv/bin/python benchmarks/service_limits.py [--corrections 10000] [--slow 50]

Starts the reference service (`python -m yoyo_assets graph-service`) on a fresh graph file and
prints, as markdown rows: the answers to 20 requests with a 1 MiB header and the service's RSS
growth over them (MiB); the slowest of 10 `GET /v1/graph/counts` while `--slow` connections send
their headers one byte a second; then, with `--corrections` documents in the ledger (5 entities
each), the time to apply one request of that many corrections (5 entities each, all different
from the extractor's) and the slowest and median `/healthz` answer polled every 0.1 s meanwhile.
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from graph_soak import REPO, Service, document

from yoyo_assets.datagraph.corrections.stream import parse_correction  # noqa: E402
from yoyo_assets.datagraph.graph.client import GraphServiceClient  # noqa: E402

NIGHT = "2026-11-20"
CONFIRMED = [{"name": n, "type": t} for n, t in (("Ada Lovelace", "person"), ("Acme", "company"),
                                                  ("Kestrel", "project"), ("Lisbon", "location"),
                                                  ("ACC-1", "account"))]


def huge_headers(service: Service) -> str:
    process = psutil.Process(service.process.pid)
    before = process.memory_info().rss
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2**20 + b"\r\n\r\n"
    answers = set()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", service.port)) as connection:
            try:
                connection.sendall(request)
            except OSError:
                pass
            answers.add(connection.recv(100).split(b"\r\n")[0].decode())
    grown = (process.memory_info().rss - before) / 2**20
    return f"| 20 requests with a 1 MiB header | {sorted(answers)} | RSS +{grown:.1f} MiB |"


def slow_headers(service: Service, count: int) -> str:
    slow = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(count)]
    for connection in slow:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    waits, statuses = [], set()
    for _ in range(10):
        for connection in slow:
            try:
                connection.sendall(b"s")
            except OSError:
                pass
        started = time.perf_counter()
        statuses.add(httpx.get(service.url + "/v1/graph/counts", timeout=30).status_code)
        waits.append(time.perf_counter() - started)
        time.sleep(1)
    for connection in slow:
        connection.close()
    return (f"| 10 requests beside {count} slow-header connections | {sorted(statuses)} | "
            f"slowest {max(waits):.3f} s |")


def large_request(service: Service, count: int) -> str:
    client = GraphServiceClient(service.url, attempts=1, timeout_s=3600)
    documents = [document(n) for n in range(count)]
    for first in range(0, count, 1000):
        client.write_extractions(documents[first:first + 1000], NIGHT)
    client.close()
    corrections = [parse_correction(json.dumps({
        "document": d.sha256, "entities": CONFIRMED, "by": f"op{n}",
        "at": "2026-11-20T10:00Z"}), REPO).model_dump(mode="json")
        for n, d in enumerate(documents)]
    body = json.dumps({"night": NIGHT, "corrections": corrections}).encode()
    answer = {}

    def send():
        answer["status"] = httpx.post(service.url + "/v1/graph/corrections", content=body,
                                      timeout=3600).status_code

    sender = threading.Thread(target=send)
    started = time.perf_counter()
    sender.start()
    waits = []
    while sender.is_alive():
        asked = time.perf_counter()
        httpx.get(service.url + "/healthz", timeout=60).raise_for_status()
        waits.append(time.perf_counter() - asked)
        time.sleep(0.1)
    took = time.perf_counter() - started
    return (f"| one request of {count} corrections ({len(body) / 2**20:.1f} MiB) | "
            f"{answer['status']} in {took:.1f} s | /healthz x{len(waits)}: slowest "
            f"{max(waits):.3f} s, median {statistics.median(waits):.3f} s |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corrections", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=50)
    args = parser.parse_args()
    print("| what | answer | measured |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        with Service(Path(folder) / "graph.lbug", 512, 4) as service:
            print(huge_headers(service), flush=True)
            print(slow_headers(service, args.slow), flush=True)
            print(large_request(service, args.corrections), flush=True)


if __name__ == "__main__":
    sys.exit(main())
