"""The gate's two asset checks of each adapter, read from the night's version's manifest:
`beats_base_model` (per-tuple held-out loss below the base's, by the gate's interval) and
`serves_as_overlay` (vLLM serves it as a LoRA overlay and its answers change; an extraction
adapter must also raise F1). Not blocking: a version that fails them is the gate's verdict, not
an error. The run succeeds, the check shows the verdict (severity ERROR) with what was compared,
`published_adapter` records why it uploads nothing, and the threshold sensor does not train the
same tuples again."""

import warnings

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition,
                     AssetKey, MetadataValue, PartitionsDefinition, PreviewWarning, asset_check)

from .manifest import HeldOutEvaluation, Manifest, OverlayReport
from .registry import AdapterVersion, version_for_night
from .resources import AdapterVersions
from .version_training import OVERLAY_CHECK, QUALITY_CHECK


#: Run tag a check sets on the run whose version it kept local: the gate's verdict on
#: that pending set, which the threshold sensor does not request again (sensors.py).
VERDICT_TAG = "yoyo/gate_verdict"
KEPT_LOCAL = "kept_local"


def _verdict(context: AssetCheckExecutionContext, result: AssetCheckResult) -> AssetCheckResult:
    """`result`, with a failed one recorded on the run as the gate's verdict (VERDICT_TAG)."""
    if not result.passed:
        context.instance.add_run_tags(context.run.run_id, {VERDICT_TAG: KEPT_LOCAL})
    return result


def _night_version(context: AssetCheckExecutionContext,
                   adapter_versions: AdapterVersions) -> AdapterVersion | None:
    tenant, role = context.check_specs[0].asset_key.path[:2]
    return version_for_night(adapter_versions.version_folder(tenant, role), context.partition_key)


def _cell(value: str | float) -> str:
    return " ".join(str(value).split())[-160:].replace("|", "\\|")


def _samples_table(check: OverlayReport) -> str:
    """Markdown: each sample prompt's end, the reference where there is one, both answers and
    (scored SFT prompts) their ROUGE-L."""
    columns = ["prompt", "reference", "base", "base_rouge_l", "adapter", "adapter_rouge_l"]
    columns = [c for c in columns if any(c in s for s in check.samples)]
    rows = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(_cell(s.get(c, "")) for c in columns) + " |"
             for s in check.samples]
    return "\n".join(rows)


def overlay_metadata(number: int, check: OverlayReport) -> dict:
    """Metadata of a version's serving check, with a table of prompts and answers."""
    metadata = {"version": number, "served": check.served, "answers_differing": check.differing,
                "prompts": check.prompts, "seconds": round(check.seconds, 1),
                "samples": MetadataValue.md(_samples_table(check))}
    if check.answers is not None:
        a = check.answers
        metadata.update({"scored_prompts": a.prompts,
                         "base_rouge_l": round(a.base_rouge_l, 3),
                         "adapter_rouge_l": round(a.adapter_rouge_l, 3),
                         "base_exact_match": round(a.base_exact_match, 3),
                         "adapter_exact_match": round(a.adapter_exact_match, 3)})
    if check.error:
        metadata["error"] = check.error
    if check.extraction is not None:
        e = check.extraction
        metadata.update({"serving_extractor": e.serving_extractor,
                         "serving_f1": round(e.serving.f1, 3),
                         "candidate_f1": round(e.candidate.f1, 3),
                         "candidate_precision": round(e.candidate.precision, 3),
                         "candidate_recall": round(e.candidate.recall, 3),
                         "labelled_documents": e.labelled_documents,
                         "extraction_gate": e.reason})
        for name, d in e.intervals.items():
            metadata.update({f"{name}_serving_f1": d.serving_f1,
                             f"{name}_candidate_f1": d.candidate_f1,
                             f"{name}_f1_difference_interval": f"[{d.low:+.3f}, {d.high:+.3f}] "
                             f"({e.confidence:.0%}, {d.documents} documents)"})
    return metadata


def held_out_metadata(h: HeldOutEvaluation) -> dict:
    """The gate's evidence as metadata: the paired difference, its interval, how it was kept."""
    metadata = {
        "scored_held_out_tuples": len(h.tuples),
        "loss_difference_mean": round(h.mean_difference, 4),
        "loss_difference_interval": f"[{h.interval_low:.4f}, {h.interval_high:.4f}] "
                                    f"({h.confidence:.0%}, bootstrap)",
        "gate_statistic": h.statistic, "gate_weak": h.weak,
        "kept_step": h.kept_step, "stopped_early": h.stopped_early}
    if h.reward_accuracy is not None:
        metadata.update({"reward_accuracy": round(h.reward_accuracy, 3),
                         "reward_margin": round(h.reward_margin, 4),
                         "base_preference_accuracy": round(h.base_preference_accuracy, 3),
                         "adapter_preference_accuracy": round(h.adapter_preference_accuracy, 3)})
    return metadata


def _gate_description(m: Manifest) -> str:
    h = m.held_out
    if h is None:
        return (f"held-out loss {m.base_eval_loss:.4f} (base) -> {m.eval_loss:.4f} (adapter): "
                + ("lower" if m.beats_base else "not lower, kept local"))
    words = "lower" if h.passed else "not lower, kept local"
    weak = " Weak gate: fewer than 8 held-out or 16 tuples in all." if h.weak else ""
    return (f"held-out loss adapter - base {h.mean_difference:+.4f}, "
            f"{h.confidence:.0%} interval [{h.interval_low:+.4f}, {h.interval_high:+.4f}] over "
            f"{len(h.tuples)} tuples ({h.statistic} must be < 0): {words}.{weak}")


def overlay_outcome(check: OverlayReport) -> str:
    """One line on a version's serving check: whether vLLM served it, how many answers differ
    from the base's, what the extraction gate compared (F1 and its interval), the verdict."""
    if check.error:
        return f"serving check failed: {check.error}"
    text = (f"served as a LoRA overlay, {check.differing}/{check.prompts} answers differ from "
            "the base's")
    if check.extraction is not None:
        e = check.extraction
        text += (f"; extraction against {e.serving_extractor} on {e.labelled_documents} "
                 f"labelled documents: {e.reason}")
    return text + ("" if check.passed else ": kept local")


def gate_outcome(m: Manifest) -> str:
    """Why the gate kept a version local, or `passed`: its failed parts, in words."""
    failed = ([] if m.beats_base else [_gate_description(m)]) + (
        [] if m.serving_check.passed else [overlay_outcome(m.serving_check)])
    return "; ".join(failed) or "passed"


def beats_base_model(context: AssetCheckExecutionContext,
                     adapter_versions: AdapterVersions) -> AssetCheckResult:
    """Passes when the night's version's per-tuple held-out loss is below the base's by the
    gate's rule (the bootstrap interval's upper bound below 0, or the mean; see gate.py)."""
    version = _night_version(context, adapter_versions)
    if version is None:
        return AssetCheckResult(passed=False, description="no version for the night")
    m = version.manifest
    return _verdict(context, AssetCheckResult(
        passed=m.beats_base, description=_gate_description(m),
        metadata={"version": version.number, "eval_loss": round(m.eval_loss, 4),
                  "base_eval_loss": round(m.base_eval_loss, 4),
                  "eval_loss_delta": round(m.eval_loss_delta, 4),
                  **(held_out_metadata(m.held_out) if m.held_out else {})}))


def serves_as_overlay(context: AssetCheckExecutionContext,
                      adapter_versions: AdapterVersions) -> AssetCheckResult:
    """Passes when the night's version passed its serving check (see serving_check.py)."""
    version = _night_version(context, adapter_versions)
    if version is None:
        return AssetCheckResult(passed=False, description="no version for the night")
    check = version.manifest.serving_check
    return _verdict(context, AssetCheckResult(passed=check.passed,
                                              description=overlay_outcome(check),
                                              metadata=overlay_metadata(version.number, check)))


_VERDICT = ("A failure is the gate's verdict, not an error: the run succeeds, the version stays "
            "local (published_adapter says why and uploads nothing), and its tuples are not "
            "trained again until new ones arrive.")


def build_adapter_checks(tenant: str, role: str,
                         nights: PartitionsDefinition) -> list[AssetChecksDefinition]:
    """Both gate checks on `<tenant>/<role>/adapter`, one result per night."""
    adapter_key = AssetKey([tenant, role, "adapter"])
    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13, used on purpose: each
        # night's version gets its own check result.
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            asset_check(
                asset=adapter_key, name=QUALITY_CHECK, partitions_def=nights,
                description="The night's adapter version has a lower held-out loss than the "
                "base model's, tuple by tuple: the upper bound of the paired difference's "
                "bootstrap interval lies below 0 (or its mean, if configured). " + _VERDICT,
            )(beats_base_model),
            asset_check(
                asset=adapter_key, name=OVERLAY_CHECK, partitions_def=nights,
                description="vLLM serves the night's version as a LoRA overlay on its base (as "
                "the gateway loads it) and its answers to held-out prompts differ from the "
                "base's; an extraction adapter must also beat the serving extractor's name-level "
                "F1 on the labelled set (YOYO_QUALITY_SET, every stream in it): the 95% paired "
                "bootstrap interval over documents of the pooled difference above 0, and no "
                "stream's interval below 0. " + _VERDICT,
            )(serves_as_overlay),
        ]
