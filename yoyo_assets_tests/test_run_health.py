"""Runs whose process died: failed and their GPU pool slots freed, so run retries can launch them
again; live runs and other hosts' runs left alone; after a boot, every unfinished run."""

import os
import socket
import subprocess
import sys

from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context, job, op

from yoyo_assets.shared.run_health import HOST_TAG, PID_TAG, dead_run_reaper, fail_dead_runs
from yoyo_assets.shared.settings import GPU_POOL

from .helpers import REPO_ROOT, timeout


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@op
def extract() -> None:
    pass


@job
def datagraph_nightly() -> None:  # a stand-in: its runs are only recorded, never executed
    extract()


def started_run(instance: DagsterInstance, pid: int | None, host: str | None = None) -> str:
    tags = {} if pid is None else {PID_TAG: str(pid), HOST_TAG: host or socket.gethostname()}
    run = instance.create_run_for_job(datagraph_nightly, tags=tags,
                                      status=DagsterRunStatus.STARTED)
    return run.run_id


def test_dead_runs_are_failed_and_their_slots_freed(dagster_home):
    instance = DagsterInstance.get()
    dead = started_run(instance, dead_pid())
    alive = started_run(instance, os.getpid())
    elsewhere = started_run(instance, dead_pid(), host="another-host")
    untagged = started_run(instance, None)
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(GPU_POOL)
    assert storage.claim_concurrency_slot(GPU_POOL, dead, "extracted_entities").is_claimed
    assert storage.get_concurrency_info(GPU_POOL).active_slot_count == 1

    result = dead_run_reaper(build_sensor_context(instance=instance))
    assert result.skip_message == f"failed 1 dead run(s): {dead}"
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE
    assert storage.get_concurrency_info(GPU_POOL).active_slot_count == 0
    assert {instance.get_run_by_id(r).status for r in (alive, elsewhere, untagged)} == \
        {DagsterRunStatus.STARTED}
    assert fail_dead_runs(instance) == []  # nothing more to do

    # After a boot nothing that was running can still be: all three are failed.
    assert sorted(fail_dead_runs(instance, after_boot=True)) == sorted([alive, elsewhere,
                                                                       untagged])


def test_recover_command_after_boot(dagster_home):
    instance = DagsterInstance.get()
    run_id = started_run(instance, None)
    done = subprocess.run([sys.executable, "-m", "yoyo_assets", "recover", "--after-boot"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout(120))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"run {run_id}: marked failed" in done.stdout
    failure = instance.get_run_by_id(run_id)
    assert failure.status == DagsterRunStatus.FAILURE
