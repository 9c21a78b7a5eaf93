"""Phase 1 benchmark: extraction throughput (graph writes: benchmarks/graph_writes.py).

    .venv/bin/python benchmarks/phase1.py [--documents 3] [--concurrency 16] [--url URL]

Extraction, per stream (research notes, contact records: the first `--documents` of each in
../shared/corpora), on one server and the same documents, with the pipeline's default run
config (ExtractionConfig: 32-token chunks, the worked example, the JSON schema): (c) the
pipeline's requests one at a time, (b) the same requests from a bare concurrent httpx client,
(a) the pipeline's EntityExtractor, both at `--concurrency`. Prints a Markdown section for
docs/benchmarks.md. Without --url it starts the managed vLLM server (embedded model) with the pipeline's own server settings,
prefix caching included, as a night does: every request shares the system prompt and the
worked example, so (c), (b) and (a) find the same prefix cached.
"""

import argparse
import asyncio
import logging
import platform
import sys
import time
from pathlib import Path

import httpx
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.documents.streams import read_document  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import EntityExtractor  # noqa: E402
from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"

# The same upsert for one entity, its values as scalar parameters.


async def bare_client(url, payloads, concurrency):
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        async def one(p):
            async with limit:
                r = await client.post("/v1/chat/completions", json=p)
                r.raise_for_status()
        await asyncio.gather(*(one(p) for p in payloads))


async def sequential(url, payloads):
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        for p in payloads:
            (await client.post("/v1/chat/completions", json=p)).raise_for_status()


def extraction_figures(server, documents, concurrency):
    """(a, b, c) in documents per second and the pipeline's failures, for one stream."""
    tokenizer = Tokenizer.from_file(str(server.tokenizer_file()))
    extractor = EntityExtractor(server.base_url, server.model, tokenizer,
                                server.context_tokens(), concurrency=concurrency,
                                **ExtractionConfig().extractor_settings())
    # Exactly the requests the pipeline sends, for (b) and (c).
    payloads = [p for d in documents for p in extractor.payloads(d)]
    asyncio.run(bare_client(server.base_url, payloads[:2], 2))  # warm-up, grammar compiled
    t = time.monotonic()
    asyncio.run(sequential(server.base_url, payloads))
    c = len(documents) / (time.monotonic() - t)
    t = time.monotonic()
    asyncio.run(bare_client(server.base_url, payloads, concurrency))
    b = len(documents) / (time.monotonic() - t)
    t = time.monotonic()
    report = asyncio.run(extractor.extract(documents))
    a = len(report.results) / (time.monotonic() - t)
    return a, b, c, len(report.failures), len(payloads)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=3, help="documents per stream")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    streams = {"research notes": [read_document(p, "research") for p in sorted(
                   (CORPORA / "research").glob("*.md"))[:args.documents]],
               "contact records": [read_document(p, "contacts") for p in sorted(
                   (CORPORA / "contacts").glob("*.json"))[:args.documents]]}
    model_dir = ensure_embedded_model(REPO / "var" / "data" / "models")
    server = InferenceServer(mode="external" if args.url else "managed", url=args.url or "x",
                             model_dir=str(model_dir), launch=ServerLaunch(
                                 log_dir=str(REPO / "var" / "data" / "logs")))
    rows = []
    with server.serving(logging.getLogger("bench")) as running:
        for name, documents in streams.items():
            a, b, c, failed, requests = extraction_figures(running, documents, args.concurrency)
            rows.append(f"| {name} ({len(documents)}, {requests} requests) | {a:.3f} ({failed} "
                        f"failed) | {b:.3f} | {c:.3f} | {a / b:.2f} | {a / c:.2f} |")
    table = "\n".join(rows)
    print(f"""## Phase 1 ({time.strftime('%Y-%m-%d')}, {platform.machine()}, 2 cores, CPU vLLM, SmolLM2-135M-Instruct)

Command: `.venv/bin/python benchmarks/phase1.py --documents {args.documents} --concurrency {args.concurrency}`{" --url " + args.url if args.url else ""}

Extraction with the default run config, the managed server's settings, concurrency {args.concurrency}, docs/s:
(a) the pipeline (`EntityExtractor`: chunking, retries, schema checks), (b) a bare concurrent
httpx client sending the same requests, (c) the same requests one at a time.

| stream | (a) pipeline | (b) bare client | (c) one at a time | a/b (target ≥ 0.9) | a/c (target ≥ 3) |
|---|---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
