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
