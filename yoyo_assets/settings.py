"""Deployment settings read from the environment, each with the embedded default.

| variable | default | meaning |
|---|---|---|
| YOYO_DATA_ROOT | ./var/data | documents (transcripts/, research/, contacts/), graph/, models/, logs/ |
| YOYO_PHASE1_BUDGET_S | 7200 | Phase 1 run budget, seconds (the run's dagster/max_runtime) |
| YOYO_SCHEDULE_HOUR / YOYO_SCHEDULE_MINUTE | 2 / 0 | nightly schedule time, in the nights' timezone |
| YOYO_INFERENCE_MODE | managed | managed (start vLLM per run) or external |
| YOYO_INFERENCE_URL | http://127.0.0.1:9080 | external mode: base URL (Yo-Yo gateway) |
| YOYO_EXTRACTION_MODEL_DIR | (embedded SmolLM2) | model folder to serve / tokenizer to count with |
| YOYO_REASONING_PARSER | (none) | vLLM --reasoning-parser for a Think model |
| YOYO_TENANTS | pointsav | comma-separated tenants; each gets engineering-, apprenticeship- and extraction-<t> |
| YOYO_EXTRACTION_TENANT | (first tenant) | whose extraction adapter Phase 1 serves (managed mode) |
| YOYO_EXTRACTION_ADAPTER | (none) | external mode: the adapter name requests use (the gateway serves it) |
| YOYO_VLLM_MEMORY_SHARE | (vLLM's 0.92) | managed servers' --gpu-memory-utilization (CPU: share of RAM) |
| YOYO_QUALITY_SET | (demo documents + gold) | labelled set of the extraction_quality check and the extraction gate |
| YOYO_ADAPTER_THRESHOLD | 50 | pending tuples that make the sensor request a new adapter |
| YOYO_PHASE2_BUDGET_S | 7200 | Phase 2 run budget, seconds (the run's dagster/max_runtime) |
| YOYO_ADAPTERS_ROOT | <data root>/adapters | adapter versions: <tenant>/<role>/v<N>/ |
| YOYO_BASE_MODEL_DIR | (embedded SmolLM2) | base model folder of adapter training |
| YOYO_GCS_BUCKET / YOYO_GCS_PREFIX | (none) / adapters | publication target; none: not published |
| YOYO_GCS_PROJECT | (from credentials) | GCS project of the client |
| YOYO_GCS_RETRY_TIMEOUT_S | 120 | seconds one GCS request is retried before publication fails |

YOYO_TIMEZONE and YOYO_FIRST_NIGHT are read by `partitions.py`.
"""

import os
from pathlib import Path

#: Run tag that dagster.yaml limits to one run at a time: every run that needs the whole GPU.
GPU_TAG_KEY = "yoyo/gpu"
GPU_TAG_VALUE = "exclusive"
#: Dagster pool of the assets that use the GPU (limit 1, see dagster.yaml).
GPU_POOL = "gpu"


def data_root() -> Path:
    """The data root, absolute."""
    return Path(os.environ.get("YOYO_DATA_ROOT", "var/data")).resolve()


def phase1_budget_s() -> int:
    """Phase 1 budget in seconds."""
    return int(os.environ.get("YOYO_PHASE1_BUDGET_S", "7200"))


def phase2_budget_s() -> int:
    """Phase 2 budget in seconds."""
    return int(os.environ.get("YOYO_PHASE2_BUDGET_S", "7200"))


def tenants() -> list[str]:
    """Tenants whose corpus buckets and adapters the pipeline keeps (names are checked where
    they become folder names, see `adapters.corpus.bucket_name`)."""
    return [t.strip() for t in os.environ.get("YOYO_TENANTS", "pointsav").split(",") if t.strip()]


def extraction_tenant() -> str:
    """The tenant whose `extraction-<tenant>` adapter Phase 1 serves: YOYO_EXTRACTION_TENANT,
    else the first of YOYO_TENANTS."""
    return os.environ.get("YOYO_EXTRACTION_TENANT") or tenants()[0]


def adapter_threshold() -> int:
    """Pending tuples at which a bucket's next adapter is trained."""
    return int(os.environ.get("YOYO_ADAPTER_THRESHOLD", "50"))
