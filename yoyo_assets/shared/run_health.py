"""Runs whose process died (SIGKILL, OOM kill, preemption) without telling the instance.

Dagster's default run launcher cannot check a run worker's health, so such a run stays STARTED
and keeps its GPU pool slot and run-tag slot until its max_runtime: every later GPU run would wait
behind it. Each GPU run therefore tags itself with its process id and host (`tag_run_process`);
`fail_dead_runs` marks those whose process is gone as failed and frees their slots, which lets
Dagster's run retries (dagster.yaml, `dagster/max_retries`) launch them again. The
`dead_run_reaper` sensor does it every minute in the daemon, `python -m yoyo_assets recover
--after-boot` once when the machine starts (before the daemon), and `night` before each night.
"""

import multiprocessing
import os
import socket

from dagster import (DagsterInstance, DagsterRunStatus, DefaultSensorStatus, RunsFilter,
                     SensorEvaluationContext, SkipReason, sensor)

from .processes import is_running, start_time

#: Run tags naming the process that runs a GPU run, its start time (Unix seconds: a pid reused by
#: a later process is not mistaken for it) and its host.
PID_TAG, STARTED_TAG, HOST_TAG = "yoyo/pid", "yoyo/pid_started", "yoyo/host"
_UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def process_tags(pid: int | None = None) -> dict[str, str]:
    """PID_TAG, STARTED_TAG and HOST_TAG of process `pid` on this host (default: this one)."""
    pid = pid or os.getpid()
    return {PID_TAG: str(pid), STARTED_TAG: str(start_time(pid) or ""), HOST_TAG: socket.gethostname()}


def tag_run_process(context) -> None:
    """Tag the run of `context` (an asset execution context) with its run worker's process id
    and host; called first in every step of a GPU job. A step of the multiprocess executor is
    a child (spawned) of the run worker; in-process, the step runs in the run worker itself."""
    parent = multiprocessing.parent_process()
    context.instance.add_run_tags(context.run_id, process_tags(parent and parent.pid))


def fail_dead_runs(instance: DagsterInstance, after_boot: bool = False) -> list[str]:
    """Mark as failed the unfinished runs of this host whose process is gone, and free the pool
    slots they held; returns their run ids.

    `after_boot`: the instance serves this one machine, which has just started, so every
    unfinished run is dead whatever its tags (runs that never reached a GPU step included).
    """
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(RunsFilter(statuses=_UNFINISHED)):
        if not after_boot:
            pid = run.tags.get(PID_TAG)
            started = run.tags.get(STARTED_TAG)
            if not pid or run.tags.get(HOST_TAG) != host or \
                    is_running(int(pid), float(started) if started else None):
                continue
        why = ("the machine restarted while it ran (preempted)" if after_boot
               else f"its process {run.tags[PID_TAG]} died before the run ended")
        instance.report_run_failed(run, f"run failed: {why}")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


@sensor(name="dead_run_reaper", minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Fails GPU runs whose process died (OOM kill, SIGKILL) so that their slots "
        "free up and the run retry launches them again.")
def dead_run_reaper(context: SensorEvaluationContext) -> SkipReason:
    failed = fail_dead_runs(context.instance)
    return SkipReason(f"failed {len(failed)} dead run(s): {', '.join(failed)}" if failed
                      else "no dead run")
