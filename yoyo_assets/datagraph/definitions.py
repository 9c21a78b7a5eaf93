"""Phase 1's `Definitions` (assets and check, job, schedule) and its resources."""

from dagster import AssetKey, Definitions, EnvVar

from ..shared.partitions import nights_partitions
from ..shared.settings import Settings, variable
from .assets import build_datagraph_assets
from .jobs import datagraph_nightly, datagraph_nightly_schedule
from .resources import DocumentStreams, GraphStore, LabelledSet


def datagraph_resources(settings: Settings) -> dict:
    """Phase 1's own resources as `settings` configure them."""
    return {
        "document_streams": DocumentStreams(root=str(settings.data_root)),
        "graph_store": GraphStore(
            path=str(settings.graph_path), write_batch_documents=settings.graph.write_batch,
            sink=settings.graph.sink, service_url=settings.graph.service_url,
            service_timeout_s=settings.graph.service_timeout_s,
            service_attempts=settings.graph.service_attempts,
            # A secret stays in the environment: the run reads it there (dg.EnvVar), and the
            # UI's resource page shows the variable's name, never its value.
            service_token=EnvVar(variable("graph_service_token"))
            if settings.graph.service_token else "",
            buffer_pool_mib=settings.graph.buffer_pool_mib,
            checkpoint_mib=settings.graph.checkpoint_mib),
        "labelled_set": LabelledSet(path=settings.inference.quality_set),
    }


def datagraph_definitions(settings: Settings) -> Definitions:
    """Documents -> extracted_entities -> datagraph, partitioned by night; `extracted_entities`
    downstream of the previous night's extraction adapter of the serving tenant. Its resources
    (`datagraph_resources`), the shared `inference_server` and Phase 2's `extraction_serving` (the
    extraction adapter Phase 1 serves) are bound where the definitions are merged."""
    job = datagraph_nightly(settings.schedule.phase1_budget_s)
    adapter = AssetKey([settings.corpus.extraction_tenant, "extraction", "adapter"])
    return Definitions(
        assets=build_datagraph_assets(nights_partitions(settings), adapter),
        jobs=[job],
        schedules=[datagraph_nightly_schedule(job, settings.schedule.schedule_hour,
                                              settings.schedule.schedule_minute,
                                              settings.schedule.automation)])
