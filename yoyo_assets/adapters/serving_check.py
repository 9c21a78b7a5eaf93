"""Serving an adapter version the way the deployment's gateway does: as a vLLM LoRA overlay
(`--enable-lora --lora-modules <name>=<folder>`) on its base model.

`check_overlay` starts a managed server with the base and the version (or, when the inference
server is an external one that serves the same base and lets clients load adapters at runtime,
loads the version into it), asks held-out prompts of both, and reports whether the server took
the adapter and whether its answers differ from the base's. For an extraction adapter,
`compare_extractors` then scores the new version and the extractor now serving on a labelled
set through the same server.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
from safetensors import SafetensorError, safe_open

from ..datagraph.extraction.extractor import EntityExtractor
from ..datagraph.extraction.config import ExtractionConfig
from ..datagraph.extraction.quality import LabelledDocument, SetNotScored, extract_and_score
from ..shared.inference_server import Endpoint, InferenceServer, ServerError
from ..shared.openai_client import (ChatClient, RuntimeLoadingOff, load_lora_adapter,
                                    served_models, unload_lora_adapter)
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
                       confidence: float = 0.95, serving_label: str = "") -> ExtractionComparison:
    """F1 ("any type") on `labelled` of the extractor `serving` (the base model's name, or the
    adapter Phase 1 serves now) and of `candidate` (model names in requests), through one live
    server, judged by `extraction_gate.judge_extractors` (pooled and per stream, with bootstrap
    intervals). Both extract with `config`'s settings, as Phase 1 would. The report names the
    serving extractor `serving_label` (default: `serving`).

    Raises:
        SetNotScored: the server left documents of `labelled` unanswered (no verdict on part of
            the set).
    """
    scores, results = {}, {}
    for side, model in (("serving", serving), ("candidate", candidate)):
        extractor = EntityExtractor(server.base_url, model, tokenizer, server.context_tokens(),
                                    **config.extractor_settings(adapter=model != server.model))
        run, report = extract_and_score(extractor, labelled)
        results[side] = run.results
        metrics = report.metrics()
        scores[side] = ExtractorScore(
            f1=metrics["any_f1"], precision=metrics["any_precision"],
            recall=metrics["any_recall"], failed_documents=len(report.failures),
            seconds=round(run.seconds, 1))
    verdict = judge_extractors(labelled, results["serving"], results["candidate"], statistic,
                               confidence)
    return ExtractionComparison(
        serving_extractor=serving_label or serving, labelled_documents=len(labelled),
        passed=verdict.passed, confidence=verdict.confidence, reason=verdict.reason, **scores,
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
                  prompts: list[list[dict]], log: Any,
                  extraction: ExtractionGate | None = None,
                  references: list[str] = (), *, max_tokens: int) -> OverlayReport:
    """Serve the adapter in `adapter_folder` as an overlay on `base_dir` (see `overlay_server`),
    ask `prompts` for `max_tokens` answer tokens each (run config `overlay_check_tokens`; the
    first answers scored against `references`, see `ask_base_and_adapter`), and with
    `extraction` compare F1; a managed server is stopped, adapters loaded into an external one
    unloaded, before returning. Never raises for a server or adapter problem: `served` is False
    and `error` says why."""
    started = time.monotonic()
    modules = {"candidate": str(adapter_folder)}
    serving_name = extraction.serving_name if extraction is not None else None
    if serving_name:
        modules[serving_name] = str(extraction.serving_folder)
    try:
        with overlay_server(server, base_dir, modules, log) as (live, names, served_by):
            report = ask_base_and_adapter(live, names["candidate"], prompts, references,
                                          max_tokens)
            if extraction is not None:
                report.extraction = compare_extractors(
                    live, names["candidate"], names.get(serving_name, live.model),
                    extraction.labelled, extraction.config, extraction.tokenizer,
                    extraction.statistic, extraction.confidence, serving_name or live.model)
            report.served_by = served_by
    except (ServerError, httpx.HTTPError, SetNotScored) as exc:
        report = OverlayReport(served=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    report.seconds = round(time.monotonic() - started, 1)
    return report


@contextmanager
def overlay_server(server: InferenceServer, base_dir: Path, modules: dict[str, str],
                   log: Any) -> Iterator[tuple[Endpoint, dict[str, str], str]]:
    """A live server with `base_dir` and the adapters `modules` (name -> folder) as overlays,
    for the length of the block: `(endpoint, request name per module name, where)`.

    An external `server` that serves `base_dir` and loads adapters at runtime (vLLM with
    VLLM_ALLOW_RUNTIME_LORA_UPDATING, `VllmOptions.runtime_lora`) gets them loaded under names
    of their own (`<name>-<8 hex>`: a check killed before its unloading leaves no name that a
    later check would take for its own) and unloaded after; otherwise a managed server is
    started with them (`server`'s launch settings) and stopped after.

    Raises:
        ServerError, httpx.HTTPError: the server did not start, or refused an adapter; before
            a managed start, an adapter's weights file that cannot be read.
    """
    if server.mode == "external":
        with server.serving(log) as live:
            try:
                names = _load_at_runtime(live, base_dir, modules, log)
            except RuntimeLoadingOff as exc:
                log.info(f"{exc}; starting an overlay server")
            else:
                try:
                    yield live, names, f"loaded into {live.base_url} at runtime"
                finally:
                    _unload(live, names.values(), log)
                return
    for folder in modules.values():  # a server start costs minutes: refuse unreadable weights first
        check_adapter_weights(Path(folder))
    overlay = server.model_copy(update={"mode": "managed", "model_dir": str(base_dir),
                                        "tokenizer_path": "", "lora_modules": modules})
    with overlay.serving(log) as live:
        yield live, {name: name for name in modules}, "a managed overlay server"


def check_adapter_weights(folder: Path) -> None:
    """Read the header of `folder`'s `adapter_model.safetensors` (PEFT's file name): its tensor
    names and shapes, not the tensors. vLLM reads the rest when it loads the adapter.

    Raises:
        ServerError: the file is missing or is not a safetensors file, naming the file.
    """
    weights = folder / "adapter_model.safetensors"
    try:
        with safe_open(str(weights), framework="numpy") as tensors:
            names = list(tensors.keys())
    except (OSError, SafetensorError) as exc:
        names, reason = [], str(exc)
    else:
        reason = "it holds no tensors"
    if not names:
        raise ServerError(f"adapter weights {weights} cannot be read, no server started: "
                          f"{reason}")


def _load_at_runtime(live: Endpoint, base_dir: Path, modules: dict[str, str],
                     log: Any) -> dict[str, str]:
    try:
        listed = served_models(live.base_url)
    except (httpx.HTTPError, ValueError) as exc:  # e.g. the gateway is down during Phase 2
        raise RuntimeLoadingOff(f"{live.base_url} cannot be asked ({exc})") from None
    roots = [e.get("root", "") for e in listed if e.get("id") == live.model]
    if not roots or Path(roots[0]).resolve() != Path(base_dir).resolve():
        raise RuntimeLoadingOff(f"{live.base_url} serves {roots[0] if roots else 'no base'}, "
                                f"not the version's base {base_dir}")
    names: dict[str, str] = {}
    try:
        for name, folder in modules.items():
            request_name = f"{name}-{secrets.token_hex(4)}"
            load_lora_adapter(live.base_url, request_name, folder)
            names[name] = request_name
    except httpx.HTTPStatusError as exc:
        _unload(live, names.values(), log)
        raise ServerError(f"{live.base_url} refused adapter {folder}: "
                          f"{exc.response.status_code} {exc.response.text[:300]}") from None
    return names


def _unload(live: Endpoint, names, log: Any) -> None:
    for name in names:
        try:
            unload_lora_adapter(live.base_url, name)
        except httpx.HTTPError as exc:  # the check's result stands; the server keeps it loaded
            log.warning(f"could not unload adapter {name} from {live.base_url}: {exc}")
