"""One new adapter version of a bucket, end to end: split, train (resuming a crashed run's
checkpoint), serve it as an overlay, judge it, and commit it atomically as the next `v<N>`.

`train_version` is plain Python: the `adapter` asset wires Dagster's context, resources and
budget into it and reports what it returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

from .corpus import CorpusTuple, tuple_kind
from .gate import WEAK_GATE_TUPLES, paired_difference
from .held_out import DpoScores
from .manifest import (BaseModelRef, FitCounts, HeldOutEvaluation, Manifest, OverlayReport,
                       PreferencePass, QualityGate, TrainingFigures)
from .registry import (AdapterVersion, commit_version, folder_sha256, remove_stale_staging,
                       staging_folder)
from .preference_pass import split_pairs, train_with_preference_pass
from .training import (BudgetSpent, FittedSplit, TrainingConfig, TrainingResult, quantizes_base,
                       split_tuples, train_adapter)

#: The adapter's gate checks (adapters/checks.py), which the manifest's quality gate sums up.
QUALITY_CHECK = "beats_base_model"
OVERLAY_CHECK = "serves_as_overlay"
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "dagster")

#: (staged adapter folder, the fitted examples) -> the overlay check's report.
OverlayCheck = Callable[[Path, FittedSplit], OverlayReport]


class TrainingFailed(RuntimeError):
    """No version was made: the budget was spent (a checkpoint was kept for the next run) or the
    tuples cannot train (none fits max_length, fewer than two)."""


@dataclass(frozen=True)
class Bucket:
    """Whose adapter: tenant, role (engineering, apprenticeship, extraction), kind (sft, dpo)."""

    tenant: str
    role: str
    kind: str

    @property
    def name(self) -> str:
        """The corpus bucket's name, `<role>-<tenant>`."""
        return f"{self.role}-{self.tenant}"


def pending_set_sha256(hashes: list[str]) -> str:
    """Identity of a set of tuples: SHA-256 of their sorted hashes, one per line. The sensor's
    run key is derived from the pending set, the training's work folder from the whole set."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def gate_rule(role: str, config: TrainingConfig) -> str:
    """The quality gate of `role`'s versions, in words."""
    where = (f"the upper bound of its {config.gate_confidence:.0%} bootstrap interval"
             if config.gate_statistic == "upper_bound" else "its mean")
    rule = (f"held-out loss, adapter - base per tuple: {where} below 0; served as a vLLM LoRA "
            "overlay, answers differing from the base's")
    if role == "extraction":
        rule += "; F1 on the labelled set above the serving extractor's"
    return rule


def loss_curve_png(result: TrainingResult) -> bytes:
    """Train and held-out loss by step, with the base's held-out loss as a line (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.2), dpi=100)
    for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
        rows = [r for r in result.loss_history if key in r]
        axes.plot([r["step"] for r in rows], [r[key] for r in rows], style, label=key)
    axes.axhline(result.base_eval_loss, color="grey", linestyle="--", label="base eval_loss")
    axes.axvline(result.kept_step, color="green", linestyle=":", label="kept checkpoint")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def held_out_evaluation(result: TrainingResult, config: TrainingConfig,
                       total_tuples: int) -> HeldOutEvaluation:
    """The gate's evidence from a training's per-tuple held-out scores (see gate.py)."""
    scores = result.held_out
    diff = paired_difference(scores.base_losses, scores.adapter_losses, config.gate_confidence,
                             seed=config.seed)
    dpo = {}
    if isinstance(scores, DpoScores):
        n = len(scores.margins)
        dpo = dict(reward_accuracy=scores.reward_accuracy, reward_margin=scores.reward_margin,
                   base_preference_accuracy=sum(scores.base_prefers_chosen) / n,
                   adapter_preference_accuracy=sum(scores.adapter_prefers_chosen) / n)
    return HeldOutEvaluation(
        tuples=result.split.held_out_tuples, base_losses=scores.base_losses,
        adapter_losses=scores.adapter_losses, mean_difference=diff.mean,
        interval_low=diff.low, interval_high=diff.high, confidence=diff.confidence,
        statistic=config.gate_statistic, passed=diff.passes(config.gate_statistic),
        weak=diff.n < config.min_held_out_tuples or total_tuples < WEAK_GATE_TUPLES,
        kept_step=result.kept_step, stopped_early=result.stopped_early, **dpo)


def preference_pass(result: TrainingResult, train: list[CorpusTuple],
                    held_out: list[CorpusTuple]) -> PreferencePass | None:
    """The manifest's record of `result`'s DPO pass, if it made one (the pairs among `train`
    and `held_out`)."""
    second = result.preference_pass
    if second is None or not isinstance(second.held_out, DpoScores):
        return None
    scores, n = second.held_out, len(second.held_out.margins)
    return PreferencePass(
        pairs=sorted(t.sha256 for t in train if tuple_kind(t.record) == "dpo"),
        held_out_pairs=sorted(t.sha256 for t in held_out if tuple_kind(t.record) == "dpo"),
        steps=second.steps, train_tokens=second.train_tokens, duration_s=second.duration_s,
        loss_history=second.loss_history,
        base_preference_accuracy=sum(scores.base_prefers_chosen) / n,
        adapter_preference_accuracy=sum(scores.adapter_prefers_chosen) / n,
        reward_accuracy=scores.reward_accuracy, reward_margin=scores.reward_margin)


def name_the_base(adapter_dir: Path, name: str) -> None:
    """Write `name` into the adapter's adapter_config.json as `base_model_name_or_path` (peft
    writes the local folder the base was loaded from)."""
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _manifest(bucket: Bucket, night: str, base_dir: Path, base_name: str,
              train: list[CorpusTuple],
              held_out: list[CorpusTuple], config: TrainingConfig, result: TrainingResult,
              overlay: OverlayReport, run_id: str) -> Manifest:
    evaluation = held_out_evaluation(result, config,
                                     result.train_examples + result.held_out_examples)
    return Manifest(
        tenant=bucket.tenant, role=bucket.role, kind=bucket.kind, bucket=bucket.name,
        night=night, base_model=BaseModelRef(path=str(base_dir), name=base_name,
                                             sha256=folder_sha256(base_dir)),
        trained_tuples=sorted(t.sha256 for t in train),
        held_out_tuples=sorted(t.sha256 for t in held_out),
        hyperparameters={**config.model_dump(), "load_in_4bit": quantizes_base(config)},
        libraries={name: package_metadata.version(name) for name in LIBRARIES},
        loss_history=result.loss_history, base_eval_loss=result.base_eval_loss,
        eval_loss=result.eval_loss,
        quality_gate=QualityGate(
            passed=evaluation.passed and overlay.passed,
            checks=[QUALITY_CHECK, OVERLAY_CHECK], rule=gate_rule(bucket.role, config)),
        serving_check=overlay,
        training=TrainingFigures(
            steps=result.steps, train_tokens=result.train_tokens,
            tokens_per_s=result.tokens_per_s, peak_memory_bytes=result.peak_memory_bytes,
            peak_memory_kind=result.peak_memory_kind, duration_s=result.duration_s,
            resumed_from_checkpoint=result.resumed_from),
        fitting=FitCounts(**result.fit.as_dict()), held_out=evaluation,
        preference_pass=preference_pass(result, train, held_out),
        dagster_run_id=run_id, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def discard_checkpoints(folder: Path, night: str) -> None:
    """Remove the night's training work folders in `folder` (a dead run's checkpoints, once its
    version was found saved)."""
    for leftover in (folder / ".work").glob(f"{night}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def train_version(bucket: Bucket, tuples: list[CorpusTuple], config: TrainingConfig,
                  base_dir: Path, base_name: str, folder: Path, night: str, run_id: str,
                  deadline: float, check_overlay: OverlayCheck, log: Callable[[str], None],
                  progress: Callable[[int, int], None] | None = None) -> AdapterVersion:
    """Train a version of `bucket` on all `tuples` (split by hash into train and held-out) over
    the base model in `base_dir` (published as `base_name`), check it with `check_overlay`, and
    commit it into `folder` (`<adapters root>/<tenant>/<role>`) as the next `v<N>`, with its
    manifest and loss curve.

    Checkpoints live in `folder/.work/<night>-<training id>`, the id a hash of the tuple set,
    the config and the base: a re-run after a crash resumes there. `deadline` is Unix seconds;
    `progress(step, max_steps)` is called after each optimizer step.

    Raises:
        TrainingFailed: the budget was spent (checkpoint kept) or the tuples cannot train.
    """
    sft, pairs, held_out_pairs = split_pairs(tuples, config) if bucket.kind == "sft+dpo" \
        else (tuples, [], [])
    train, held_out = split_tuples(sft, config.held_out_fraction, config.min_held_out_tuples)
    training_id = hashlib.sha256(json.dumps(
        [pending_set_sha256([t.sha256 for t in tuples]), config.model_dump(), str(base_dir)],
        sort_keys=True).encode()).hexdigest()[:16]
    work_dir = folder / ".work" / f"{night}-{training_id}"
    remove_stale_staging(folder)
    staged = staging_folder(folder)
    try:
        if pairs:
            result = train_with_preference_pass((train, held_out), (pairs, held_out_pairs),
                                                config, base_dir, work_dir, staged, deadline,
                                                log, progress)
        else:
            kind = "sft" if bucket.kind == "sft+dpo" else bucket.kind  # no pairs to pass over
            result = train_adapter(kind, train, held_out, config, base_dir, work_dir, staged,
                                   deadline=deadline, log=log, progress=progress)
        name_the_base(staged, base_name)
        (staged / "loss_curve.png").write_bytes(loss_curve_png(result))
        overlay = check_overlay(staged, result.split)
    except (BudgetSpent, ValueError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise TrainingFailed(str(exc)) from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    version = commit_version(folder, staged, _manifest(
        bucket, night, base_dir, base_name, train + pairs, held_out + held_out_pairs, config,
        result, overlay, run_id))
    shutil.rmtree(work_dir, ignore_errors=True)
    log(f"{bucket.name}: v{version.number} at {version.path}, eval loss "
        f"{result.base_eval_loss:.4f} -> {result.eval_loss:.4f} "
        f"({result.eval_loss - result.base_eval_loss:+.4f})")
    return version
