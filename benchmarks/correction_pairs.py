"""Operators' correction pairs in the extraction adapter's DPO pass, measured on labelled notes.

Operators correct the extractor's answers on the first --corrected notes of
../shared/corpora/extraction/train: each correction confirms the note's gold entities, and the
extractor's answer it corrects is the base's (served by a managed vLLM, as a first night
serves it). `correction_material` cuts them into SFT tuples and DPO pairs as a night does. One
extraction training on them with the pipeline's defaults: SFT, then the DPO pass over the pairs
(adapters/preference_pass.py). The SFT stage's adapter and the finished one are each merged
into a copy of the base (as Phase 1 serves an adapter on a CPU) and scored, with the base, by
the project's scorer on the first --score notes of extraction/dev in the same run; the F1
differences get the gate's paired bootstrap interval (extraction_gate.f1_difference). On the
held-out pairs: the share whose confirmed answer each model finds the more likely.

    .venv/bin/python benchmarks/correction_pairs.py --workdir /tmp/pairs [--corrected 8]
        [--score 16] [--memory-share 0.25]

Prints Markdown rows for docs/benchmarks.md.
"""

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.adapters.corpus import CorpusTuple, canonical_hash  # noqa: E402
from yoyo_assets.adapters.extraction_gate import document_counts, f1_difference  # noqa: E402
from yoyo_assets.adapters.held_out import score_dpo  # noqa: E402
from yoyo_assets.adapters.merged_weights import merge_into  # noqa: E402
from yoyo_assets.adapters.preference_pass import train_with_preference_pass  # noqa: E402
from yoyo_assets.adapters.training import (TrainingConfig, load_base_model,  # noqa: E402
                                           split_tuples)
from yoyo_assets.datagraph.corrections.stream import (ConfirmedEntity, Correction,  # noqa: E402
                                               CorrectionOutcome)
from yoyo_assets.datagraph.extraction.extractor import (ENTITY_TYPES, EntityExtractor,  # noqa: E402
                                                        entity_key)
from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.datagraph.corrections.tuples import correction_material  # noqa: E402
from yoyo_assets.datagraph.extraction.quality import (load_labelled_set,  # noqa: E402
                                                      score_extractions)
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch,  # noqa: E402
                                                 VllmOptions)

CORPORA = REPO.parent / "shared" / "corpora"


def extract(model_dir: Path, adapter: bool, documents: list, work: Path, share: float) -> list:
    """Each document's extraction by the model in `model_dir` on a managed vLLM server."""
    server = InferenceServer(mode="managed", model_dir=str(model_dir), launch=ServerLaunch(
        log_dir=str(work / "logs"), vllm=VllmOptions(memory_share=share)))
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    with server.serving(logging.getLogger("server")) as running:
        extractor = EntityExtractor(running.base_url, running.request_model, tokenizer,
                                    running.context_tokens(),
                                    **ExtractionConfig().extractor_settings(adapter))
        report = asyncio.run(extractor.extract(documents))
    if report.failures or report.deferred:
        sys.exit(f"{model_dir}: not every document extracted: {report.failures or report.deferred}")
    by_path = {r.path: r for r in report.results}
    return [by_path[d.path] for d in documents]


def corrections_of(labelled: list, answers: list) -> list[tuple[CorrectionOutcome, Correction]]:
    """A correction of each note confirming its gold, over the extractor's `answers`."""
    applied = []
    for item, answer in zip(labelled, answers):
        # Gold of no scored type ("other") is left out, as extraction_tuples leaves it out.
        confirmed = {entity_key(g.name, g.type): ConfirmedEntity(
            key=entity_key(g.name, g.type), name=g.name, type=g.type)
            for g in item.gold if g.type in ENTITY_TYPES}
        correction = Correction(
            id=hashlib.sha256(item.document.path.encode()).hexdigest(),
            document=item.document.sha256, by="benchmark", at="2026-12-07T00:00:00+00:00",
            entities=list(confirmed.values()))
        applied.append((CorrectionOutcome(
            id=correction.id, document=item.document.sha256, status="applicable",
            path=item.document.path, stream=item.document.stream,
            extractor_answer=[(e.name, e.type) for e in answer.entities]), correction))
    return applied


def as_tuples(records: list[dict]) -> list[CorpusTuple]:
    return [CorpusTuple(canonical_hash(r), r, "benchmark", i) for i, r in enumerate(records, 1)]


def merged(adapter_dir: Path, base: Path, target: Path) -> Path:
    """`adapter_dir` merged into a copy of `base`, in `target/<base>` (as Phase 1 serves it)."""
    folder = target / base.name
    merge_into(adapter_dir, base, folder)
    return folder


def preferred(base: Path, adapter_dir: Path, examples: list[dict], beta: float) -> float:
    """Share of held-out pairs whose chosen answer the adapter finds the more likely."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model = PeftModel.from_pretrained(load_base_model(base, TrainingConfig()), adapter_dir)
    scores = score_dpo(model, AutoTokenizer.from_pretrained(adapter_dir), examples, beta)
    return sum(scores.adapter_prefers_chosen) / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corrected", type=int, default=8, help="train notes corrected")
    parser.add_argument("--score", type=int, default=16, help="dev notes scored")
    parser.add_argument("--memory-share", type=float, default=0.25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.workdir
    if work.exists():
        sys.exit(f"{work} exists: give a new folder")
    work.mkdir(parents=True)
    base = ensure_embedded_model(REPO / "var" / "data" / "models")
    corrected = load_labelled_set(CORPORA / "extraction" / "train")[:args.corrected]
    dev = load_labelled_set(CORPORA / "extraction" / "dev")[:args.score]
    share = args.memory_share

    answers = extract(base, False, [c.document for c in corrected], work, share)
    settings = ExtractionConfig()
    material = correction_material(corrections_of(corrected, answers),
                                   Tokenizer.from_file(str(base / "tokenizer.json")),
                                   settings.max_chunk_tokens or 512, settings.answer_format)
    sft, pairs = as_tuples(material.sft), as_tuples(material.dpo)
    config = TrainingConfig()
    started = time.monotonic()
    result = train_with_preference_pass(
        split_tuples(sft, config.held_out_fraction, config.min_held_out_tuples),
        split_tuples(pairs, config.held_out_fraction, config.min_held_out_tuples),
        config, base, work / "train", work / "adapter", log=print)
    trained_s = time.monotonic() - started
    second = result.preference_pass
    held_out_pairs = second.split.held_out
    sft_adapter = work / "train" / "sft-adapter"

    rows = {"base": extract(base, False, [d.document for d in dev], work, share)}
    for name, adapter in (("SFT", sft_adapter), ("SFT + DPO pass", work / "adapter")):
        rows[name] = extract(merged(adapter, base, work / "merged" / name.split()[-1]), True,
                             [d.document for d in dev], work, share)
    held = {"base": sum(second.held_out.base_prefers_chosen) / len(held_out_pairs),
            "SFT": preferred(base, sft_adapter, held_out_pairs, config.beta),
            "SFT + DPO pass": sum(second.held_out.adapter_prefers_chosen) / len(held_out_pairs)}

    print(f"\n{len(corrected)} corrected notes: {len(sft)} SFT tuples, {len(pairs)} DPO pairs "
          f"({len(held_out_pairs)} held out); SFT {result.steps - second.steps} steps, DPO pass "
          f"{second.steps} steps, {trained_s:.0f} s in all; dev notes scored: {len(dev)}\n")
    print("| extractor | dev notes P / R / **F1** | F1 − base [95 % interval] | "
          "F1 − SFT [95 % interval] | held-out pairs: confirmed answer preferred |")
    print("|---|---|---|---|---|")
    counts = {name: document_counts(dev, results) for name, results in rows.items()}
    for name, results in rows.items():
        m = score_extractions(dev, results, {}).metrics()
        cells = []
        for other in ("base", "SFT"):
            d = f1_difference(counts[other], counts[name])
            cells.append("—" if other == name else
                         f"{d.candidate_f1 - d.serving_f1:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
        print(f"| {name} | {m['any_precision']:.3f} / {m['any_recall']:.3f} / "
              f"**{m['any_f1']:.3f}** | {' | '.join(cells)} | {held[name]:.2f} |")


if __name__ == "__main__":
    main()
