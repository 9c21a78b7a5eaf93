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
    # Library loggers without handlers of their own (bitsandbytes' kernel notices, ...) would
    # reach Python's last-resort stderr handler; Dagster's loggers have their own.
    logging.getLogger().addHandler(logging.NullHandler())
    os.environ["TQDM_DISABLE"] = "1"  # every tqdm bar: model conversion, datasets.map (set, not read)
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
            if not self.tasks and self.console.is_terminal:  # bars only where they redraw
                self.progress.start()
            self.tasks[step] = (self.progress.add_task(f"  {step}", total=None), time.monotonic())
        elif event is not None and event.event_type_value == "STEP_SUCCESS":
            self._step_ended(step, "")
        elif event is not None and event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user code's own error
                error = error.cause
            # The whole message on one line: a blocking check's names its check after a colon.
            self._step_ended(step, " ".join(error.message.split())[:200] if error else "failed")
        elif record.levelno >= logging.WARNING and event is None:
            self.warnings.append(f"{step}: {meta.get('orig_message', record.getMessage())}")

    def _step_ended(self, step: str, failure: str) -> None:
        task, started = self.tasks.pop(step, (None, time.monotonic()))
        if task is not None:
            self.progress.remove_task(task)
        if not self.tasks and self.progress.live.is_started:
            self.progress.stop()
        mark = "[red]FAILED[/]" if failure else "[green]ok[/]    "
        self.console.print(f"  {mark} {step:<44} {time.monotonic() - started:7.1f} s"
                           + (f"  {failure[:160]}" if failure else ""), highlight=False)

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
