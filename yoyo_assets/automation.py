"""The nightly schedule (Phase 1 for the night that just ended)."""

import os

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from .jobs import datagraph_nightly

#: 02:00 in the nights' timezone by default: the night that just ended is the last partition.
datagraph_nightly_schedule = build_schedule_from_partitioned_job(
    datagraph_nightly,
    hour_of_day=int(os.environ.get("YOYO_SCHEDULE_HOUR", "2")),
    minute_of_hour=int(os.environ.get("YOYO_SCHEDULE_MINUTE", "0")),
    default_status=DefaultScheduleStatus.RUNNING,
)
