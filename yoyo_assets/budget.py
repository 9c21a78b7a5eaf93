"""Phase budgets: a run's `dagster/max_runtime` tag (seconds), counted from the run's start."""

import time

from dagster import AssetExecutionContext


def run_deadline(context: AssetExecutionContext, default_budget_s: float, reserve_s: float) -> float:
    """Unix time after which the step should start no new work: run start + budget - reserve.
    The budget is the run's `dagster/max_runtime` tag, else `default_budget_s`."""
    budget = float(context.run.tags.get("dagster/max_runtime") or default_budget_s)
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = (record.start_time if record and record.start_time else None) or time.time()
    return started + budget - reserve_s
