"""The closing summary of `python -m yoyo_assets night`: documents, entities by type, the
quality check, failures with reasons, adapter versions with their eval deltas, where the graph
and the logs are, and the command that opens the UI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from ..adapters.registry import AdapterVersion
    from .night import NightRuns


def _phase1_lines(runs: NightRuns) -> list[str]:
    result = runs.phase1
    extraction = result.asset_materializations_for_node("extracted_entities") if result else []
    if not extraction:
        return ["documents  Phase 1 extracted nothing (see the failures below)"]
    meta = {k: v.value for k, v in extraction[0].metadata.items()}
    tried = meta["documents_ok"] + meta["documents_failed"] + meta["documents_deferred"]
    lines = [f"documents  {meta['documents_ok']} extracted, {meta['documents_failed']} failed, "
             f"{meta['documents_deferred']} deferred to the next run, by {meta['extractor']}"
             if tried else "documents  nothing new: what arrived by the night's end is in the "
             "graph already"]
    for failure in (meta.get("failures") or [])[:3]:
        lines.append(f"           failed: {failure['file']}: {failure['reason'][:90]}")
    written = result.asset_materializations_for_node("datagraph")
    deferred = written[0].metadata["run_documents_deferred"].value if written else 0
    if deferred:
        reason = written[0].metadata["deferred_batches"].value[0]["reason"]
        lines.append(f"           {deferred} not written, deferred to the next run: {reason[:90]}")
    for evaluation in result.get_asset_check_evaluations():
        figures = {k: v.value for k, v in evaluation.metadata.items()}
        if "any_f1" in figures:
            lines.append(f"quality    F1 {figures['any_f1']:.3f} (P {figures['any_precision']:.3f}"
                         f", R {figures['any_recall']:.3f}) on {figures['labelled_documents']} "
                         "labelled documents" + (" (unchanged, measured before)"
                                                 if "measured_in_run" in figures else ""))
        else:
            lines.append(f"quality    not measured: {figures.get('reason')}")
    return lines


def _adapter_lines(runs: NightRuns) -> list[str]:
    lines = []
    for bucket, version, success in runs.adapters:
        if version is None:
            lines.append(f"adapter    {bucket}: {'nothing to train' if success else 'FAILED'}")
            continue
        m = version.manifest
        h = m.held_out
        spread = (f", {h.confidence:.0%} CI [{h.interval_low:+.3f}, {h.interval_high:+.3f}] on "
                  f"{len(h.tuples)} tuples" + (", weak" if h.weak else "")) if h else ""
        extra = ""
        if m.serving_check.answers is not None:
            a = m.serving_check.answers
            extra += f", ROUGE-L {a.base_rouge_l:.2f} -> {a.adapter_rouge_l:.2f}"
        if h is not None and h.reward_accuracy is not None:
            extra += f", reward accuracy {h.reward_accuracy:.2f}"
        lines.append(f"adapter    {bucket} v{version.number}: held-out loss "
                     f"{m.base_eval_loss:.3f} -> {m.eval_loss:.3f} ({m.eval_loss_delta:+.3f}"
                     f"{spread}){extra}")
        e = m.serving_check.extraction
        if e is not None:
            lines.append(f"           extraction F1 on {e.labelled_documents} labelled documents, "
                         f"{e.serving_extractor} -> this version: {e.reason}")
        lines.append(f"           gate {_gate_verdict(version)}")
    return lines


def _gate_verdict(version: AdapterVersion) -> str:
    """The gate's outcome for the summary: passed (and served next, for the extraction role),
    its serving check's error, or kept local."""
    if version.passed_quality_gate:
        return "passed: served from the next night" if version.manifest.role == "extraction" \
            else "passed"
    if _serving_error(version):
        return f"serving check failed: {version.manifest.serving_check.error}"
    return "kept local (not served, not published)"


def _serving_error(version: AdapterVersion | None) -> bool:
    return version is not None and bool(version.manifest.serving_check.error)


def kept_local(version: AdapterVersion | None) -> bool:
    """Whether the gate kept `version` local by its verdict (no better than what serves, or
    answers no different), not for an error (a server that refused it, a check that never
    ran). Such a night did its work and its run succeeded; the version is simply not served
    or published."""
    return (version is not None and not version.passed_quality_gate
            and not _serving_error(version))


def failed_runs(runs: NightRuns) -> int:
    """Runs of the night that failed, and adapter versions whose serving check failed for an
    error (their run succeeds: the gate's checks do not block)."""
    return len(runs.failed_runs) + sum(not ok or _serving_error(version)
                                       for _, version, ok in runs.adapters)


def recorded_graph(runs: NightRuns) -> dict:
    """The metadata Phase 1's `datagraph` materialization recorded (what the run wrote, the
    night's totals, the graph's counts); empty when it recorded none."""
    written = runs.phase1.asset_materializations_for_node("datagraph") if runs.phase1 else []
    return {k: v.value for k, v in written[-1].metadata.items()} if written else {}


def _correction_lines(runs: NightRuns, recorded: dict) -> list[str]:
    """What the night did with operators' corrections; nothing when there were none."""
    counts = {status: recorded.get(f"corrections_{status}", 0)
              for status in ("applied", "already_applied", "superseded", "waiting")}
    if not any(counts.values()):
        return []
    tuples = runs.phase1.asset_materializations_for_node("correction_tuples")
    made = {k: v.value for k, v in tuples[-1].metadata.items()} if tuples else {}
    corrected = [Path(d["path"]).name for d in recorded.get("corrected_documents") or []
                 if d["status"] == "applied"]
    return [f"corrections {counts['applied']} applied"
            + (f" ({', '.join(corrected[:3])}{', …' if len(corrected) > 3 else ''})"
               if corrected else "")
            + f", {counts['already_applied']} applied before, {counts['waiting']} waiting for "
            f"their document; {made.get('sft_tuples', 0)} SFT tuples and "
            f"{made.get('dpo_pairs', 0)} DPO pairs for "
            f"{made.get('tenant', 'the serving tenant')}'s next extraction adapter"]


def _identity_lines(runs: NightRuns) -> list[str]:
    """How the night's person mentions were resolved (docs/identity.md); nothing when
    `resolved_mentions` recorded nothing."""
    found = runs.phase1.asset_materializations_for_node("resolved_mentions") \
        if runs.phase1 else []
    if not found:
        return []
    made = {k: v.value for k, v in found[-1].metadata.items()}
    return [f"identity   {made['mentions_resolved']} person mentions resolved: "
            f"{made['mentions_anchored']} merged into an existing entity (a contact record's "
            f"id), {made['mentions_kept_apart']} kept apart as ambiguous, "
            f"{made['identities_created']} new entities"]


def _graph_lines(recorded: dict, location: str) -> list[str]:
    if "night_entities" not in recorded:
        return ["entities   not recorded: Phase 1 wrote no night totals (see above)",
                f"graph      {location}"]
    by_type = ", ".join(f"{t} {n}" for t, n in recorded["night_entities_by_type"].items() if n)
    return [f"entities   {recorded['night_entities']} in {recorded['night_documents']} documents "
            "of the night" + (f" ({by_type})" if by_type else ""),
            f"graph      {location} ({recorded['graph_documents']} documents, "
            f"{recorded['graph_entities']} entities, {recorded['graph_mentions']} MENTIONS)"]


def print_summary(console: Console, night: str, runs: NightRuns, warnings: list[str],
                  next_extractor: str, graph_location: str, home: Path, server_logs: Path,
                  seconds: float) -> None:
    """Print the summary (about 12 lines, more with failures and adapters) from what the
    night's runs recorded."""
    recorded = recorded_graph(runs)
    entities, graph = _graph_lines(recorded, graph_location)
    failed = failed_runs(runs)
    gated = sum(kept_local(version) for _, version, _ in runs.adapters)
    deferred = recorded.get("run_documents_deferred", 0)
    verdicts = [f"[red]{failed} run(s) failed[/]"] if failed else []
    if gated:
        verdicts.append(f"{gated} version(s) kept local by their gate (its verdict, below)")
    if deferred:
        verdicts.append(f"[red]{deferred} document(s) not written: deferred to the next run[/]")
    lines = [
        "",
        f"[bold]night {night}[/] in {seconds / 60:.1f} min, "
        + ", ".join(verdicts if failed or gated else ["every run succeeded", *verdicts]),
        *_phase1_lines(runs),
        entities,
        *_identity_lines(runs),
        *_correction_lines(runs, recorded),
        *_adapter_lines(runs),
        f"warnings   {len(warnings)}" + (f"; first: {warnings[0][:100]}" if warnings else ""),
        f"next       the next night extracts with {next_extractor}",
        graph,
        f"logs       runs: {home / 'storage'}; inference servers: {server_logs}",
        "UI         YOYO_AUTOMATION=false bash scripts/dagster-dev.sh start   (then "
        "http://127.0.0.1:3000; schedules and sensors off: it launches nothing)",
    ]
    for line in lines:
        console.print(line, highlight=False)
