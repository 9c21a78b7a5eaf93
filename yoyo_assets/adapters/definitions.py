"""Phase 2's `Definitions`: per tenant and role, the corpus bucket, adapter (with its blocking
checks) and published adapter assets, the adapter job and its threshold sensor; the corpus job
and schedule; and Phase 2's resources."""

from dagster import AssetKey, Definitions

from ..shared.partitions import nights_partitions
from ..shared.settings import Settings
from .assets import build_bucket_assets
from .checks import build_adapter_checks
from .corpus import ROLES
from .jobs import adapter_training, corpus_nightly
from .sensors import corpus_nightly_schedule, corpus_threshold_sensor
from .resources import AdapterVersions, CorpusBuckets, ExtractionServing, Publication


def adapters_resources(settings: Settings) -> dict:
    """Phase 2's own resources as `settings` configure them; `extraction_serving` is Phase 1's
    choice of extraction adapter, made from Phase 2's versions."""
    versions = AdapterVersions(
        adapters_root=str(settings.adapters_root), models_dir=str(settings.models_dir),
        base_model_dir=settings.corpus.base_model_dir,
        base_model_name=settings.corpus.base_model_name,
        extraction_model_name=settings.inference.extraction_model_name)
    return {
        "corpus_buckets": CorpusBuckets(
            corpus_root=str(settings.data_root / "corpus"), source=settings.corpus.corpus_source,
            mirror_root=str(settings.data_root / "corpus-gcs"),
            threshold=settings.corpus.adapter_threshold,
            git_repositories=list(settings.corpus.git_repositories)),
        "adapter_versions": versions,
        "publication": Publication(
            bucket=settings.gcs.bucket, prefix=settings.gcs.prefix,
            project=settings.gcs.project,
            retry_timeout_s=settings.gcs.retry_timeout_s),
        "extraction_serving": ExtractionServing(
            tenant=settings.corpus.extraction_tenant, mode=settings.inference.extraction_serving,
            versions=versions),
    }


#: Phase 1's asset that adds operators' corrections to the serving tenant's buckets.
CORRECTION_TUPLES = AssetKey("correction_tuples")


def writers(tenant: str, role: str, settings: Settings) -> tuple[AssetKey, ...]:
    """Assets outside Phase 2 that add tuples to bucket `<role>-<tenant>`: corrections feed the
    extraction tenant's `extraction` bucket (SFT tuples and DPO pairs)."""
    fed = tenant == settings.corpus.extraction_tenant and role == "extraction"
    return (CORRECTION_TUPLES,) if fed else ()


def adapters_definitions(settings: Settings) -> Definitions:
    """Phase 2 for the tenants in `settings`. Its resources (`adapters_resources`), the shared
    `inference_server` (the serving check) and Phase 1's `labelled_set` (the extraction gate)
    are bound where the definitions are merged."""
    nights = nights_partitions(settings)
    schedule = settings.schedule
    buckets = [(tenant, role) for tenant in settings.corpus.tenants for role in ROLES]
    jobs = {bucket: adapter_training(*bucket, schedule.phase2_budget_s) for bucket in buckets}
    corpus_job = corpus_nightly(settings.corpus.tenants)
    return Definitions(
        assets=[a for bucket in buckets
                for a in build_bucket_assets(*bucket, nights, writers(*bucket, settings))],
        asset_checks=[c for bucket in buckets for c in build_adapter_checks(*bucket, nights)],
        jobs=[corpus_job, *jobs.values()],
        schedules=[corpus_nightly_schedule(corpus_job, schedule.schedule_hour,
                                           schedule.schedule_minute, schedule.automation)],
        sensors=[corpus_threshold_sensor(*bucket, job, schedule.automation)
                 for bucket, job in jobs.items()])
