"""What the command line shows while a night runs: one line per step as it ends (with its
elapsed time; a spinner while it runs), progress bars for documents extracted and training
steps, and warnings counted for the summary. Dagster's own event log still goes to the instance
(the UI and the run's log files); `--verbose` prints it too, with every library warning.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

from dagster import LoggerDefinition, logger
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)


def quiet_libraries() -> None:
    """Silence third-party deprecation warnings, `datasets` map bars and transformers' info
    logs in this process (the command line without --verbose; never in tests)."""
    warnings.simplefilter("ignore")
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # set for this process, not read
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"


class StepDisplay(logging.Handler):
    """A logging handler fed by the Dagster logger `progress` (see `logger_def`): Dagster
    events (record.dagster_meta["dagster_event"]) and the assets' progress records
    (record.yoyo_progress = (done, total, unit))."""

    def __init__(self, console: Console):
        super().__init__(logging.DEBUG)
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.tasks: dict[str, tuple[int, float]] = {}  # step key -> (task id, started)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event, step = meta.get("dagster_event"), meta.get("step_key") or ""
        if getattr(record, "yoyo_progress", None) and step in self.tasks:
            done, total, unit = record.yoyo_progress
            self.progress.update(self.tasks[step][0], completed=done, total=total,
                                 description=f"  {step} ({unit})")
        elif event is not None and event.event_type_value == "STEP_START":
            self.progress.start()
            self.tasks[step] = (self.progress.add_task(f"  {step}", total=None), time.monotonic())
        elif event is not None and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            self._step_ended(step, event.event_type_value == "STEP_SUCCESS", meta)
        elif record.levelno >= logging.WARNING and event is None:
            self.warnings.append(f"{step}: {meta.get('orig_message', record.getMessage())}")

    def _step_ended(self, step: str, ok: bool, meta: dict) -> None:
        task, started = self.tasks.pop(step, (None, time.monotonic()))
        if task is not None:
            self.progress.remove_task(task)
        if not self.tasks:
            self.progress.stop()
        elapsed = time.monotonic() - started
        mark = "[green]ok[/]" if ok else "[red]FAILED[/]"
        why = "" if ok else f": {meta.get('orig_message', '')[:150]}"
        self.console.print(f"  {mark:>6} {step:<48} {elapsed:7.1f} s{why}", highlight=False)

    def logger_def(self) -> LoggerDefinition:
        """A Dagster logger (`progress`) that hands every record to this display."""
        handler = self

        @logger(description="The command line's step lines and progress bars.")
        def progress(_init_context):
            log = logging.getLogger("yoyo_assets.cli.progress")
            log.handlers, log.propagate = [handler], False
            log.setLevel(logging.DEBUG)
            return log

        return progress


def run_loggers(verbose: bool) -> dict:
    """Run config `loggers` section: the step display, and Dagster's console log if verbose."""
    return {"loggers": {"progress": {}, **({"console": {}} if verbose else {})}}
