"""`python -m yoyo_assets night`: one night in this process, as the daemon would run it.

Phase 1 (`datagraph_nightly`), then the corpus buckets (`corpus_nightly`), then one tick of each
corpus sensor against the instance and the runs it requests, then a summary. `--demo` first
copies the shipped demo documents and corpus buckets into the data root, dated to that night.
Scheduled and backfilled runs go through the daemon (scripts/dagster-dev.sh) instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

from dagster import (DagsterInstance, Definitions, ExecuteInProcessResult, RunRequest,
                     build_sensor_context)
from rich.console import Console

from ..adapters.registry import AdapterVersion, version_for_night
from ..shared.partitions import nights_partitions
from ..shared.run_health import fail_dead_runs, process_tags
from ..shared.settings import REPO_ROOT, Settings, dagster_home
from .console import StepDisplay, run_loggers
from .summary import failed_runs, print_summary, recorded_graph

#: Files of demo_data/ that are not documents: notes, and the demo's own labelled set (gold.json,
#: read in place by the extraction quality check).
NOT_DATA = {"README.md", "gold.json"}


@dataclass
class NightRuns:
    """What one night ran: Phase 1's result, each adapter run's bucket and version, failures."""

    phase1: ExecuteInProcessResult | None = None
    adapters: list[tuple[str, AdapterVersion | None, bool]] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)


def prepare_dagster_home() -> Path:
    """$DAGSTER_HOME (default ./var/dagster_home), created and seeded with dagster.yaml."""
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)  # DagsterInstance.get() reads it
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (REPO_ROOT / "dagster.yaml").is_file():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def install_demo_data(data_root: Path, arrived_at: float) -> int:
    """Copy the shipped demo documents (`<stream>/`), corpus buckets (`corpus/<bucket>/`) and
    operators' corrections (`corrections/`, dated `arrived_at`),
    not the files in NOT_DATA, into `data_root` (files already there are left alone) with
    modification time `arrived_at` (Unix seconds). Returns how many files were copied."""
    copied = 0
    source = resources.files("yoyo_assets") / "demo_data"
    for item in Path(str(source)).rglob("*"):
        target = data_root / item.relative_to(Path(str(source)))
        if item.is_file() and item.name not in NOT_DATA and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
            if item.parent.name == "corrections":
                _date_corrections(target, arrived_at)
            os.utime(target, (arrived_at, arrived_at))
            copied += 1
    return copied


def _date_corrections(path: Path, made_at: float) -> None:
    """The demo's corrections, made at `made_at` (Unix seconds): that night's."""
    at = datetime.fromtimestamp(made_at, timezone.utc).isoformat()
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({**line, "at": at}) + "\n" for line in lines))


class NightRunner:
    """Runs jobs of `defs` in this process on `instance`, reporting steps on `display`."""

    def __init__(self, defs: Definitions, instance: DagsterInstance, display: StepDisplay,
                 console: Console, verbose: bool, training_config: dict):
        self.defs, self.instance, self.display = defs, instance, display
        self.console, self.verbose, self.training_config = console, verbose, training_config
        self.tags = process_tags()

    def run(self, job_name: str, night: str, tags: dict | None = None,
            run_config: dict | None = None) -> ExecuteInProcessResult:
        """Execute `job_name` for `night` with the step display as its logger."""
        job = self.defs.resolve_job_def(job_name)
        job = job.with_logger_defs({**job.loggers, "progress": self.display.logger_def()})
        self.console.print(f"[bold]{job_name}[/] night {night}", highlight=False)
        return job.execute_in_process(
            partition_key=night, instance=self.instance, raise_on_error=False,
            tags={**self.tags, **(tags or {})},
            run_config={**(run_config or {}), **run_loggers(self.verbose)})

    def sensor_requests(self) -> list[tuple[str, RunRequest]]:
        """One tick of each corpus threshold sensor: (job name, run request) pairs."""
        requests = []
        for sensor in self.defs.sensors:
            if not sensor.name.endswith("_corpus_threshold"):
                continue
            with build_sensor_context(instance=self.instance, definitions=self.defs,
                                      resources=self.defs.resources) as context:
                result = self.defs.resolve_sensor_def(sensor.name).evaluate_tick(context)
            for request in result.run_requests or []:
                requests.append((request.job_name or sensor.job_name, request))
            if result.skip_message:
                self.console.print(f"  [dim]{sensor.name}: {result.skip_message}[/]",
                                   highlight=False)
        return requests

    def adapter_run(self, job_name: str, request: RunRequest, night: str,
                    versions) -> tuple[str, AdapterVersion | None, bool]:
        """Execute one requested adapter run; (bucket, the night's version, success)."""
        tenant, role = job_name.removeprefix("adapter_").rsplit("_", 1)
        config = {"ops": {f"{tenant}__{role}__adapter": {"config": self.training_config}}}
        result = self.run(job_name, request.partition_key or night,
                          tags={**request.tags, "dagster/run_key": request.run_key},
                          run_config=config if self.training_config else None)
        version = version_for_night(versions.version_folder(tenant, role),
                                    request.partition_key or night)
        return f"{role}-{tenant}", version, result.success


def run_night(night: str | None, demo: bool, training_config: dict, verbose: bool,
              extraction_config: dict | None = None) -> int:
    """The `night` command; returns the exit status (0: every run succeeded, or ended at its
    gate with a version kept local: summary.kept_local). The configs are
    run config of the adapter runs (`TrainingConfig` fields) and of Phase 1's extraction
    (`ExtractionConfig` fields)."""
    started = time.monotonic()
    home = prepare_dagster_home()
    settings = Settings.from_env()
    from ..definitions import defs  # the code location's own, built once per process

    console = Console(highlight=False, soft_wrap=True)
    night = night or nights_partitions(settings).get_last_partition_key()
    if demo:
        window = nights_partitions(settings).time_window_for_partition_key(night)
        copied = install_demo_data(settings.data_root,
                                   (window.start + timedelta(hours=1)).timestamp())
        console.print(f"demo: {copied} documents and corpus files copied into "
                      f"{settings.data_root}")
    instance = DagsterInstance.get()
    for run_id in fail_dead_runs(instance):
        console.print(f"run {run_id} had died (killed or preempted): marked failed")
    display = StepDisplay(console)
    runner = NightRunner(defs, instance, display, console, verbose, training_config)
    # The correction tuples are cut as the extractor cuts its prompts: one config for both.
    phase1_config = ({"ops": {op: {"config": extraction_config}
                              for op in ("extracted_entities", "correction_tuples")}}
                     if extraction_config else None)
    runs = NightRuns(phase1=runner.run("datagraph_nightly", night, run_config=phase1_config))
    corpus = runner.run("corpus_nightly", night)
    runs.failed_runs += [r.run_id for r in (runs.phase1, corpus) if not r.success]
    versions = defs.resources["adapter_versions"]
    for job_name, request in runner.sensor_requests():
        runs.adapters.append(runner.adapter_run(job_name, request, night, versions))
    upcoming = defs.resources["extraction_serving"].extractor(defs.resources["inference_server"],
                                                              logging.getLogger(__name__))
    print_summary(console, night, runs, display.warnings, upcoming.extractor_name(),
                  defs.resources["graph_store"].location(), home, settings.log_dir,
                  time.monotonic() - started)
    # A night whose documents the graph could not take (deferred to the next run) is not done.
    deferred = recorded_graph(runs).get("run_documents_deferred", 0)
    return 0 if not failed_runs(runs) and not deferred else 1
