"""Phase budgets: a run's `dagster/max_runtime` tag (seconds), counted from the run's start."""

import time

from dagster import AssetExecutionContext

#: Budget of a step whose run carries no `dagster/max_runtime` tag (a materialization launched by
#: hand), seconds: the design's phase budget.
DEFAULT_BUDGET_S = 7200.0


def run_deadline(context: AssetExecutionContext, reserve_s: float) -> float:
    """Unix time after which the step should start no new work: run start + budget - reserve.
    The budget is the run's `dagster/max_runtime` tag (the jobs set it from the phase budget
    settings), else DEFAULT_BUDGET_S."""
    budget = float(context.run.tags.get("dagster/max_runtime") or DEFAULT_BUDGET_S)
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = (record.start_time if record and record.start_time else None) or time.time()
    return started + budget - reserve_s
