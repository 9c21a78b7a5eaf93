"""The extraction role's training: SFT on the bucket's extraction tuples, then a DPO pass over
the pairs of operators' corrections, continuing the SFT stage's adapter.

The pairs' rejected answers are the extractor's own (the served base or extraction adapter), so
they belong to the model that gave them, not to another bucket's base. The pass starts from the
SFT stage's adapter and uses its frozen copy as the DPO reference (trl's DPOTrainer does so for
a PEFT model with a trained adapter), so it moves the extractor only where the operators'
verdicts say, with a negative log-likelihood term on the confirmed answers beside the DPO loss
(RPO, `preference_pass_rpo_alpha`), which keeps their likelihood from falling with the
rejected answers'. One adapter comes out and is judged like any extraction version: held-out
loss on the SFT tuples (re-scored with the finished adapter), the overlay check, F1 on the
labelled set. Measured: docs/benchmarks.md, "Correction pairs in the extraction adapter's DPO
pass".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .corpus import CorpusTuple, tuple_kind
from .held_out import SftScores, score_sft
from .training import TrainingConfig, TrainingResult, load_base_model, split_tuples, train_adapter


def split_pairs(tuples: list[CorpusTuple], config: TrainingConfig
                ) -> tuple[list[CorpusTuple], list[CorpusTuple], list[CorpusTuple]]:
    """(SFT tuples, DPO pairs to train, DPO pairs held out) of an `sft+dpo` bucket. Fewer than
    two pairs make no pass (both pair lists empty): a lone pair waits for a later version."""
    pairs = [t for t in tuples if tuple_kind(t.record) == "dpo"]
    sft = [t for t in tuples if tuple_kind(t.record) == "sft"]
    if len(pairs) < 2:
        return sft, [], []
    return (sft, *split_tuples(pairs, config.held_out_fraction, config.min_held_out_tuples))


def _score_finished(base_dir: Path, adapter_dir: Path, examples: list[dict],
                    config: TrainingConfig) -> SftScores:
    """The SFT held-out examples scored with the finished adapter and without it."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model = PeftModel.from_pretrained(load_base_model(base_dir, config), adapter_dir)
    model.eval()
    return score_sft(model, AutoTokenizer.from_pretrained(adapter_dir), examples)


def train_with_preference_pass(
        sft: tuple[list[CorpusTuple], list[CorpusTuple]],
        pairs: tuple[list[CorpusTuple], list[CorpusTuple]], config: TrainingConfig,
        base_dir: Path, work_dir: Path, output_dir: Path, deadline: float = math.inf,
        log: Callable[[str], None] = print,
        progress: Callable[[int, int], None] | None = None) -> TrainingResult:
    """SFT on `sft` (train, held-out), then DPO on `pairs` (train, held-out) starting from that
    adapter; the finished adapter is saved into `output_dir`. Each stage keeps its checkpoints
    under `work_dir` (`sft/`, `dpo/`) and resumes there after a crash (a finished SFT stage
    resumes at its last checkpoint and only reloads its best one).

    Returns the SFT stage's result, its held-out scores and eval loss those of the finished
    adapter, its costs summed over both stages, and `preference_pass` the DPO stage's own.

    Raises:
        BaseModelError, ValueError, BudgetSpent: as `train_adapter`, from either stage.
    """
    started = time.time()
    first = train_adapter("sft", *sft, config, base_dir, work_dir / "sft",
                          work_dir / "sft-adapter", deadline, log, progress)
    log(f"DPO pass over {len(pairs[0])} correction pairs, starting from the SFT adapter")
    rpo = config.model_copy(update={"rpo_alpha": config.preference_pass_rpo_alpha})
    second = train_adapter("dpo", *pairs, rpo, base_dir, work_dir / "dpo", output_dir,
                           deadline, log, progress, start_from=work_dir / "sft-adapter")
    scores = _score_finished(base_dir, output_dir, first.split.held_out, config)
    return replace(
        first, adapter_dir=output_dir, held_out=scores,
        eval_loss=sum(scores.adapter_losses) / len(scores.adapter_losses),
        steps=first.steps + second.steps, train_tokens=first.train_tokens + second.train_tokens,
        train_seconds=first.train_seconds + second.train_seconds,
        duration_s=time.time() - started,
        peak_memory_bytes=max(first.peak_memory_bytes, second.peak_memory_bytes),
        preference_pass=second)
