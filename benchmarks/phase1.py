"""Phase 1 benchmark: extraction throughput and graph write throughput.

    .venv/bin/python benchmarks/phase1.py [--documents 3] [--concurrency 16] [--url URL]

Extraction, per stream (research notes, contact records: the first `--documents` of each in
../shared/corpora), on one server and the same documents, with the pipeline's default run
config (ExtractionConfig: 32-token chunks, the worked example, the JSON schema): (c) the
pipeline's requests one at a time, (b) the same requests from a bare concurrent httpx client,
(a) the pipeline's EntityExtractor, both at `--concurrency`. Graph writes on a fresh LadybugDB
file: 10,000 entities through the pipeline's writer (one transaction) and through one
autocommit MERGE per entity. Prints a Markdown section for docs/benchmarks.md. Without --url it
starts the managed vLLM server (embedded model) with the pipeline's own server settings,
prefix caching included, as a night does: every request shares the system prompt and the
worked example, so (c), (b) and (a) find the same prefix cached.
"""

import argparse
import asyncio
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph import graph_store  # noqa: E402
from yoyo_assets.datagraph.documents import read_document  # noqa: E402
from yoyo_assets.datagraph.extraction import (DocumentExtraction, EntityExtractor,  # noqa: E402
                                              ExtractedEntity)
from yoyo_assets.datagraph.extraction_config import ExtractionConfig  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.datagraph.graph_store import open_graph  # noqa: E402
from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"

# The same upsert for one entity, its values as scalar parameters.
NAIVE_UPSERT = """
MERGE (e:Entity {key: $key})
ON CREATE SET e.name = $name, e.type = $type, e.spellings = $spellings,
              e.first_night = $night, e.last_night = $night, e.document_count = $documents
ON MATCH SET e.spellings = list_distinct(list_concat(e.spellings, $spellings)),
             e.first_night = CASE WHEN $night < e.first_night THEN $night ELSE e.first_night END,
             e.last_night = CASE WHEN $night > e.last_night THEN $night ELSE e.last_night END,
             e.document_count = e.document_count + $documents
"""


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


def graph_figures(n=10_000):
    with tempfile.TemporaryDirectory() as folder:
        extractions = [DocumentExtraction(
            f"{d:064x}", "research", f"doc{d}.md",
            [ExtractedEntity(f"person:name {d * 100 + i}", f"Name {d * 100 + i}", "person",
                             [f"Name {d * 100 + i}"], 1) for i in range(100)], chunks=1)
            for d in range(n // 100)]
        with open_graph(Path(folder) / "writer.lbug") as graph:
            t = time.monotonic()
            graph.write_extractions(extractions, "2026-11-20")
            writer = n / (time.monotonic() - t)
            rows = graph_store.batch_rows(
                [DocumentExtraction(x.sha256[:-1] + "z", x.stream, x.path, x.entities, 1)
                 for x in extractions], "2026-11-21").entities
            t = time.monotonic()  # the same 10,000 keys again: all updates
            with graph.transaction():
                graph.query(graph_store.UPDATE_ENTITIES, graph_store.columns(rows))
            upsert_only = n / (time.monotonic() - t)
        with open_graph(Path(folder) / "naive.lbug") as graph:
            rows = graph_store.batch_rows(extractions, "2026-11-20").entities
            t = time.monotonic()
            for row in rows:
                graph.query(NAIVE_UPSERT, row)
            naive = n / (time.monotonic() - t)
    return writer, upsert_only, naive


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
    writer, upsert_only, naive = graph_figures()
    table = "\n".join(rows)
    print(f"""## Phase 1 ({time.strftime('%Y-%m-%d')}, {platform.machine()}, 2 cores, CPU vLLM, SmolLM2-135M-Instruct)

Command: `.venv/bin/python benchmarks/phase1.py --documents {args.documents} --concurrency {args.concurrency}`{" --url " + args.url if args.url else ""}

Extraction with the default run config, the managed server's settings, concurrency {args.concurrency}, docs/s:
(a) the pipeline (`EntityExtractor`: chunking, retries, schema checks), (b) a bare concurrent
httpx client sending the same requests, (c) the same requests one at a time.

| stream | (a) pipeline | (b) bare client | (c) one at a time | a/b (target ≥ 0.9) | a/c (target ≥ 3) |
|---|---|---|---|---|---|
{table}

Graph writes, 10,000 entities, fresh LadybugDB file:

| | entity upserts/s |
|---|---|
| pipeline writer (`write_extractions`: entities + 100 ledger documents + 10,000 MENTIONS, one transaction) | {writer:,.0f} |
| entity upsert statement alone (10,000 existing keys, one transaction) | {upsert_only:,.0f} |
| naive: one MERGE per entity, autocommit | {naive:,.0f} |
| writer/naive | {writer / naive:.0f} |
""")


if __name__ == "__main__":
    main()
