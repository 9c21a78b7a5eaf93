"""Extraction throughput profile: where a Phase 1 night's time goes on the inference server.

    .venv/bin/python benchmarks/extraction_profile.py [--notes 4] [--contacts 4]
        [--variants default,no-prefix-cache,...] [--grid full|quick] [--adapter DIR]
        [--out results.jsonl]

For each server variant (the managed vLLM server's flags and environment, or the extraction
adapter served as a LoRA overlay or merged into a copy of the base), the script starts the
server, then sends the pipeline's own requests (EntityExtractor's chunks, prompts and JSON
schema under the default run config; the adapter's settings for adapter variants) for research
notes and contact records from ../shared/corpora, streamed, and records per cell (stream,
concurrency, schema on/off): wall seconds, seconds per document, prompt and generated tokens
per second (from the server's usage counts), mean and p90 time to first token, and, once per
server, the grammar compile time (the first schema request on a fresh server minus the same
request again). `--grid quick` measures concurrency 1 and 16 with the schema only, `c16` the
pipeline's concurrency (16) with the schema only.
Cells go to `--out` as JSON lines; a Markdown table is printed at the end.
"""

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import httpx
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.adapters.merged_weights import merged_model  # noqa: E402
from yoyo_assets.adapters.registry import versions  # noqa: E402
from yoyo_assets.datagraph.documents.streams import read_document  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import EntityExtractor  # noqa: E402
from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (DEFAULT_SERVER_ARGS, InferenceServer,  # noqa: E402
                                                  ServerLaunch, VllmOptions)

CORPORA = REPO.parent / "shared" / "corpora"
VLLM_BIND = {"cpu_bind": "auto"}  # vLLM's own: one core kept for its scheduler

#: name -> (extra server flags, VllmOptions fields, which model answers: base|overlay|merged);
#: every variant but `vllm-bind` (and the `*-vllm-bind` ones) runs the managed server's
#: defaults otherwise (`cpu_bind: all`).
VARIANTS = {
    "default": ([], {}, "base"),
    "vllm-bind": ([], VLLM_BIND, "base"),
    "no-prefix-cache": (["--no-enable-prefix-caching"], {}, "base"),
    "guidance": (["--structured-outputs-config.backend", "guidance"], {}, "base"),
    "outlines": (["--structured-outputs-config.backend", "outlines"], {}, "base"),
    "lm-format-enforcer": (["--structured-outputs-config.backend", "lm-format-enforcer"], {},
                           "base"),
    "max-num-seqs-16": (["--max-num-seqs", "16"], {}, "base"),
    "batched-tokens-512": (["--max-num-batched-tokens", "512"], {}, "base"),
    "batched-tokens-8192": (["--max-num-batched-tokens", "8192"], {}, "base"),
    "compiled": ([], {"enforce_eager": False}, "base"),
    "overlay": ([], {}, "overlay"),
    "overlay-vllm-bind": ([], VLLM_BIND, "overlay"),
    "merged": ([], {}, "merged"),
    "merged-vllm-bind": ([], VLLM_BIND, "merged"),
}


def documents(notes: int, contacts: int) -> dict:
    """stream -> the first documents of each stream in ../shared/corpora."""
    return {"research": [read_document(p, "research") for p in
                         sorted((CORPORA / "research").glob("*.md"))[:notes]],
            "contacts": [read_document(p, "contacts") for p in
                         sorted((CORPORA / "contacts").glob("*.json"))[:contacts]]}


def payloads(extractor: EntityExtractor, docs: list, schema: bool) -> list[dict]:
    """The requests the pipeline sends for `docs`, streamed, with or without the schema."""
    result = []
    for d in docs:
        for p in extractor.payloads(d):
            if not schema:
                del p["response_format"]
                p["max_tokens"] = 160  # bounded like a schema answer (no maxItems to stop it)
            result.append({**p, "stream": True, "stream_options": {"include_usage": True}})
    return result


async def one_request(client: httpx.AsyncClient, payload: dict) -> dict:
    """Send one streamed request: time to first token (s) and the usage counts."""
    started, first, usage = time.monotonic(), None, {}
    async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:  # the engine failed the request after the 200 header
                raise RuntimeError(f"server error in stream: {str(event['error'])[:300]}")
            if first is None and event.get("choices") and event["choices"][0]["delta"].get(
                    "content"):
                first = time.monotonic() - started
            usage = event.get("usage") or usage
    return {"ttft": first if first is not None else time.monotonic() - started, **usage}


async def send_all(url: str, requests: list[dict], concurrency: int) -> tuple[float, list]:
    """Send `requests` at most `concurrency` at a time: (wall seconds, per-request results)."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=1800) as client:
        async def limited(p):
            async with limit:
                return await one_request(client, p)
        started = time.monotonic()
        results = await asyncio.gather(*(limited(p) for p in requests))
    return time.monotonic() - started, results


def grammar_compile_s(url: str, request: dict) -> float:
    """First schema request on this server minus the same request again, seconds."""
    first = asyncio.run(send_all(url, [request], 1))[1][0]["ttft"]
    again = asyncio.run(send_all(url, [request], 1))[1][0]["ttft"]
    return first - again


def adapter_version(folder: Path):
    """The registry's version for an adapter folder `.../<tenant>/extraction/v<N>`."""
    return next(v for v in versions(folder.parent) if v.path == folder)


def server_for(variant: str, base: Path, adapter: Path | None, work: Path) -> InferenceServer:
    flags, fields, answers = VARIANTS[variant]
    common = dict(launch=ServerLaunch(log_dir=str(work / "logs"), args=DEFAULT_SERVER_ARGS + flags,
                                      health_timeout_s=900,
                                      vllm=VllmOptions(memory_share=None, **fields)))
    if answers == "overlay":
        return InferenceServer(model_dir=str(base), lora_modules={"extraction-adapter":
                               str(adapter)}, adapter="extraction-adapter", **common)
    if answers == "merged":
        merged = merged_model(adapter_version(adapter), base, work / "merged")
        return InferenceServer(model_dir=str(merged), **common)
    return InferenceServer(model_dir=str(base), **common)


def profile(variant: str, docs: dict, grid: str, base: Path, adapter: Path | None,
            work: Path) -> list[dict]:
    """Every cell of one server variant."""
    cells, server = [], server_for(variant, base, adapter, work)
    settings = ExtractionConfig().extractor_settings(adapter=VARIANTS[variant][2] != "base")
    started = time.monotonic()
    with server.serving(logging.getLogger("profile")) as live:
        startup = time.monotonic() - started
        tokenizer = Tokenizer.from_file(str(live.tokenizer_file()))
        extractor = EntityExtractor(live.base_url, live.request_model, tokenizer,
                                    live.context_tokens(), **settings)
        warm = payloads(extractor, docs["research"][:1], schema=False)[:2]
        asyncio.run(send_all(live.base_url, warm, 2))
        compile_s = grammar_compile_s(live.base_url, payloads(
            extractor, docs["research"][:1], schema=True)[0])
        grid_cells = {"full": [(c, s) for c in (1, 4, 16) for s in (True, False)],
                      "quick": [(1, True), (16, True)], "c16": [(16, True)]}[grid]
        for stream, stream_docs in docs.items():
            for concurrency, schema in grid_cells:
                requests = payloads(extractor, stream_docs, schema)
                wall, results = asyncio.run(send_all(live.base_url, requests, concurrency))
                ttfts = sorted(r["ttft"] for r in results)
                cells.append({
                    "variant": variant, "stream": stream, "concurrency": concurrency,
                    "schema": schema, "documents": len(stream_docs), "requests": len(requests),
                    "wall_s": round(wall, 2), "s_per_doc": round(wall / len(stream_docs), 2),
                    "prompt_tok_s": round(sum(r.get("prompt_tokens", 0) for r in results) / wall, 1),
                    "gen_tok_s": round(sum(r.get("completion_tokens", 0) for r in results) / wall, 1),
                    "prompt_tokens_per_request": round(statistics.mean(
                        r.get("prompt_tokens", 0) for r in results)),
                    "ttft_mean_s": round(statistics.mean(ttfts), 2),
                    "ttft_p90_s": round(ttfts[int(0.9 * (len(ttfts) - 1))], 2),
                    "grammar_compile_s": round(compile_s, 2), "startup_s": round(startup, 1)})
                print(json.dumps(cells[-1]), flush=True)
    return cells


def table(cells: list[dict]) -> str:
    head = ("| variant | stream | conc. | schema | s/doc | prompt tok/s | gen tok/s | "
            "TTFT mean / p90 s | grammar compile s |\n|---|---|---|---|---|---|---|---|---|")
    cells = [c for c in cells if "error" not in c]
    rows = [f"| {c['variant']} | {c['stream']} | {c['concurrency']} | "
            f"{'yes' if c['schema'] else 'no'} | {c['s_per_doc']} | {c['prompt_tok_s']} | "
            f"{c['gen_tok_s']} | {c['ttft_mean_s']} / {c['ttft_p90_s']} | "
            f"{c['grammar_compile_s']} |" for c in cells]
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=4)
    parser.add_argument("--contacts", type=int, default=4)
    parser.add_argument("--variants", default="default")
    parser.add_argument("--grid", choices=("full", "quick", "c16"), default="quick")
    parser.add_argument("--adapter", default="", help="extraction adapter folder (overlay, "
                        "merged variants)")
    parser.add_argument("--work", default=str(REPO / "var" / "profile"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    work = Path(args.work)
    base = ensure_embedded_model(REPO / "var" / "data" / "models")
    docs = documents(args.notes, args.contacts)
    cells = []
    for variant in args.variants.split(","):
        try:
            cells += profile(variant, docs, args.grid, base,
                             Path(args.adapter) if args.adapter else None, work)
        except (httpx.HTTPError, RuntimeError) as exc:  # a backend that kills its engine
            print(json.dumps({"variant": variant, "error": f"{type(exc).__name__}: {exc}"}))
            continue
        if args.out:
            with open(args.out, "a") as out:
                out.writelines(json.dumps(c) + "\n" for c in cells if c["variant"] == variant)
    print(table(cells))


if __name__ == "__main__":
    main()
