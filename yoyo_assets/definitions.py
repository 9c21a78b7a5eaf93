"""The one `Definitions` object of the yoyo-assets code location (`defs`), built from the
environment (see `settings.py`); `build_definitions` builds it for another data root or server."""

import os
from pathlib import Path

from dagster import Definitions
from dagster_gcp import GCSResource

from .adapters.assets import build_bucket_assets
from .adapters.corpus import ROLES
from .automation import (corpus_nightly_schedule, corpus_threshold_sensor,
                         datagraph_nightly_schedule)
from .datagraph.assets import documents, extracted_entities, graph_mutations
from .jobs import adapter_training, corpus_nightly, datagraph_nightly
from .resources.adapter_store import AdapterStore
from .resources.document_streams import DocumentStreams
from .resources.graph_store import GraphStore
from .resources.inference_server import InferenceServer
from .resources.labelled_set import LabelledSet
from .run_health import dead_run_reaper
from .settings import data_root, tenants


def inference_server_from_env(root: Path) -> InferenceServer:
    """The inference server resource as the YOYO_* variables configure it."""
    return InferenceServer(
        mode=os.environ.get("YOYO_INFERENCE_MODE", "managed"),
        url=os.environ.get("YOYO_INFERENCE_URL", "http://127.0.0.1:9080"),
        model_dir=os.environ.get("YOYO_EXTRACTION_MODEL_DIR", ""),
        tokenizer_path=os.environ.get("YOYO_EXTRACTION_TOKENIZER", ""),
        reasoning_parser=os.environ.get("YOYO_REASONING_PARSER", ""),
        adapter=os.environ.get("YOYO_EXTRACTION_ADAPTER", ""),
        memory_share=float(os.environ["YOYO_VLLM_MEMORY_SHARE"])
        if os.environ.get("YOYO_VLLM_MEMORY_SHARE") else None,
        models_dir=str(root / "models"),
        log_dir=str(root / "logs"),
    )


def adapter_store_from_env(root: Path) -> AdapterStore:
    """The adapter store resource as the YOYO_* variables configure it."""
    return AdapterStore(
        corpus_root=str(root / "corpus"),
        adapters_root=os.environ.get("YOYO_ADAPTERS_ROOT") or str(root / "adapters"),
        models_dir=str(root / "models"),
        base_model_dir=os.environ.get("YOYO_BASE_MODEL_DIR", ""),
        gcs_bucket=os.environ.get("YOYO_GCS_BUCKET", ""),
        gcs_prefix=os.environ.get("YOYO_GCS_PREFIX", "adapters"),
        gcs_retry_timeout_s=float(os.environ.get("YOYO_GCS_RETRY_TIMEOUT_S", "120")),
        gcs=GCSResource(project=os.environ.get("YOYO_GCS_PROJECT") or None),
    )


def build_definitions(root: Path, inference_server: InferenceServer | None = None,
                      adapter_store: AdapterStore | None = None,
                      labelled_set: LabelledSet | None = None) -> Definitions:
    """Definitions whose documents, graph, corpus, adapters, models and logs live under the data
    root `root`, for the tenants in YOYO_TENANTS."""
    buckets = [(tenant, role) for tenant in tenants() for role in ROLES]
    adapter_jobs = {bucket: adapter_training(*bucket) for bucket in buckets}
    corpus_job = corpus_nightly(tenants())
    return Definitions(
        assets=[documents, extracted_entities, graph_mutations,
                *[a for bucket in buckets for a in build_bucket_assets(*bucket)]],
        jobs=[datagraph_nightly, corpus_job, *adapter_jobs.values()],
        schedules=[datagraph_nightly_schedule, corpus_nightly_schedule(corpus_job)],
        sensors=[*[corpus_threshold_sensor(*bucket, job) for bucket, job in adapter_jobs.items()],
                 dead_run_reaper],
        resources={
            "document_streams": DocumentStreams(root=str(root)),
            "graph_store": GraphStore(
                path=str(root / "graph" / "datagraph.lbug"),
                write_batch_documents=int(os.environ.get("YOYO_GRAPH_WRITE_BATCH", "256"))),
            "inference_server": inference_server or inference_server_from_env(root),
            "labelled_set": labelled_set or LabelledSet(path=os.environ.get("YOYO_QUALITY_SET", "")),
            "adapter_store": adapter_store or adapter_store_from_env(root),
        },
    )


defs = build_definitions(data_root())
