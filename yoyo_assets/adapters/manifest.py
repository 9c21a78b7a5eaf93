"""`manifest.json` of an adapter version, as a typed model validated when it is read.

Every reader (registry, checks, publication, Phase 1's choice of extractor, the command line)
goes through `Manifest`; no one indexes the JSON by string keys.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

#: trl/peft names of hyper-parameters that manifests written before the rename used.
_RENAMED_HYPERPARAMETERS = {"lora_rank": "lora_r", "epochs": "num_train_epochs",
                            "batch_size": "per_device_train_batch_size", "dpo_beta": "beta",
                            "target_modules": "lora_target_modules"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class BaseModelRef(_Model):
    """The base model a version was trained on: its public `name` (as adapter_config.json's
    base_model_name_or_path says it), its local folder and a SHA-256 over its files."""

    path: str
    sha256: str
    name: str = ""


class ExtractorScore(_Model):
    """One extractor on the gate's labelled set: "any type" precision, recall, F1 (0..1),
    documents whose extraction failed, seconds taken."""

    f1: float
    precision: float
    recall: float
    failed_documents: int = 0
    seconds: float = 0.0


class F1Interval(_Model):
    """Both extractors' "any type" F1 on `documents` documents (one stream, or all pooled) and
    the candidate − serving difference's bootstrap interval [low, high]."""

    documents: int
    serving_f1: float
    candidate_f1: float
    low: float
    high: float


class ExtractionComparison(_Model):
    """An extraction adapter against the extractor Phase 1 serves now, on one labelled set of
    one or more streams (extraction_gate.py): F1 pooled and per stream with their paired
    bootstrap intervals (`confidence`); `passed` when the pooled interval lies above 0 and no
    stream's below 0, `reason` saying which."""

    serving_extractor: str
    serving: ExtractorScore
    candidate: ExtractorScore
    labelled_documents: int
    passed: bool
    confidence: float = 0.95
    intervals: dict[str, F1Interval] = {}
    reason: str = ""


class AnswerQuality(_Model):
    """Served answers of base and adapter to held-out SFT prompts against the tuples' reference
    answers (answer_scores.py): mean ROUGE-L F-measure and exact-match rate, 0..1."""

    prompts: int
    base_rouge_l: float
    adapter_rouge_l: float
    base_exact_match: float
    adapter_exact_match: float


class OverlayReport(BaseModel):
    """A version served as a vLLM LoRA overlay. `served`: the server started with it, listed it
    under /v1/models and answered through it; `error` says why not. `differing`: held-out
    prompts whose adapter answer differs from the base's (greedy decoding); `samples`: prompt,
    base answer and adapter answer of the first three (with the reference answer and each
    side's ROUGE-L where scored); `answers`: ROUGE-L and exact match of the held-out SFT
    prompts; `served_by`: a managed overlay server, or the external server it was loaded
    into; `seconds`: the whole check."""

    model_config = ConfigDict(extra="ignore")

    served: bool
    error: str = ""
    served_by: str = ""
    prompts: int = 0
    differing: int = 0
    seconds: float = 0.0
    samples: list[dict[str, str | float]] = Field(default_factory=list)
    answers: AnswerQuality | None = None
    extraction: ExtractionComparison | None = None

    @property
    def passed(self) -> bool:
        """Served, some answer changed, and (extraction adapters) F1 rose."""
        return self.served and self.differing > 0 and \
            (self.extraction is None or self.extraction.passed)


class QualityGate(_Model):
    """The gate a version passed or failed: the blocking checks and the rule, in words."""

    passed: bool
    checks: list[str]
    rule: str


class FitCounts(_Model):
    """How the tuples were fitted into max_length (fitting.py): kept as they were, prompt
    shortened, answer cut, and dropped by reason."""

    unchanged: int = 0
    prompts_shortened: int = 0
    answers_cut: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)


class HeldOutEvaluation(_Model):
    """The gate's evidence. Per held-out tuple (`tuples`, hashes), the base's and the adapter's
    loss; their paired difference (adapter - base) as a mean and a bootstrap interval at
    `confidence`; whether it passed under `statistic` ("upper_bound" or "mean"); `weak` when
    fewer than 8 tuples were held out or fewer than 16 exist in all. `kept_step`: the
    checkpoint kept (best held-out loss), `stopped_early` when patience ran out. DPO only:
    reward accuracy and mean margin of the adapter (trl's definitions) and, for both sides,
    the share of pairs whose chosen answer is the more likely one."""

    tuples: list[str]
    base_losses: list[float]
    adapter_losses: list[float]
    mean_difference: float
    interval_low: float
    interval_high: float
    confidence: float
    statistic: str
    passed: bool
    weak: bool
    kept_step: int
    stopped_early: bool = False
    reward_accuracy: float | None = None
    reward_margin: float | None = None
    base_preference_accuracy: float | None = None
    adapter_preference_accuracy: float | None = None


class TrainingFigures(_Model):
    """What the training cost: optimizer steps, tokens seen, tokens per second of training,
    peak memory in bytes (`peak_memory_kind`: gpu_allocated or process_rss), seconds in all,
    and the checkpoint it resumed from, if any."""

    steps: int = 0
    train_tokens: int = 0
    tokens_per_s: float = 0.0
    peak_memory_bytes: int = 0
    peak_memory_kind: str = ""
    duration_s: float = 0.0
    resumed_from_checkpoint: str | None = None


class PreferencePass(_Model):
    """An extraction version's DPO pass over operators' correction pairs, after its SFT stage
    and starting from that adapter (its frozen copy the DPO reference): pairs trained and held
    out (hashes), optimizer steps, tokens, seconds, loss rows as in `Manifest.loss_history`,
    and on the held-out pairs, the share whose confirmed (chosen) answer the base and the
    finished adapter each find the more likely, and the adapter's DPO reward accuracy and mean
    margin against the base (trl's definitions)."""

    pairs: list[str]
    held_out_pairs: list[str]
    steps: int
    train_tokens: int
    duration_s: float
    loss_history: list[dict[str, float]] = Field(default_factory=list)
    base_preference_accuracy: float
    adapter_preference_accuracy: float
    reward_accuracy: float
    reward_margin: float


class Manifest(_Model):
    """One adapter version: whose, from what, trained how, how good, made by which run.

    Losses are held-out mean token cross-entropy (SFT, nats) or DPO loss; `loss_history` rows are
    `{"step", "epoch", "train_loss" | "eval_loss"}`; `hyperparameters` are the TrainingConfig
    fields (trl/peft names) the version was trained with.
    """

    version: int = 0
    tenant: str
    role: str
    kind: str
    bucket: str
    night: str
    base_model: BaseModelRef
    trained_tuples: list[str]
    held_out_tuples: list[str] = Field(validation_alias=AliasChoices("held_out_tuples",
                                                                     "eval_tuples"))
    hyperparameters: dict[str, Any]
    libraries: dict[str, str] = Field(default_factory=dict)
    loss_history: list[dict[str, float]] = Field(default_factory=list)
    base_eval_loss: float
    eval_loss: float
    quality_gate: QualityGate
    serving_check: OverlayReport = OverlayReport(served=False, error="not checked")
    training: TrainingFigures = TrainingFigures()
    fitting: FitCounts = FitCounts()
    # Manifests written before the rename say `heldout`.
    held_out: HeldOutEvaluation | None = Field(
        default=None, validation_alias=AliasChoices("held_out", "heldout"))
    preference_pass: PreferencePass | None = None
    dagster_run_id: str = ""
    created_at: str = ""

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Manifests written before the trl names and the `training` group read as today's."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["hyperparameters"] = {_RENAMED_HYPERPARAMETERS.get(k, k): v
                                   for k, v in data.get("hyperparameters", {}).items()}
        if "training" not in data:
            data["training"] = {k: data[k] for k in TrainingFigures.model_fields if k in data}
        check = dict(data.get("serving_check") or {})
        flat = check.get("extraction")
        if isinstance(flat, dict) and "candidate_f1" in flat:  # one level, before ExtractorScore
            check["extraction"] = {
                "serving_extractor": flat["serving_extractor"], "passed": flat["passed"],
                "labelled_documents": flat["labelled_documents"],
                **{side: {k: flat[f"{side}_{k}"] for k in ExtractorScore.model_fields
                          if f"{side}_{k}" in flat} for side in ("serving", "candidate")}}
            data["serving_check"] = check
        return data

    @property
    def beats_base(self) -> bool:
        """The held-out gate: the paired difference's test where recorded (versions trained
        before it: mean eval loss below the base's)."""
        if self.held_out is not None:
            return self.held_out.passed
        return self.eval_loss < self.base_eval_loss

    @property
    def eval_loss_delta(self) -> float:
        """Adapter minus base held-out loss: negative is better."""
        return self.eval_loss - self.base_eval_loss

    @property
    def lora_r(self) -> int:
        """The LoRA rank the version was trained with."""
        return int(self.hyperparameters.get("lora_r", 16))

    @property
    def served_name(self) -> str:
        """The model name the version is served under: `<tenant>-<role>-v<N>`."""
        return f"{self.tenant}-{self.role}-v{self.version}"
