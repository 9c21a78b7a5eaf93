"""Every environment variable the pipeline reads, in one place, each with the embedded default.

`Settings.from_env()` reads them all at once; nothing else in the package reads the environment.
The code location reads them when it loads (`definitions.py`), the command line when it starts.

| variable | default | meaning |
|---|---|---|
| YOYO_DATA_ROOT | ./var/data | documents (transcripts/, research/, contacts/), graph/, corpus/, models/, logs/ |
| YOYO_TIMEZONE | UTC | IANA timezone in which a night starts and ends |
| YOYO_FIRST_NIGHT | 2026-01-01 | first night that can be materialized or backfilled |
| YOYO_SCHEDULE_HOUR / YOYO_SCHEDULE_MINUTE | 2 / 0 | nightly schedule time, in the nights' timezone |
| YOYO_PHASE1_BUDGET_S | 7200 | Phase 1 run budget, seconds (the run's dagster/max_runtime) |
| YOYO_PHASE2_BUDGET_S | 7200 | Phase 2 run budget, seconds (the run's dagster/max_runtime) |
| YOYO_INFERENCE_MODE | managed | managed (start vLLM per run) or external |
| YOYO_INFERENCE_URL | http://127.0.0.1:9080 | external mode: base URL (Yo-Yo gateway) |
| YOYO_EXTRACTION_MODEL_DIR | (embedded SmolLM2) | model folder to serve / tokenizer to count with |
| YOYO_EXTRACTION_MODEL_NAME | (embedded: HuggingFaceTB/SmolLM2-135M-Instruct) | public name of that model, written into extraction adapters' adapter_config.json |
| YOYO_EXTRACTION_TOKENIZER | (the model folder's) | tokenizer.json of the served model (external mode) |
| YOYO_REASONING_PARSER | (none) | vLLM --reasoning-parser for a Think model |
| YOYO_VLLM_PYTHON | .venv-vllm/bin/python | Python of the managed vLLM server's environment |
| YOYO_VLLM_ENFORCE_EAGER | 1 | managed vLLM: 1 skips graph compilation (CPU: fast start); 0 compiles (GPU: CUDA graphs) |
| YOYO_VLLM_CPU_BIND | all | CPU vLLM: all (model threads on every core) or auto (vLLM keeps a core for its scheduler) |
| YOYO_VLLM_MEMORY_SHARE | (vLLM's 0.92) | managed servers' --gpu-memory-utilization (CPU: share of RAM) |
| YOYO_TENANTS | pointsav | comma-separated tenants; each gets engineering-, apprenticeship- and extraction-<t> |
| YOYO_EXTRACTION_TENANT | (first tenant) | whose extraction adapter Phase 1 serves (managed mode) |
| YOYO_EXTRACTION_SERVING | merged | managed mode: the extraction adapter merged into a copy of the base (CPU) or served as a LoRA overlay (overlay: GPU) |
| YOYO_EXTRACTION_ADAPTER | (none) | external mode: the adapter name requests use (the gateway serves it) |
| YOYO_QUALITY_SET | (demo documents + gold) | labelled set of the extraction_quality check and the extraction gate |
| YOYO_GRAPH_WRITE_BATCH | 256 | documents per graph write transaction (one mutate request with the service sink) |
| YOYO_GRAPH_SINK | embedded | embedded (write <data root>/graph/datagraph.lbug here) or service (through the graph service) |
| YOYO_GRAPH_SERVICE_URL | http://127.0.0.1:9081 | service sink: the graph service (docs/graph-service.md) |
| YOYO_GRAPH_SERVICE_TIMEOUT_S / YOYO_GRAPH_SERVICE_ATTEMPTS | 60 / 5 | service sink: seconds per request, attempts per request |
| YOYO_GRAPH_SERVICE_TOKEN | (none) | bearer token the graph service wants and the service sink sends; without one the service binds loopback only |
| YOYO_GRAPH_BUFFER_POOL_MIB / YOYO_GRAPH_CHECKPOINT_MIB | 512 / 4 | LadybugDB buffer pool of the process holding the graph, MiB; write-ahead log size that triggers a checkpoint, MiB (docs/reliability.md) |
| YOYO_ADAPTER_THRESHOLD | 50 | pending tuples that make the sensor request a new adapter |
| YOYO_ADAPTERS_ROOT | <data root>/adapters | adapter versions: <tenant>/<role>/v<N>/ |
| YOYO_BASE_MODEL_DIR | (embedded SmolLM2) | base model folder of adapter training |
| YOYO_BASE_MODEL_NAME | (embedded: HuggingFaceTB/SmolLM2-135M-Instruct) | its public name (e.g. allenai/Olmo-3-7B-Think), written into adapter_config.json so a gateway elsewhere resolves the base |
| YOYO_GIT_REPOSITORIES | (none) | `<tenant>=<path>,...`: git repositories whose night's commits become the tenant's engineering tuples |
| YOYO_GCS_BUCKET / YOYO_GCS_PREFIX | (none) / adapters | adapters published and the corpus copied to gs://<bucket>/<prefix>/; none: neither |
| YOYO_CORPUS_SOURCE | local | local, or gcs: the adapter asset trains from the night's GCS copy of the corpus |
| YOYO_GCS_PROJECT | (from credentials) | GCS project of the client |
| YOYO_GCS_RETRY_TIMEOUT_S | 120 | seconds one GCS request is retried before publication fails |
| YOYO_CRASH_POINTS | (none) | fault-injection tests only: crash points that SIGKILL the process |
| DAGSTER_HOME | ./var/dagster_home | command line: the Dagster instance (seeded with dagster.yaml) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Run tag that dagster.yaml limits to one run at a time: every run that needs the whole GPU.
GPU_TAG_KEY = "yoyo/gpu"
GPU_TAG_VALUE = "exclusive"
#: Dagster pool of the assets that use the GPU (limit 1, see dagster.yaml).
GPU_POOL = "gpu"
#: The repository checkout (scripts/setup.sh puts .venv-vllm here).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """The deployment's settings (see the table above); paths are absolute."""

    data_root: Path
    timezone: str = "UTC"
    first_night: str = "2026-01-01"
    schedule_hour: int = 2
    schedule_minute: int = 0
    phase1_budget_s: int = 7200
    phase2_budget_s: int = 7200
    inference_mode: str = "managed"
    inference_url: str = "http://127.0.0.1:9080"
    extraction_model_dir: str = ""
    extraction_model_name: str = ""
    extraction_tokenizer: str = ""
    reasoning_parser: str = ""
    vllm_python: str = str(REPO_ROOT / ".venv-vllm" / "bin" / "python")
    vllm_memory_share: float | None = None
    vllm_cpu_bind: str = "all"
    vllm_enforce_eager: bool = True
    tenants: tuple[str, ...] = ("pointsav",)
    extraction_tenant: str = ""
    extraction_serving: str = "merged"
    extraction_adapter: str = ""
    quality_set: str = ""
    graph_write_batch: int = 256
    graph_sink: str = "embedded"
    graph_service_url: str = "http://127.0.0.1:9081"
    graph_service_timeout_s: float = 60.0
    graph_service_attempts: int = 5
    graph_service_token: str = ""
    graph_buffer_pool_mib: int = 512
    graph_checkpoint_mib: int = 4
    adapter_threshold: int = 50
    adapters_root: Path | None = None
    base_model_dir: str = ""
    base_model_name: str = ""
    git_repositories: tuple[str, ...] = ()
    gcs_bucket: str = ""
    corpus_source: str = "local"
    gcs_prefix: str = "adapters"
    gcs_project: str | None = None
    gcs_retry_timeout_s: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ,
                 data_root: Path | None = None) -> Settings:
        """Settings from `environ` (default: this process's environment); `data_root`, if
        given, replaces YOYO_DATA_ROOT.

        Raises:
            ValueError: a number that does not parse, naming the variable.
        """
        def get(name: str, default: str = "") -> str:
            return environ.get(f"YOYO_{name}", "") or default

        def number(name: str, default: str, kind: type = int):
            try:
                return kind(get(name, default))
            except ValueError:
                raise ValueError(f"YOYO_{name}={get(name)!r} is not a {kind.__name__}") from None

        root = Path(data_root or get("DATA_ROOT", "var/data")).resolve()
        tenants = tuple(t.strip() for t in get("TENANTS", "pointsav").split(",") if t.strip())
        share = get("VLLM_MEMORY_SHARE")
        return cls(
            data_root=root, timezone=get("TIMEZONE", "UTC"),
            first_night=get("FIRST_NIGHT", "2026-01-01"),
            schedule_hour=number("SCHEDULE_HOUR", "2"),
            schedule_minute=number("SCHEDULE_MINUTE", "0"),
            phase1_budget_s=number("PHASE1_BUDGET_S", "7200"),
            phase2_budget_s=number("PHASE2_BUDGET_S", "7200"),
            inference_mode=get("INFERENCE_MODE", "managed"),
            inference_url=get("INFERENCE_URL", "http://127.0.0.1:9080"),
            extraction_model_dir=get("EXTRACTION_MODEL_DIR"),
            extraction_model_name=get("EXTRACTION_MODEL_NAME"),
            extraction_tokenizer=get("EXTRACTION_TOKENIZER"),
            reasoning_parser=get("REASONING_PARSER"),
            vllm_python=get("VLLM_PYTHON", cls.vllm_python),
            vllm_memory_share=number("VLLM_MEMORY_SHARE", "0", float) if share else None,
            vllm_cpu_bind=get("VLLM_CPU_BIND", "all"),
            vllm_enforce_eager=get("VLLM_ENFORCE_EAGER", "1") != "0",
            tenants=tenants, extraction_tenant=get("EXTRACTION_TENANT", tenants[0]),
            extraction_serving=get("EXTRACTION_SERVING", "merged"),
            extraction_adapter=get("EXTRACTION_ADAPTER"), quality_set=get("QUALITY_SET"),
            graph_write_batch=number("GRAPH_WRITE_BATCH", "256"),
            graph_sink=get("GRAPH_SINK", "embedded"),
            graph_service_url=get("GRAPH_SERVICE_URL", cls.graph_service_url),
            graph_service_timeout_s=number("GRAPH_SERVICE_TIMEOUT_S", "60", float),
            graph_service_attempts=number("GRAPH_SERVICE_ATTEMPTS", "5"),
            graph_service_token=get("GRAPH_SERVICE_TOKEN"),
            graph_buffer_pool_mib=number("GRAPH_BUFFER_POOL_MIB", "512"),
            graph_checkpoint_mib=number("GRAPH_CHECKPOINT_MIB", "4"),
            adapter_threshold=number("ADAPTER_THRESHOLD", "50"),
            adapters_root=Path(get("ADAPTERS_ROOT", str(root / "adapters"))).resolve(),
            base_model_dir=get("BASE_MODEL_DIR"), base_model_name=get("BASE_MODEL_NAME"),
            git_repositories=tuple(r.strip() for r in get("GIT_REPOSITORIES").split(",")
                                   if r.strip()),
            gcs_bucket=get("GCS_BUCKET"), gcs_prefix=get("GCS_PREFIX", "adapters"),
            corpus_source=get("CORPUS_SOURCE", "local"),
            gcs_project=get("GCS_PROJECT") or None,
            gcs_retry_timeout_s=number("GCS_RETRY_TIMEOUT_S", "120", float),
        )

    @property
    def models_dir(self) -> Path:
        """Where the embedded model is converted once and reused."""
        return self.data_root / "models"

    @property
    def graph_path(self) -> Path:
        """The DataGraph's LadybugDB file (the embedded sink's; the reference service's default)."""
        return self.data_root / "graph" / "datagraph.lbug"

    @property
    def log_dir(self) -> Path:
        """Where managed inference servers write their output."""
        return self.data_root / "logs"


def crash_points() -> set[str]:
    """YOYO_CRASH_POINTS, read at each crash point (a test sets it for one child process)."""
    return {p for p in os.environ.get("YOYO_CRASH_POINTS", "").split(",") if p}


def dagster_home() -> Path:
    """$DAGSTER_HOME, else ./var/dagster_home (absolute); the command line's instance."""
    return Path(os.environ.get("DAGSTER_HOME") or "var/dagster_home").resolve()
