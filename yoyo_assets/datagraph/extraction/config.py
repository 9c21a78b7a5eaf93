"""Run config of the extraction (`extracted_entities`), also the settings Phase 2 measures an
extraction adapter with."""

from dagster import Config
from pydantic import Field

#: Fields that change how the extraction runs, not what it answers.
OPERATIONAL_FIELDS = {"concurrency", "attempts", "request_timeout_s", "budget_reserve_s"}


class ExtractionConfig(Config):
    """Run config of `extracted_entities`."""

    concurrency: int = Field(default=16, description="Requests in flight at once.")
    max_answer_tokens: int = Field(default=512, description="max_tokens of one answer.")
    max_entities: int = Field(default=24, description="maxItems of the answer's entity array: "
                              "the grammar enforces it, which also ends a small model's habit of "
                              "repeating one entity until max_tokens.")
    frequency_penalty: float = Field(default=0.5, description="Sampling frequency penalty; "
                                     "ends small models' repetition of one entity.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0: "
                               "greedy decoding.")
    samples: int = Field(default=1, ge=1, description="Answers sampled per chunk (the request's "
                         "`n`); with more than one, a name is kept when most answers give it "
                         "(self-consistency voting). Needs temperature > 0 to differ.")
    attempts: int = Field(default=5, description="Tries per request on transient failures.")
    request_timeout_s: float = Field(default=900.0, description="Limit of one request, seconds.")
    budget_reserve_s: float = Field(
        default=300.0, description="Seconds of the phase budget kept for the graph writes and "
        "the server's shutdown: no document starts after budget - reserve.")
    enable_thinking: bool | None = Field(
        default=None, description="Reasoning models: passed to the chat template as "
        "enable_thinking (false turns thinking off); None sends nothing.")
    max_chunk_tokens: int | None = Field(
        default=32, description="Longest chunk of document text per request, tokens; None: "
        "what the context leaves. A small model does far better on short chunks "
        "(docs/benchmarks.md, chunk size); a large model may take far more.")
    answer_format: str = Field(default="items", description="Answer JSON: 'items' (a type per "
                               "entity) or 'by_type' (one list of names per type).")
    few_shot: bool = Field(default=True, description="Put a worked example before each chunk "
                           "(base model only: an extraction adapter is trained without it).")

    @classmethod
    def default(cls, name: str):
        """The default of field `name`: what `EntityExtractor` and the quality check's
        fingerprint fall back on, declared once here."""
        return cls.model_fields[name].default

    def extractor_settings(self, adapter: bool = False) -> dict:
        """The fields that decide the answers, as `EntityExtractor` keyword arguments. With
        `adapter` (an extraction adapter answers) `few_shot` is off: adapters learn from
        prompts without the worked example (datagraph/corrections/tuples.py)."""
        settings = self.model_dump(exclude=OPERATIONAL_FIELDS)
        if adapter:
            settings["few_shot"] = False
        return settings
