"""Graph store soak: many write transactions through each sink, with the resident memory (RSS) of
the process that holds the graph and the time per write as the run goes on.

    .venv/bin/python benchmarks/graph_soak.py [--sink embedded|service|both] \
        [--single 10000] [--batches 100] [--batch-size 256] [--rows 10] \
        [--buffer-pool-mib 512] [--checkpoint-mib 4]

Workloads, each on a fresh graph file: `--single` one-document writes, then `--batches` batches
of `--batch-size` documents. Each document names 8 entities: 6 of its own and 2 of 40 shared
ones (updates of existing entities). `embedded`: `GraphDatabase.write_extractions` in this
process; `service`: mutate requests to the reference graph service in its own process. Prints
one markdown row per tenth of each workload: writes so far, RSS (MiB), ms per write over that
tenth; then the last tenth's ms per write over the first's, which must stay near 1 (the time of
a write must not grow with the writes made).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction,  # noqa: E402
                                                        ExtractedEntity, entity_key)
from yoyo_assets.datagraph.graph.client import GraphServiceClient  # noqa: E402
from yoyo_assets.datagraph.graph.store import open_graph  # noqa: E402

NIGHT = "2026-11-20"


def document(number: int) -> DocumentExtraction:
    """Document `number`: 6 entities of its own, 2 of 40 shared ones."""
    names = [(f"Person {number} {i}", "person") for i in range(6)]
    names += [(f"Company {(number + i) % 40}", "company") for i in range(2)]
    entities = [ExtractedEntity(entity_key(n, t), n, t, [n], 1 + i % 3)
                for i, (n, t) in enumerate(names)]
    sha = hashlib.sha256(str(number).encode()).hexdigest()
    return DocumentExtraction(sha, "research", f"/data/research/{number}.md", entities, 1)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The reference graph service in its own process, for the duration of a `with`."""

    def __init__(self, graph: Path, buffer_pool_mib: int, checkpoint_mib: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "YOYO_GRAPH_BUFFER_POOL_MIB": str(buffer_pool_mib),
               "YOYO_GRAPH_CHECKPOINT_MIB": str(checkpoint_mib)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "yoyo_assets", "graph-service", "--graph", str(graph),
             "--port", str(self.port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                httpx.get(self.url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(30)


def soak(write, rss, writes: int, size: int, start: int) -> list[tuple[int, float, float]]:
    """`writes` calls of `write(batch)` with `size` documents each; (writes so far, RSS MiB,
    ms per write over the last tenth) at every tenth."""
    rows, every = [], max(1, writes // 10)
    last = time.perf_counter()
    for index in range(writes):
        first = start + index * size
        write([document(n) for n in range(first, first + size)])
        if (index + 1) % every == 0:
            now = time.perf_counter()
            rows.append((index + 1, rss() / 2**20, (now - last) / every * 1000))
            last = now
    return rows


def run(sink: str, writes: int, size: int, args) -> list[tuple[int, float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        graph = Path(folder) / "graph.lbug"
        if sink == "embedded":
            with open_graph(graph, args.buffer_pool_mib, args.checkpoint_mib) as store:
                me = psutil.Process()
                return soak(lambda b: store.write_extractions(b, NIGHT),
                            lambda: me.memory_info().rss, writes, size, 0)
        with Service(graph, args.buffer_pool_mib, args.checkpoint_mib) as service:
            client = GraphServiceClient(service.url, attempts=1)
            process = psutil.Process(service.process.pid)
            try:
                return soak(lambda b: client.write_extractions(b, NIGHT),
                            lambda: process.memory_info().rss, writes, size, 0)
            finally:
                client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink", choices=["embedded", "service", "both"], default="both")
    parser.add_argument("--single", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer-pool-mib", type=int, default=512)
    parser.add_argument("--checkpoint-mib", type=int, default=4)
    args = parser.parse_args()
    sinks = ["embedded", "service"] if args.sink == "both" else [args.sink]
    print(f"buffer pool {args.buffer_pool_mib} MiB, checkpoint at {args.checkpoint_mib} MiB "
          f"of write-ahead log\n")
    print("| sink | workload | writes | RSS MiB | ms per write (this tenth) |")
    print("|---|---|---|---|---|")
    for sink in sinks:
        for writes, size in ((args.single, 1), (args.batches, args.batch_size)):
            if writes == 0:  # that workload skipped
                continue
            rows = run(sink, writes, size, args)
            for done, rss, ms in rows:
                print(f"| {sink} | {writes} x {size} | {done} | {rss:.0f} | {ms:.1f} |",
                      flush=True)
            print(f"| {sink} | {writes} x {size} | last/first tenth | peak "
                  f"{max(r[1] for r in rows):.0f} | {rows[-1][2] / rows[0][2]:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
