"""Phase 2 jobs. The adapter jobs need the GPU: they carry the GPU run tag (limited to one run
in dagster.yaml), the phase budget as `dagster/max_runtime` (enforced by run monitoring) and one
retry of a run whose process died (`dagster/max_retries`, see dagster.yaml)."""

from dagster import AssetKey, AssetSelection, define_asset_job

from ..shared.settings import GPU_TAG_KEY, GPU_TAG_VALUE
from .corpus import ROLES


def corpus_nightly(tenants: tuple[str, ...]):
    """Harvests the night's commits, then validates and counts every corpus bucket for the
    night (CPU only: no GPU tag)."""
    return define_asset_job(
        "corpus_nightly",
        selection=AssetSelection.assets(
            *[AssetKey([t, r, "corpus_bucket"]) for t in tenants for r in ROLES],
            *[AssetKey([t, "engineering", "commit_tuples"]) for t in tenants]),
        description="Phase 2 input: every corpus bucket as of the night's end.")


def adapter_job_name(tenant: str, role: str) -> str:
    """`adapter_<tenant>_<role>`."""
    return f"adapter_{tenant}_{role}"


def adapter_training(tenant: str, role: str, budget_s: int):
    """Phase 2 for one bucket: train the adapter (with its blocking checks) and publish it, in
    `budget_s` seconds. Launched by the bucket's sensor; a retry after a crash resumes from the
    checkpoint."""
    return define_asset_job(
        adapter_job_name(tenant, role),
        selection=AssetSelection.assets(AssetKey([tenant, role, "adapter"]),
                                        AssetKey([tenant, role, "published_adapter"])),
        description=f"Phase 2: QLoRA adapter of {role}-{tenant}, then its publication.",
        tags={GPU_TAG_KEY: GPU_TAG_VALUE, "dagster/max_runtime": str(budget_s),
              "dagster/max_retries": "1"},
    )
