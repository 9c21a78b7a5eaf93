"""`manifest.json` of an adapter version, as a typed model validated when it is read.

Every reader (registry, checks, publication, Phase 1's choice of extractor, the command line)
goes through `Manifest`; no one indexes the JSON by string keys.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: trl/peft names of hyper-parameters that manifests written before the rename used.
_RENAMED_HYPERPARAMETERS = {"lora_rank": "lora_r", "epochs": "num_train_epochs",
                            "batch_size": "per_device_train_batch_size", "dpo_beta": "beta",
                            "target_modules": "lora_target_modules"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class BaseModelRef(_Model):
    """The base model a version was trained on: its local folder and a SHA-256 over its files."""

    path: str
    sha256: str


class ExtractorScore(_Model):
    """One extractor on the gate's labelled set: "any type" precision, recall, F1 (0..1),
    documents whose extraction failed, seconds taken."""

    f1: float
    precision: float
    recall: float
    failed_documents: int = 0
    seconds: float = 0.0


class ExtractionComparison(_Model):
    """An extraction adapter against the extractor Phase 1 serves now, on one labelled set;
    `passed` when the candidate's F1 is higher."""

    serving_extractor: str
    serving: ExtractorScore
    candidate: ExtractorScore
    labelled_documents: int
    passed: bool


class OverlayReport(BaseModel):
    """A version served as a vLLM LoRA overlay. `served`: the server started with it, listed it
    under /v1/models and answered through it; `error` says why not. `differing`: held-out
    prompts whose adapter answer differs from the base's (greedy decoding); `samples`: prompt,
    base answer and adapter answer of the first three; `seconds`: the whole check."""

    model_config = ConfigDict(extra="ignore")

    served: bool
    error: str = ""
    prompts: int = 0
    differing: int = 0
    seconds: float = 0.0
    samples: list[dict[str, str]] = Field(default_factory=list)
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
    eval_tuples: list[str]
    hyperparameters: dict[str, Any]
    libraries: dict[str, str] = Field(default_factory=dict)
    loss_history: list[dict[str, float]] = Field(default_factory=list)
    base_eval_loss: float
    eval_loss: float
    quality_gate: QualityGate
    serving_check: OverlayReport = OverlayReport(served=False, error="not checked")
    training: TrainingFigures = TrainingFigures()
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
