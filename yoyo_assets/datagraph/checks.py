"""The `extraction_quality` asset check of `extracted_entities`: the serving extractor scored on a
labelled set, in the extraction step itself (the server is already up there).

The check is measured when the extractor or the labelled set changed since its last evaluation
(their fingerprint differs); otherwise its last figures are reported again, saying from which run,
so a night that extracts nothing never starts a server for it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from dagster import (AssetCheckKey, AssetCheckResult, AssetCheckSeverity, AssetKey,
                     DagsterInstance, MetadataValue)

from .extraction.extractor import EntityExtractor, build_messages, entity_schema
from .extraction.config import ExtractionConfig
from .extraction.quality import (LabelledDocument, LabelledSetError, QualityReport, SetNotScored,
                      extract_and_score)

QUALITY_CHECK = "extraction_quality"
QUALITY_CHECK_KEY = AssetCheckKey(AssetKey("extracted_entities"), QUALITY_CHECK)


def extractor_fingerprint(model: dict, settings: dict, labelled: list[LabelledDocument]) -> str:
    """SHA-256 (hex) over what decides the check's figures: the served model's identity
    (`InferenceServer.identity()`), the extraction settings (run config), the prompt and schema
    they produce, and the labelled set's documents (by hash) and gold."""
    prompt = build_messages("research", "", answer_format=settings.get("answer_format", "items"),
                            few_shot=bool(settings.get("few_shot")))
    parts = {
        "model": model,
        "settings": settings,
        "prompt": prompt,
        "schema": entity_schema(settings.get("max_entities", ExtractionConfig.default("max_entities")),
                                settings.get("answer_format", "items")),
        "labelled": sorted((d.document.sha256, [(g.name, g.type) for g in d.gold])
                           for d in labelled),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def previous_evaluation(instance: DagsterInstance, run_id: str) -> dict | None:
    """Metadata values (plain Python) and `run_id` / `passed` of the latest evaluation of the
    check by another run, or None."""
    for record in instance.event_log_storage.get_asset_check_execution_history(
            QUALITY_CHECK_KEY, limit=10):
        if record.run_id == run_id or record.event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        metadata = getattr(evaluation, "metadata", None)
        if not metadata or "any_f1" not in metadata:
            continue
        values = {k: v.value for k, v in metadata.items()}
        return {**values, "run_id": record.run_id, "passed": evaluation.passed}
    return None


@dataclass
class QualityPlan:
    """What the check needs this run: `to_measure`, the labelled documents to score (empty when
    nothing changed or the set is unusable), else the `known` result; `fingerprint` of the
    extractor and set; the `previous` evaluation; the set's folder and F1 tolerance."""

    to_measure: list[LabelledDocument]
    known: AssetCheckResult | None
    fingerprint: str
    previous: dict | None
    folder: str
    tolerance: float

    @classmethod
    def make(cls, instance: DagsterInstance, run_id: str, labelled_set: Any, model: dict,
             settings: dict) -> "QualityPlan":
        """Plan for `labelled_set` (the LabelledSet resource), the served `model`
        (`InferenceServer.identity()`) and the extraction `settings`."""
        previous = previous_evaluation(instance, run_id)
        folder, tolerance = str(labelled_set.folder()), labelled_set.f1_tolerance
        try:
            labelled = labelled_set.load()
        except LabelledSetError as exc:
            return cls([], unmeasured_result(f"labelled set unusable: {exc}"), "", previous,
                       folder, tolerance)
        fingerprint = extractor_fingerprint(model, settings, labelled)
        if previous is not None and previous.get("extractor_fingerprint") == fingerprint:
            return cls([], reused_result(previous), fingerprint, previous, folder, tolerance)
        return cls(labelled, None, fingerprint, previous, folder, tolerance)

    def measure(self, extractor: EntityExtractor, deadline: float | None) -> AssetCheckResult:
        """Extract and score the labelled documents; not measured when the budget or the
        server ended the run before every document was tried."""
        started = time.monotonic()
        try:
            _, report = extract_and_score(extractor, self.to_measure, deadline)
        except SetNotScored as exc:
            return unmeasured_result(str(exc))
        return measured_result(report, self.fingerprint, extractor.extractor_name or extractor.model,
                               self.folder, self.previous, self.tolerance,
                               time.monotonic() - started)


def measured_result(report: QualityReport, fingerprint: str, extractor: str, labelled_set: str,
                    previous: dict | None, tolerance: float, seconds: float) -> AssetCheckResult:
    """The check's result for a new measurement: fails (severity WARN) when "any type" F1 fell
    more than `tolerance` below the previous evaluation's."""
    metrics = report.metrics()
    metadata = {
        **metrics,
        "quality_table": MetadataValue.md(report.markdown()),
        "confusion": MetadataValue.json({f"{g} -> {p}": n for (g, p), n in
                                         sorted(report.confusion.items())}),
        "extractor": extractor,
        "labelled_set": labelled_set,
        "labelled_documents": report.documents,
        "failed_documents": MetadataValue.json(report.failures),
        "extractor_fingerprint": fingerprint,
        "seconds": round(seconds, 1),
    }
    passed = True
    if previous is not None:
        change = metrics["any_f1"] - float(previous["any_f1"])
        metadata["previous_any_f1"] = previous["any_f1"]
        metadata["any_f1_change"] = round(change, 4)
        passed = change >= -tolerance
    return AssetCheckResult(check_name=QUALITY_CHECK, passed=passed,
                            severity=AssetCheckSeverity.WARN, metadata=metadata,
                            description=None if passed else
                            f"F1 (any type) fell from {previous['any_f1']:.3f} to "
                            f"{metrics['any_f1']:.3f}")


def reused_result(previous: dict) -> AssetCheckResult:
    """The previous evaluation again, for an unchanged extractor and labelled set."""
    metadata = {k: v for k, v in previous.items() if k not in ("run_id", "passed")}
    metadata["quality_table"] = MetadataValue.md(previous.get("quality_table") or "")
    metadata["confusion"] = MetadataValue.json(previous.get("confusion") or {})
    metadata["failed_documents"] = MetadataValue.json(previous.get("failed_documents") or {})
    metadata["measured_in_run"] = previous["run_id"]
    return AssetCheckResult(check_name=QUALITY_CHECK, passed=previous["passed"],
                            severity=AssetCheckSeverity.WARN, metadata=metadata,
                            description="extractor and labelled set unchanged: figures of run "
                                        f"{previous['run_id']}")


def unmeasured_result(reason: str) -> AssetCheckResult:
    """A check that could not measure (bad labelled set, budget, server gone). `reason` (why)
    goes into its metadata as is, and into its description after "not measured: "."""
    return AssetCheckResult(check_name=QUALITY_CHECK, passed=False,
                            severity=AssetCheckSeverity.WARN, description=f"not measured: {reason}",
                            metadata={"reason": reason})
