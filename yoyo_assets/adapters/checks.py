"""The blocking asset checks of each adapter, read from the night's version's manifest:
`beats_base_model` (held-out eval loss below the base's) and `serves_as_overlay` (vLLM serves it
as a LoRA overlay and its answers change; an extraction adapter must also raise F1)."""

import warnings

from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition,
                     AssetKey, MetadataValue, PartitionsDefinition, PreviewWarning, asset_check)

from .manifest import OverlayReport
from .registry import AdapterVersion, version_for_night
from .store import AdapterStore
from .version_training import OVERLAY_CHECK, QUALITY_CHECK


def _night_version(context: AssetCheckExecutionContext,
                   adapter_store: AdapterStore) -> AdapterVersion | None:
    tenant, role = context.check_specs[0].asset_key.path[:2]
    return version_for_night(adapter_store.version_folder(tenant, role), context.partition_key)


def overlay_metadata(number: int, check: OverlayReport) -> dict:
    """Metadata of a version's serving check, with a table of prompts and both answers."""
    rows = ["| prompt (end) | base | adapter |", "|---|---|---|"]
    for sample in check.samples:
        cells = [" ".join(sample[k].split())[-160:].replace("|", "\\|")
                 for k in ("prompt", "base", "adapter")]
        rows.append("| " + " | ".join(cells) + " |")
    metadata = {"version": number, "served": check.served, "answers_differing": check.differing,
                "prompts": check.prompts, "seconds": round(check.seconds, 1),
                "samples": MetadataValue.md("\n".join(rows))}
    if check.error:
        metadata["error"] = check.error
    if check.extraction is not None:
        e = check.extraction
        metadata.update({"serving_extractor": e.serving_extractor,
                         "serving_f1": round(e.serving.f1, 3),
                         "candidate_f1": round(e.candidate.f1, 3),
                         "candidate_precision": round(e.candidate.precision, 3),
                         "candidate_recall": round(e.candidate.recall, 3),
                         "labelled_documents": e.labelled_documents})
    return metadata


def beats_base_model(context: AssetCheckExecutionContext,
                     adapter_store: AdapterStore) -> AssetCheckResult:
    """Passes when the night's version has a held-out eval loss below the base model's."""
    version = _night_version(context, adapter_store)
    if version is None:
        return AssetCheckResult(passed=False, description="no version for the night")
    m = version.manifest
    return AssetCheckResult(
        passed=m.eval_loss < m.base_eval_loss,
        metadata={"version": version.number, "eval_loss": round(m.eval_loss, 4),
                  "base_eval_loss": round(m.base_eval_loss, 4),
                  "eval_loss_delta": round(m.eval_loss_delta, 4)})


def serves_as_overlay(context: AssetCheckExecutionContext,
                      adapter_store: AdapterStore) -> AssetCheckResult:
    """Passes when the night's version passed its serving check (see serving_check.py)."""
    version = _night_version(context, adapter_store)
    if version is None:
        return AssetCheckResult(passed=False, description="no version for the night")
    check = version.manifest.serving_check
    return AssetCheckResult(passed=check.passed, description=check.error or None,
                            metadata=overlay_metadata(version.number, check))


def build_adapter_checks(tenant: str, role: str,
                         nights: PartitionsDefinition) -> list[AssetChecksDefinition]:
    """Both blocking checks on `<tenant>/<role>/adapter`, one result per night."""
    adapter_key = AssetKey([tenant, role, "adapter"])
    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13, used on purpose: each
        # night's version gets its own check result.
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            asset_check(
                asset=adapter_key, name=QUALITY_CHECK, blocking=True, partitions_def=nights,
                description="The night's adapter version has a held-out eval loss below the "
                "base model's. Blocking: a version that fails is not published.",
            )(beats_base_model),
            asset_check(
                asset=adapter_key, name=OVERLAY_CHECK, blocking=True, partitions_def=nights,
                description="vLLM serves the night's version as a LoRA overlay on its base (as "
                "the gateway loads it) and its answers to held-out prompts differ from the "
                "base's; an extraction adapter must also beat the serving extractor's F1 on the "
                "labelled set. Blocking: a version that fails is not published.",
            )(serves_as_overlay),
        ]
