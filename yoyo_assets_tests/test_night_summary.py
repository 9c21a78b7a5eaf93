"""The `night` command's verdict on adapter runs: a version its gate kept local is the gate doing
its work (the night exits 0 and says so), while a run that failed for an error, or trained
nothing, is a failure. Versions are real folders committed by the registry."""

import io
from pathlib import Path

from rich.console import Console

from yoyo_assets.adapters.manifest import OverlayReport, QualityGate
from yoyo_assets.adapters.registry import adapter_folder, commit_version, staging_folder
from yoyo_assets.cli.night import NightRuns
from yoyo_assets.cli.summary import failed_runs, kept_local, print_summary

from .test_registry import manifest


def version(tmp_path, role: str, gate_passed: bool, serving_error: str = ""):
    folder = adapter_folder(tmp_path, "pointsav", role)
    staged = staging_folder(folder)
    (staged / "adapter_model.safetensors").write_bytes(b"weights")
    made = manifest("2026-11-21", ["a"]).model_copy(update={
        "quality_gate": QualityGate(passed=gate_passed, checks=["serves_as_overlay"], rule="r"),
        "serving_check": OverlayReport(served=not serving_error, error=serving_error)})
    return commit_version(folder, staged, made)


def summary(runs: NightRuns) -> str:
    out = io.StringIO()
    print_summary(Console(file=out, width=200), "2026-11-21", runs, [], "base", "graph",
                  Path("home"), Path("logs"), 60.0)
    return out.getvalue()


def test_a_version_kept_local_by_its_gate_is_not_a_failed_night(tmp_path):
    gated = version(tmp_path, "extraction", gate_passed=False)
    runs = NightRuns(phase1=None, adapters=[("extraction-pointsav", gated, True)])
    assert kept_local(gated) and failed_runs(runs) == 0
    text = summary(runs)
    assert "1 version(s) kept local by their gate" in text
    assert "fail" not in text.split("\n")[1] and "FAILED" not in text
    assert "extraction-pointsav v1" in text and "gate kept local (not served" in text


def test_errors_and_runs_without_a_version_are_failures(tmp_path):
    refused = version(tmp_path, "engineering", gate_passed=False,
                      serving_error="vLLM refused the adapter")
    passed_then_failed = version(tmp_path, "apprenticeship", gate_passed=True)
    runs = NightRuns(phase1=None, adapters=[("engineering-pointsav", refused, True),
                                            ("apprenticeship-pointsav", passed_then_failed, False),
                                            ("extraction-pointsav", None, False)])
    assert not any(kept_local(v) for _, v, _ in runs.adapters)
    assert failed_runs(runs) == 3
    text = summary(runs)
    assert "3 run(s) failed" in text and "kept local by their gate" not in text
    assert "extraction-pointsav: FAILED" in text
    assert "gate serving check failed: vLLM refused the adapter" in text
