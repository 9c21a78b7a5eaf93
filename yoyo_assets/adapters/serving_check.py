"""Serving an adapter version the way the deployment's gateway does: as a vLLM LoRA overlay
(`--enable-lora --lora-modules <name>=<folder>`) on its base model.

`check_overlay` starts a managed server with the base and the version, asks held-out prompts of
both, and reports whether the server took the adapter and whether its answers differ from the
base's. For an extraction adapter, `compare_extractors` then scores the new version and the
extractor now serving on a labelled set through the same server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..datagraph.extraction import EntityExtractor
from ..datagraph.extraction_config import ExtractionConfig
from ..datagraph.quality import LabelledDocument, score_extractions
from ..shared.inference_server import Endpoint, InferenceServer, ServerError, vllm_lora_rank
from ..shared.openai_client import ChatClient, served_models
from .answer_scores import score_answers
from .extraction_gate import judge_extractors
from .gate import GateStatistic
from .manifest import (AnswerQuality, ExtractionComparison, ExtractorScore, F1Interval,
                       OverlayReport)

async def _answers(base_url: str, model: str, prompts: list[list[dict]],
                   max_tokens: int) -> list[str]:
    async with ChatClient(base_url, timeout_s=600, attempts=2) as client:
        async def one(messages: list[dict]) -> str:
            try:
                reply = await client.complete({"model": model, "messages": messages,
                                               "max_tokens": max_tokens, "temperature": 0.0})
            except httpx.HTTPStatusError as exc:
                raise ServerError(f"{model}: server answered {exc.response.status_code}: "
                                  f"{exc.response.text[:300]}") from None
            return reply["choices"][0]["message"]["content"] or ""

        return list(await asyncio.gather(*(one(m) for m in prompts)))


def ask_base_and_adapter(server: Endpoint, adapter: str, prompts: list[list[dict]],
                         references: list[str], max_tokens: int) -> OverlayReport:
    """Through a live `server` that serves `adapter` as an overlay: the held-out `prompts`
    (chat message lists) asked of the base and of the adapter, `max_tokens` answer tokens each
    (greedy). The first prompts' answers are scored against `references` (ROUGE-L, exact
    match), when given.

    Raises:
        ServerError: the adapter is not listed or a request is refused.
        httpx.HTTPError: the server cannot be reached.
    """
    if adapter not in {entry["id"] for entry in served_models(server.base_url)}:
        raise ServerError(f"the server does not list adapter {adapter!r} under /v1/models")
    base = asyncio.run(_answers(server.base_url, server.model, prompts, max_tokens))
    tuned = asyncio.run(_answers(server.base_url, adapter, prompts, max_tokens))
    samples = [{"prompt": m[-1]["content"][:300], "base": b, "adapter": t}
               for m, b, t in list(zip(prompts, base, tuned))[:3]]
    answers = None
    if references:
        n = len(references)
        scores = score_answers(list(references), base[:n], tuned[:n])
        answers = AnswerQuality(**{k: v for k, v in vars(scores).items() if k != "per_prompt"})
        for sample, reference, (b, t) in zip(samples, references, scores.per_prompt):
            sample.update(reference=reference, base_rouge_l=round(b, 3),
                          adapter_rouge_l=round(t, 3))
    return OverlayReport(served=True, prompts=len(prompts), answers=answers, samples=samples,
                         differing=sum(b != t for b, t in zip(base, tuned)))


def compare_extractors(server: Endpoint, candidate: str, serving: str,
                       labelled: list[LabelledDocument], config: ExtractionConfig,
                       tokenizer: Any, statistic: GateStatistic = "upper_bound",
                       confidence: float = 0.95) -> ExtractionComparison:
    """F1 ("any type") on `labelled` of the extractor `serving` (the base model's name, or the
    adapter Phase 1 serves now) and of `candidate`, through one live server, judged by
    `extraction_gate.judge_extractors` (pooled and per stream, with bootstrap intervals). Both
    extract with `config`'s settings, as Phase 1 would."""
    scores, results = {}, {}
    for side, model in (("serving", serving), ("candidate", candidate)):
        extractor = EntityExtractor(server.base_url, model, tokenizer, server.context_tokens(),
                                    **config.extractor_settings(adapter=model != server.model))
        run = asyncio.run(extractor.extract([d.document for d in labelled]))
        results[side] = run.results
        report = score_extractions(labelled, run.results, run.failures)
        metrics = report.metrics()
        scores[side] = ExtractorScore(
            f1=metrics["any_f1"], precision=metrics["any_precision"],
            recall=metrics["any_recall"], failed_documents=len(report.failures),
            seconds=round(run.seconds, 1))
    verdict = judge_extractors(labelled, results["serving"], results["candidate"], statistic,
                               confidence)
    return ExtractionComparison(
        serving_extractor=serving, labelled_documents=len(labelled), passed=verdict.passed,
        confidence=verdict.confidence, reason=verdict.reason, **scores,
        intervals={name: F1Interval(**vars(d)) for name, d in verdict.differences.items()})


@dataclass
class ExtractionGate:
    """What an extraction adapter is judged on: `labelled` documents, the extraction run config,
    the tokenizer, the adapter Phase 1 serves now (`serving_name` -> `serving_folder`; None:
    the base model), and the gate's `statistic` and `confidence` (extraction_gate.py)."""

    labelled: list[LabelledDocument]
    config: ExtractionConfig
    tokenizer: Any
    serving_name: str | None = None
    serving_folder: Path | None = None
    statistic: GateStatistic = "upper_bound"
    confidence: float = 0.95


def check_overlay(server: InferenceServer, base_dir: Path, adapter_folder: Path,
                  prompts: list[list[dict]], log: Any, lora_r: int,
                  extraction: ExtractionGate | None = None,
                  references: list[str] = (), *, max_tokens: int) -> OverlayReport:
    """Start a managed server (`server`'s settings) with `base_dir` and the adapter in
    `adapter_folder` as an overlay, ask `prompts` for `max_tokens` answer tokens each (run config
    `overlay_check_tokens`; the first answers scored against `references`, see
    `ask_base_and_adapter`), and with `extraction` compare F1; the server is stopped before
    returning. Never raises for a server or adapter problem: `served` is False and `error` says
    why."""
    started = time.monotonic()
    candidate = "candidate"
    modules = {candidate: str(adapter_folder)}
    if extraction is not None and extraction.serving_name:
        modules[extraction.serving_name] = str(extraction.serving_folder)
    overlay = server.model_copy(update={"mode": "managed", "model_dir": str(base_dir),
                                        "tokenizer_path": "", "lora_modules": modules,
                                        "max_lora_rank": vllm_lora_rank(lora_r)})
    try:
        with overlay.serving(log) as live:
            report = ask_base_and_adapter(live, candidate, prompts, references, max_tokens)
            if extraction is not None:
                report.extraction = compare_extractors(
                    live, candidate, extraction.serving_name or live.model, extraction.labelled,
                    extraction.config, extraction.tokenizer, extraction.statistic,
                    extraction.confidence)
    except (ServerError, httpx.HTTPError) as exc:
        report = OverlayReport(served=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    report.seconds = round(time.monotonic() - started, 1)
    return report
