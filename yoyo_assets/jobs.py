"""Jobs. Every job that needs the GPU carries the GPU run tag (limited to one run in dagster.yaml)
and its phase budget as `dagster/max_runtime` (enforced by run monitoring)."""

from dagster import AssetSelection, define_asset_job

from .settings import GPU_TAG_KEY, GPU_TAG_VALUE, phase1_budget_s

datagraph_nightly = define_asset_job(
    "datagraph_nightly",
    selection=AssetSelection.groups("datagraph"),
    description="Phase 1: the night's new documents -> entities -> DataGraph.",
    tags={GPU_TAG_KEY: GPU_TAG_VALUE, "dagster/max_runtime": str(phase1_budget_s())},
)
