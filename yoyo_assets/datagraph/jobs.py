"""Phase 1's job and its nightly schedule."""

from dagster import (AssetSelection, DefaultScheduleStatus, ScheduleDefinition,
                     build_schedule_from_partitioned_job, define_asset_job)

from ..shared.settings import GPU_TAG_KEY, GPU_TAG_VALUE


def datagraph_nightly(budget_s: int):
    """Phase 1 in `budget_s` seconds. It needs the GPU: the GPU run tag (limited to one run in
    dagster.yaml), the budget as `dagster/max_runtime` (enforced by run monitoring) and one
    retry of a run whose process died (`dagster/max_retries`). Returns `define_asset_job`'s
    job, unannotated: Dagster's name for that type is private."""
    return define_asset_job(
        "datagraph_nightly", selection=AssetSelection.groups("datagraph"),
        description="Phase 1: the night's new documents -> entities -> DataGraph.",
        tags={GPU_TAG_KEY: GPU_TAG_VALUE, "dagster/max_runtime": str(budget_s),
              "dagster/max_retries": "1"})


def datagraph_nightly_schedule(job, hour: int, minute: int,
                               running: bool = True) -> ScheduleDefinition:
    """`job` (from `datagraph_nightly`) at `hour`:`minute` in the nights' timezone: the night
    that just ended is the last partition; on when the code location loads if `running`."""
    return build_schedule_from_partitioned_job(
        job, hour_of_day=hour, minute_of_hour=minute,
        default_status=DefaultScheduleStatus.RUNNING if running else
        DefaultScheduleStatus.STOPPED)
