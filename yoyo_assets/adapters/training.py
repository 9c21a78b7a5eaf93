"""QLoRA adapter training through trl + peft + bitsandbytes: SFT for `engineering`, DPO for
`apprenticeship`, SFT then a DPO pass for `extraction` (preference_pass.py).

The base model is loaded in 4-bit NF4 (or unquantised) and a LoRA adapter is trained on it.
Examples are fitted into max_length first, shortening prompts and keeping answers (fitting.py).
The held-out split is evaluated each epoch (or every `eval_steps`), a checkpoint is saved with
each evaluation, training stops early when held-out loss stops improving, and the best
checkpoint is the one kept (transformers' `load_best_model_at_end`). Then each held-out tuple is
scored with the adapter and with it disabled (the base), for the gate (held_out.py, gate.py). A
re-run with the same training set resumes from the last complete checkpoint. Figures quoted
below were measured on this project's machines (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from dagster import Config
from pydantic import Field

from ..shared.faults import crash_point
from .corpus import CorpusTuple
from .fitting import FitReport, fit_examples
from .gate import GateStatistic
from .held_out import DpoScores, SftScores, score_dpo, score_sft
from .library_internals import check_training_internals

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainingConfig(Config):
    """Hyper-parameters of one adapter training (the adapter asset's run config), named as trl's
    `SFTConfig`/`DPOConfig`, trl's `ModelConfig` and peft's `LoraConfig` name them. Defaults are
    the pipeline's design (QLoRA: NF4 base, r 16, alpha 32, 2 epochs, max length 512); where
    trl's own default differs, the help says.

    Parameters that control the model: `base_model_dir`, `load_in_4bit`, `bnb_4bit_quant_type`,
    `bnb_4bit_use_double_quant`, `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`.
    Parameters that control the data: `max_length`, `packing`, `held_out_fraction`,
    `min_held_out_tuples`.
    Parameters that control the training: `num_train_epochs`, `per_device_train_batch_size`,
    `gradient_accumulation_steps`, `sft_learning_rate`, `dpo_learning_rate`, `beta`,
    `rpo_alpha`, `preference_pass_rpo_alpha`, `gradient_checkpointing`, `eval_steps`,
    `early_stopping_patience`, `seed`, `budget_reserve_s`.
    Parameters of the quality gate: `gate_statistic`, `gate_confidence`.
    Parameters of the serving check: `overlay_check_prompts`, `overlay_check_tokens`.
    """

    # Model
    base_model_dir: str = Field(
        default="", description="Local folder of the base model (Hugging Face format). Empty: "
        "YOYO_BASE_MODEL_DIR, else the embedded SmolLM2-135M-Instruct. Production: OLMo 3 7B Think.")
    load_in_4bit: bool | None = Field(
        default=None, description="QLoRA: base weights quantised to 4 bits by bitsandbytes; "
        "False: base in full precision (plain LoRA); None: 4-bit where training runs on a GPU, "
        "full precision on a CPU (`quantizes_base`).")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field(
        default="nf4", description="4-bit data type: NormalFloat (QLoRA's) or plain float.")
    bnb_4bit_use_double_quant: bool = Field(
        default=True, description="Quantise the quantisation constants too (QLoRA).")
    lora_r: int = Field(default=16, description="LoRA rank r.")
    lora_alpha: int = Field(default=32, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(default=0.05, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] = Field(
        default=TARGET_MODULES, description="Linear layers that get adapters (attention and MLP).")
    # Data
    max_length: int = Field(
        default=512, description="Longest training sequence in tokens (trl default 1024). A "
        "longer tuple is fitted by cutting the middle of its longest prompt message, marked in "
        "the text; its answer is cut only when it alone does not fit.")
    packing: bool = Field(default=False, description="SFT only: pack short examples into "
                          "max_length sequences.")
    held_out_fraction: float = Field(
        default=0.1, description="Share of tuples held out for evaluation, chosen by tuple hash "
        "so the split is the same on every run.")
    min_held_out_tuples: int = Field(
        default=8, description="Held-out tuples at least (fewer only when the bucket has under "
        "twice as many tuples: then half; the gate is then called weak).")
    # Training
    num_train_epochs: float = Field(default=2.0, description="Passes over the training split "
                                    "(trl default 3).")
    per_device_train_batch_size: int = Field(
        default=4, description="Sequences (SFT) or pairs (DPO) per step (trl default 8).")
    gradient_accumulation_steps: int = Field(
        default=1, description="Steps whose gradients are summed before one optimiser update.")
    sft_learning_rate: float = Field(
        default=2e-4, description="SFT learning_rate (trl default 2e-5; LoRA wants more).")
    dpo_learning_rate: float = Field(
        default=5e-5, description="DPO learning_rate (trl default 1e-6, too small for LoRA).")
    beta: float = Field(
        default=0.1, description="DPO only: how far the policy may move from the reference "
        "(the base with the adapter disabled).")
    rpo_alpha: float = Field(
        default=0.0, ge=0, description="DPO only: weight of a negative log-likelihood loss on "
        "the chosen answers added to the DPO loss (RPO, Pang et al. 2024; trl's loss_type "
        "[\"sigmoid\", \"sft\"]); 0: DPO alone. The extraction role's DPO pass uses "
        "`preference_pass_rpo_alpha` instead.")
    precompute_ref_log_probs: bool = Field(
        default=True, description="DPO only: compute the reference's log-probabilities of "
        "every pair once, before training (one forward pass, trl's `precompute_ref_log_probs`), "
        "instead of again at every step of every epoch; the reference is frozen, so the loss "
        "is the same (docs/benchmarks.md, \"Phase 2 on CPU\").")
    preference_pass_rpo_alpha: float = Field(
        default=1.0, ge=0, description="`rpo_alpha` of the extraction role's DPO pass over "
        "correction pairs (adapters/preference_pass.py; RPO's own value): without it the pass "
        "lowered the chosen answers' likelihood too, docs/benchmarks.md.")
    gradient_checkpointing: bool | None = Field(
        default=None, description="Recompute activations in the backward pass: less memory, "
        "more compute. None: on where a GPU trains (its memory bounds the batch), off on a CPU "
        "(`checkpoints_activations`).")
    eval_steps: int = Field(
        default=0, description="0: evaluate held-out loss and save a checkpoint after each "
        "epoch; N: every N optimizer steps.")
    early_stopping_patience: int = Field(
        default=2, description="Stop after this many evaluations without a better held-out "
        "loss (0: never); the best checkpoint is kept either way.")
    seed: int = Field(default=0, description="Seed of shuffling, LoRA initialisation and the "
                      "gate's bootstrap.")
    budget_reserve_s: float = Field(
        default=300.0, description="Seconds of the phase budget kept for the final evaluation "
        "and the version write: training checkpoints and stops at budget - reserve.")
    # Quality gate
    gate_statistic: GateStatistic = Field(
        default="upper_bound", description="The held-out loss difference (adapter - base, per "
        "tuple) must be below 0 at the upper bound of its bootstrap interval, or (\"mean\") on "
        "average only.")
    gate_confidence: float = Field(default=0.95, description="Confidence of that interval.")
    # Serving check (adapters/serving_check.py)
    overlay_check_prompts: int = Field(
        default=8, ge=1, description="Held-out prompts (topped up with training prompts) the "
        "overlay check asks of the base and of the adapter.")
    overlay_check_tokens: int = Field(
        default=48, ge=1, description="Answer tokens per overlay-check prompt (greedy): "
        "enough to tell two answers apart.")


class BaseModelError(ValueError):
    """The base model folder is missing, unreadable or incomplete."""


class BudgetSpent(RuntimeError):
    """Training stopped at the budget; a checkpoint was saved and the next run resumes from it."""


@dataclass
class TrainingResult:
    """What a training produced. Losses are per held-out tuple answer cross-entropy (SFT, nats
    per token) or DPO loss, averaged over tuples: `held_out` holds them tuple by tuple (in
    `split.held_out_tuples` order; `split` holds the fitted examples); `loss_history` rows are `{"step", "epoch", "train_loss" |
    "eval_loss"}`; `kept_step` is the checkpoint kept (best held-out loss)."""

    adapter_dir: Path
    base_eval_loss: float
    eval_loss: float
    train_examples: int
    held_out_examples: int
    steps: int
    fit: FitReport
    held_out: SftScores | DpoScores
    split: "FittedSplit"
    kept_step: int
    stopped_early: bool
    train_tokens: int
    train_seconds: float
    duration_s: float
    peak_memory_bytes: int
    peak_memory_kind: str
    resumed_from: str | None = None
    loss_history: list[dict[str, float]] = field(default_factory=list)
    #: An extraction version's DPO pass (preference_pass.py), whose own figures these are.
    preference_pass: "TrainingResult | None" = None

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0


def check_base_model(path: Path) -> None:
    """Raises BaseModelError unless `path` holds config.json, a tokenizer and weights."""
    if not path.is_dir():
        raise BaseModelError(f"base model folder {path} does not exist or is not a folder")
    names = {p.name for p in path.iterdir()}
    missing = [n for n in ("config.json", "tokenizer_config.json") if n not in names]
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        missing.append("weights (*.safetensors)")
    if missing:
        raise BaseModelError(f"base model folder {path} lacks {', '.join(missing)}")
    try:
        (path / "config.json").read_bytes()
    except OSError as exc:
        raise BaseModelError(f"base model folder {path} is unreadable: {exc}") from None


def split_tuples(tuples: list[CorpusTuple], held_out_fraction: float,
                 min_held_out_tuples: int = 8
                 ) -> tuple[list[CorpusTuple], list[CorpusTuple]]:
    """(train, held-out): the tuples with the lowest hashes are held out, max(min_held_out_tuples,
    ceil(held_out_fraction * n)) of them, but never more than half. Deterministic, and stable as
    the bucket grows (a held-out tuple leaves only when one with a lower hash arrives).

    Raises:
        ValueError: fewer than two tuples.
    """
    if len(tuples) < 2:
        raise ValueError(f"need at least 2 tuples to train and evaluate, got {len(tuples)}")
    count = min(max(min_held_out_tuples, math.ceil(held_out_fraction * len(tuples))),
                len(tuples) // 2)
    held = sorted(tuples, key=lambda t: t.sha256)[:max(count, 1)]
    held_hashes = {t.sha256 for t in held}
    return [t for t in tuples if t.sha256 not in held_hashes], held


def _as_messages(value: str | list[dict[str, str]], speaker: str) -> list[dict[str, str]]:
    """A string as one chat message from `speaker` (user, assistant); a message list as is.
    ("role" is the chat format's key; in this package a role is a corpus bucket's.)"""
    return [{"role": speaker, "content": value}] if isinstance(value, str) else list(value)


def sft_example(record: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """An SFT tuple as trl's conversational prompt-completion format, so that the loss covers the
    completion only: `messages` split before its last message; strings become user/assistant."""
    if "messages" in record:
        messages = record["messages"]
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    return {"prompt": _as_messages(record["prompt"], "user"),
            "completion": _as_messages(record["completion"], "assistant")}


def dpo_example(record: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """A DPO pair in trl's conversational preference format."""
    return {"prompt": _as_messages(record["prompt"], "user"),
            "chosen": _as_messages(record["chosen"], "assistant"),
            "rejected": _as_messages(record["rejected"], "assistant")}


def disable_bf16_repacking(model: Any) -> int:
    """Turn off bitsandbytes' AVX512-BF16 CPU inference path on every 4-bit layer; returns how
    many layers were changed.

    Why (STACK.md): on CPUs with AVX512-BF16, the first no-grad forward in eval mode repacks the
    4-bit weights into an inference layout, after which training gets zero gradients through the
    base layers. Call after `prepare_model_for_kbit_training`.
    """
    import bitsandbytes as bnb

    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def quantizes_base(config: TrainingConfig) -> bool:
    """Whether training loads the base in 4 bits: `config.load_in_4bit`, or when it is None,
    whether a GPU (torch.cuda) trains. On a CPU, bitsandbytes' 4-bit path saves little memory
    on the bases a CPU can train, trains at half the speed on a CPU without AVX-512 (30 vs 57
    tokens/s) and raises the base's own held-out loss (4.80 vs 4.30), while vLLM serves the
    adapter on the unquantised base (docs/benchmarks.md, "NF4 vs unquantised")."""
    if config.load_in_4bit is not None:
        return config.load_in_4bit
    import torch

    return torch.cuda.is_available()


def checkpoints_activations(config: TrainingConfig) -> bool:
    """Whether training recomputes activations in the backward pass (gradient checkpointing):
    `config.gradient_checkpointing`, or when it is None, whether a GPU trains. On a CPU the
    bases it can train leave RAM to spare and recomputing costs training time
    (docs/benchmarks.md, "Gradient checkpointing on a CPU")."""
    if config.gradient_checkpointing is not None:
        return config.gradient_checkpointing
    import torch

    return torch.cuda.is_available()


def load_base_model(path: Path, config: TrainingConfig) -> Any:
    """The base causal LM from `path`, ready for k-bit LoRA training: 4-bit when
    `quantizes_base(config)`, float32 compute on CPU and bfloat16 on a GPU; else unquantised."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    if not quantizes_base(config):
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=config.bnb_4bit_quant_type,
                               bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
                               bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=dtype,
                                                 device_map={"": 0} if cuda else None)
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=checkpoints_activations(config),
        gradient_checkpointing_kwargs={"use_reentrant": False})
    disable_bf16_repacking(model)
    return model


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-<step>` in `folder` that holds `trainer_state.json` (written last
    by the trainer); newer incomplete ones, left by a crash during a save, are removed."""
    found = sorted((p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit()),
                   key=lambda p: int(p.name[11:]), reverse=True)
    for checkpoint in found:
        if (checkpoint / "trainer_state.json").is_file():
            return checkpoint
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def _budget_callback(deadline: float, stopped: list[int],
                     progress: Callable[[int, int], None] | None) -> Any:
    from transformers import TrainerCallback

    class StopAtBudget(TrainerCallback):
        """Reports each step to `progress`; saves a checkpoint and stops when `deadline` (Unix
        seconds) has passed."""

        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress(state.global_step, state.max_steps)
            crash_point("training.after_step")
            if time.time() >= deadline:
                control.should_save = True
                control.should_training_stop = True
                stopped.append(state.global_step)
            return control

        def on_save(self, args, state, control, **kwargs):
            crash_point("training.after_checkpoint")
            return control

    return StopAtBudget()


class _CrashPointInCheckpoint:
    """Mixed into trl's trainers: crash point `training.during_checkpoint_save` fires after a
    checkpoint's weights are written (transformers saves them first, through the public
    `save_model`), before its optimizer state and `trainer_state.json`."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if _internal_call:  # a checkpoint save, not the caller's own
            crash_point("training.during_checkpoint_save")


def _peak_memory() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "gpu_allocated"
    # Linux reports ru_maxrss in KiB: the whole process's peak, model load included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_rss"


@dataclass
class FittedSplit:
    """The examples trl will see, fitted into max_length, and the held-out tuples' hashes in
    the order of `held_out` (tuples dropped by the fitting are left out of both)."""

    train: list[dict]
    held_out: list[dict]
    held_out_tuples: list[str]
    report: FitReport


def fit_split(kind: str, train: list[CorpusTuple], held_out: list[CorpusTuple], tokenizer: Any,
              max_length: int, log: Callable[[str], None]) -> FittedSplit:
    """Both sides as trl examples, fitted into `max_length` (fitting.py).

    Raises:
        ValueError: no training or no held-out tuple is left.
    """
    to_example = sft_example if kind == "sft" else dpo_example
    report = FitReport()
    sides = []
    for name, tuples in (("training", train), ("held-out", held_out)):
        fitted, side_report = fit_examples(tokenizer, [to_example(t.record) for t in tuples],
                                           max_length)
        report.add(side_report)
        kept = [(t, e) for t, e in zip(tuples, fitted) if e is not None]
        if not kept:
            raise ValueError(f"no {name} tuple fits max_length {max_length} tokens "
                             f"({dict(side_report.dropped)})")
        sides.append(kept)
    if report.prompts_shortened or report.answers_cut or report.dropped:
        log(f"max_length {max_length}: {report.prompts_shortened} prompts shortened, "
            f"{report.answers_cut} answers cut, dropped {dict(report.dropped) or 'none'}")
    return FittedSplit([e for _, e in sides[0]], [e for _, e in sides[1]],
                       [t.sha256 for t, _ in sides[1]], report)


def _schedule(config: TrainingConfig) -> dict[str, Any]:
    """Evaluation, checkpoints and best-checkpoint settings of the trainer's arguments."""
    every = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": config.eval_steps,
             "save_steps": config.eval_steps} if config.eval_steps else \
        {"eval_strategy": "epoch", "save_strategy": "epoch"}
    # save_total_limit keeps the best checkpoint besides the newest (transformers' rule).
    return {**every, "save_total_limit": 2, "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss", "greater_is_better": False,
            # One tuple per evaluation batch: eval_loss is then the mean of per-tuple losses,
            # the quantity the gate compares.
            "per_device_eval_batch_size": 1}


def _model_and_lora(config: TrainingConfig, base_dir: Path,
                    start_from: Path | None) -> tuple[Any, Any]:
    """(model, peft_config) for a trainer: the base with a fresh LoRA adapter to add, or, with
    `start_from`, the base with that trained adapter loaded for further training (trl's
    DPOTrainer then copies it as the frozen reference, `ref`)."""
    from peft import LoraConfig, PeftModel

    model = load_base_model(base_dir, config)
    if start_from is not None:
        return PeftModel.from_pretrained(model, start_from, is_trainable=True), None
    return model, LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules, bias="none", task_type="CAUSAL_LM")


def _trainer(kind: str, split: FittedSplit, config: TrainingConfig, base_dir: Path,
             work_dir: Path, tokenizer: Any, start_from: Path | None = None) -> Any:
    """trl's SFTTrainer or DPOTrainer over the base in `base_dir` with a fresh LoRA adapter, or
    continuing the adapter in `start_from`."""
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    check_training_internals()
    model, lora = _model_and_lora(config, base_dir, start_from)
    common = dict(
        output_dir=str(work_dir), num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length, gradient_checkpointing=checkpoints_activations(config),
        gradient_checkpointing_kwargs={"use_reentrant": False}, **_schedule(config),
        logging_steps=1, include_num_input_tokens_seen=True, report_to="none", disable_tqdm=True,
        seed=config.seed, use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available())
    given = dict(model=model, processing_class=tokenizer,
                 peft_config=lora, train_dataset=Dataset.from_list(split.train),
                 eval_dataset=Dataset.from_list(split.held_out),
                 callbacks=[EarlyStoppingCallback(config.early_stopping_patience)]
                 if config.early_stopping_patience else None)
    if kind == "sft":
        args = SFTConfig(learning_rate=config.sft_learning_rate, packing=config.packing, **common)
    else:
        rpo = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, config.rpo_alpha]) \
            if config.rpo_alpha else {}
        args = DPOConfig(learning_rate=config.dpo_learning_rate, beta=config.beta, **rpo,
                         precompute_ref_log_probs=config.precompute_ref_log_probs, **common)
    base = SFTTrainer if kind == "sft" else DPOTrainer
    return type(base.__name__, (_CrashPointInCheckpoint, base), {})(args=args, **given)


def _loss_history(log_history: list[dict]) -> list[dict[str, float]]:
    """trainer.state.log_history as `{"step", "epoch", "train_loss" | "eval_loss"}` rows."""
    history: list[dict[str, float]] = []
    for row in log_history:
        kept = {k: float(row[k]) for k in ("step", "epoch", "loss", "eval_loss") if k in row}
        if len(kept) > 2 and kept not in history:  # the final evaluation repeats the last one
            history.append(kept)
    return [{("train_loss" if k == "loss" else k): v for k, v in row.items()}
            for row in history]


def _score_held_out(kind: str, trainer: Any, tokenizer: Any, split: FittedSplit,
                   beta: float) -> SftScores | DpoScores:
    if kind == "sft":
        return score_sft(trainer.model, tokenizer, split.held_out)
    return score_dpo(trainer.model, tokenizer, split.held_out, beta)


def train_adapter(kind: str, train: list[CorpusTuple], held_out: list[CorpusTuple],
                  config: TrainingConfig, base_dir: Path, work_dir: Path, output_dir: Path,
                  deadline: float = math.inf, log: Callable[[str], None] = print,
                  progress: Callable[[int, int], None] | None = None,
                  start_from: Path | None = None) -> TrainingResult:
    """Train a LoRA adapter of `kind` ("sft" or "dpo") and save its best checkpoint (PEFT
    adapter files and the tokenizer) into `output_dir`, then score each held-out tuple with and
    without it. Checkpoints live in `work_dir`; the newest complete one is resumed from.
    `progress(step, max_steps)` is called after each optimizer step. `start_from`: a PEFT
    adapter folder to go on training instead of a fresh adapter (for DPO, also the reference).

    Raises:
        BaseModelError: `base_dir` is not a usable model folder (checked before loading).
        ValueError: no training or no held-out tuple fits max_length.
        BudgetSpent: `deadline` (Unix seconds) passed; a checkpoint was saved first.
    """
    check_base_model(base_dir)
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    started, tokenizer = time.time(), AutoTokenizer.from_pretrained(base_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    split = fit_split(kind, train, held_out, tokenizer, config.max_length, log)
    trainer = _trainer(kind, split, config, base_dir, work_dir, tokenizer, start_from)
    stopped: list[int] = []
    trainer.remove_callback(PrinterCallback)  # loss rows go to the manifest, not to stdout
    trainer.add_callback(_budget_callback(deadline, stopped, progress))

    resume = last_complete_checkpoint(work_dir) if work_dir.is_dir() else None
    log(f"{kind.upper()}: {len(split.train)} train / {len(split.held_out)} held-out tuples"
        + (f", resuming from {resume.name}" if resume else ""))
    train_started = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.time() - train_started
    if stopped:
        raise BudgetSpent(f"budget spent at step {stopped[0]} of {trainer.state.max_steps}; "
                          f"checkpoint saved in {work_dir}, the next run resumes from it")
    state = trainer.state
    kept_step = state.best_global_step or state.global_step
    scores = _score_held_out(kind, trainer, tokenizer, split, config.beta)
    base_loss, loss = (sum(v) / len(v) for v in (scores.base_losses, scores.adapter_losses))
    output_dir.mkdir(parents=True, exist_ok=True)
    # Only the trained adapter: a DPO pass holds trl's frozen copy `ref` beside it.
    trainer.model.save_pretrained(output_dir, selected_adapters=["default"])
    tokenizer.save_pretrained(output_dir)
    peak, peak_kind = _peak_memory()
    tokens = int(state.num_input_tokens_seen or 0)
    log(f"{kind.upper()}: held-out loss {base_loss:.4f} -> {loss:.4f}, kept step {kept_step} "
        f"of {state.global_step}, {tokens / max(train_seconds, 1e-9):.0f} tokens/s")
    return TrainingResult(
        adapter_dir=output_dir, base_eval_loss=base_loss, eval_loss=loss,
        train_examples=len(split.train), held_out_examples=len(split.held_out),
        steps=state.global_step, fit=split.report, held_out=scores,
        split=split, kept_step=kept_step,
        stopped_early=state.global_step < state.max_steps,
        train_tokens=tokens, train_seconds=train_seconds, duration_s=time.time() - started,
        peak_memory_bytes=peak, peak_memory_kind=peak_kind,
        resumed_from=resume.name if resume else None,
        loss_history=_loss_history(state.log_history))
