"""Every environment variable the pipeline reads, each declared once (name, type, default,
meaning) in the group of its concern (`ScheduleSettings`, `InferenceSettings`, `GraphSettings`,
`CorpusSettings`, `GcsSettings`; `Settings` holds them and the data root), with the embedded
setup as its default. Variables keep their flat names: `settings.graph.sink` is
`YOYO_GRAPH_SINK`, `settings.inference.vllm_dtype` is `YOYO_VLLM_DTYPE`.

`Settings.from_env()` reads them all at once (pydantic-settings); nothing else in the package
reads the environment. The code location reads them when it loads (`definitions.py`), the
command line when it starts. The README's settings table is `settings_table()`'s output
(`python -m yoyo_assets settings`), and a test holds the two equal.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, field_validator)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Run tag that dagster.yaml limits to one run at a time: every run that needs the whole GPU.
GPU_TAG_KEY = "yoyo/gpu"
GPU_TAG_VALUE = "exclusive"
#: Dagster pool of the assets that use the GPU (limit 1, see dagster.yaml).
GPU_POOL = "gpu"
#: The repository checkout (scripts/setup.sh puts .venv-vllm here).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The prefix of every variable below.
ENV_PREFIX = "YOYO_"

def _comma_split(value):
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: A comma-separated list in the environment (not JSON, pydantic-settings' default for lists).
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_split)]


def _setting(default, meaning: str, shown: str | None = None):
    """One setting's declaration: its default, its meaning (markdown, the README's words) and,
    where the default is worked out at run time, how the README shows it."""
    return Field(default=default, description=meaning,
                 json_schema_extra={"shown": shown} if shown else None)


class SettingsError(ValueError):
    """A variable whose value does not parse or is not allowed; the message names it."""


class _Group(BaseSettings):
    """Settings of one concern, read from `<its env_prefix><FIELD>` variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True,
                                      validate_default=True, frozen=True, extra="forbid")


class ScheduleSettings(_Group):
    """When nights start and run, and how long each phase may take."""

    timezone: str = _setting("UTC", "IANA timezone in which a night starts and ends")
    first_night: str = _setting("2026-01-01", "first night that can be materialized or "
                                "backfilled")
    schedule_hour: int = _setting(2, "nightly schedule hour, in the nights' timezone")
    schedule_minute: int = _setting(0, "nightly schedule minute")
    automation: bool = _setting(
        True, "whether the schedules and the threshold sensors start on when the code location "
        "loads (the daemon of `dagster dev` then launches runs); `false`: they start off, "
        "nothing launches until switched on in the UI (a laptop, the demo's instance)")
    phase1_budget_s: int = _setting(
        7200, "Phase 1 budget, seconds (`dagster/max_runtime`); extraction starts no document "
        "after budget − its reserve (run config `budget_reserve_s`)")
    phase2_budget_s: int = _setting(
        7200, "Phase 2 budget, seconds; training checkpoints and stops at budget − its reserve, "
        "the next run resumes")


class InferenceSettings(_Group):
    """The extraction model and the vLLM servers that serve it."""

    inference_mode: Literal["managed", "external"] = _setting(
        "managed", "`managed`: start vLLM for the extraction step and stop its process group "
        "after; `external`: use `YOYO_INFERENCE_URL`")
    inference_url: CommaList = _setting(
        ("http://127.0.0.1:9080",), "external servers serving the same model, comma-separated "
        "(the Yo-Yo gateway); with more than one, a night's documents are split into one "
        "extraction step per server and a shard whose server fails is retried on the next "
        "(docs/deployment.md, \"Beyond one machine\")", shown="http://127.0.0.1:9080")
    extraction_model_dir: str = _setting(
        "", "Hugging Face folder to serve (production: OLMo 3 32B Think)",
        shown="embedded SmolLM2-135M-Instruct")
    extraction_model_name: str = _setting(
        "", "its public name (production: `allenai/Olmo-3-32B-Think`), the base named by "
        "extraction adapters", shown="embedded: `HuggingFaceTB/SmolLM2-135M-Instruct`")
    extraction_tokenizer: str = _setting(
        "", "`tokenizer.json` for counting tokens (external mode)", shown="the model folder's")
    reasoning_parser: str = _setting("", "vLLM `--reasoning-parser` for a Think model")
    vllm_python: str = _setting(str(REPO_ROOT / ".venv-vllm" / "bin" / "python"),
                                "the managed server's Python", shown=".venv-vllm/bin/python")
    vllm_enforce_eager: bool = _setting(
        True, "managed vLLM `--enforce-eager`: `1` skips graph compilation (CPU: a faster "
        "start, slightly slower extraction; docs/benchmarks.md); `0` compiles: set it on a GPU "
        "(CUDA graphs)", shown="1")
    vllm_dtype: Literal["auto", "bfloat16", "float16", "float32"] = _setting(
        "auto", "managed vLLM `--dtype`: `auto` is `bfloat16` on a GPU or a CPU with AVX512-BF16 "
        "or AMX, else `float32` (a CPU without them emulates bfloat16, ~4× slower; "
        "docs/benchmarks.md)")
    vllm_cpu_bind: Literal["all", "auto"] = _setting(
        "all", "CPU vLLM with `YOYO_VLLM_CPU_EXECUTOR=mp`: `all` runs the model's threads on "
        "every core; `auto`: vLLM's choice, which keeps a core for its scheduler "
        "(docs/benchmarks.md); a GPU server ignores it")
    vllm_cpu_executor: Literal["uni", "mp"] = _setting(
        "uni", "CPU vLLM: `uni` runs the model inside vLLM's engine process; `mp`: in a worker "
        "process of its own (vLLM's CPU default), which busy-waits 1 s after each step and "
        "alone applies `YOYO_VLLM_CPU_BIND` (docs/benchmarks.md); a GPU server ignores it")
    vllm_memory_share: float | None = _setting(
        None, "managed servers' `--gpu-memory-utilization` (on CPU: share of RAM); lower it "
        "where another server runs", shown="vLLM's 0.92")
    extraction_serving: Literal["merged", "overlay"] = _setting(
        "merged", "managed mode: Phase 1 serves the extraction adapter merged into a copy of "
        "the base (`<data root>/models/merged/`, made once per version; CPU: the base's speed) "
        "or as a vLLM LoRA overlay (`overlay`: the choice on a GPU)")
    extraction_adapter: str = _setting("", "external mode: the adapter name requests use (the "
                                       "gateway serves it)")
    quality_set: str = _setting(
        "", "labelled set (documents + `gold.json`) of the `extraction_quality` check and the "
        "extraction adapter's gate", shown="the demo documents and `demo_data/gold.json`")

    @field_validator("inference_url")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one server URL is needed")
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value


class GraphSettings(_Group):
    """The graph: its sink, the graph service's client, LadybugDB's memory (`YOYO_GRAPH_*`)."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}GRAPH_")

    write_batch: int = _setting(
        256, "documents per graph write transaction (one mutate request with the service sink)")
    sink: Literal["embedded", "service"] = _setting(
        "embedded", "`embedded`: the run writes `<data root>/graph/datagraph.lbug` itself; "
        "`service`: through the graph service that owns the file (`POST /v1/graph/mutate`, "
        "docs/graph-service.md)")
    service_url: str = _setting("http://127.0.0.1:9081",
                                "service sink: the graph service's base URL")
    service_timeout_s: float = _setting(60.0, "service sink: seconds per request")
    service_attempts: int = _setting(
        5, "service sink: attempts per request (connection errors, 429, 5xx)")
    service_token: str = _setting(
        "", "bearer token the graph service wants and the service sink sends; without one the "
        "reference service binds loopback addresses only. Runs read it from the environment "
        "(`dg.EnvVar`): the UI shows the variable's name, never the token")
    buffer_pool_mib: int = _setting(
        512, "LadybugDB buffer pool of the process holding the graph file (the embedded run, or "
        "the graph service), MiB; LadybugDB's own default is 80% of RAM")
    checkpoint_mib: int = _setting(
        4, "write-ahead log size that triggers a checkpoint of the graph file, MiB "
        "(docs/reliability.md, \"Bounded memory\")")


class CorpusSettings(_Group):
    """Tenants, their corpus buckets and the adapters trained from them."""

    tenants: CommaList = _setting(
        ("pointsav",), "comma-separated tenants (`[a-z0-9_-]`); each gets an `engineering-`, an "
        "`apprenticeship-` and an `extraction-` bucket", shown="pointsav")
    extraction_tenant: str = _setting("", "whose extraction adapter Phase 1 serves (managed "
                                      "mode)", shown="first tenant")
    adapter_threshold: int = _setting(50, "pending tuples that make a sensor request a new "
                                      "adapter")
    adapters_root: Path | None = _setting(None, "adapter versions, `<tenant>/<role>/v<N>/`",
                                          shown="<data root>/adapters")
    base_model_dir: str = _setting("", "base model folder for training (production: OLMo 3 7B "
                                   "Think)", shown="embedded SmolLM2-135M-Instruct")
    base_model_name: str = _setting(
        "", "the base's public name (production: `allenai/Olmo-3-7B-Think`), written into each "
        "adapter's `adapter_config.json` as `base_model_name_or_path` so a gateway elsewhere "
        "can load it; the manifest keeps the local path and SHA-256 beside it",
        shown="embedded: `HuggingFaceTB/SmolLM2-135M-Instruct`")
    git_repositories: CommaList = _setting(
        (), "`<tenant>=<path>,...`: git repositories (clones whose HEAD is the default branch) "
        "harvested into the tenant's engineering bucket each night")
    corpus_source: Literal["local", "gcs"] = _setting(
        "local", "`gcs`: the adapter asset trains from the night's GCS copy of the corpus "
        "(mirrored into `<data root>/corpus-gcs/`), for a training machine that never saw the "
        "local folder")

    @field_validator("extraction_tenant")
    @classmethod
    def _first_tenant(cls, value: str, info: ValidationInfo) -> str:
        return value or next(iter(info.data.get("tenants", ())), "")


class GcsSettings(_Group):
    """Google Cloud Storage: adapters' publication and the corpus copy (`YOYO_GCS_*`)."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}GCS_")

    bucket: str = _setting(
        "", "publication of adapters, and the corpus copy under `<prefix>/corpus/<role>-<tenant>/`"
        " (files, then the night's manifest); none: neither. Credentials are Google's "
        "application default credentials, never in config")
    prefix: str = _setting("adapters", "object name prefix in the bucket")
    project: str | None = _setting(None, "GCS project of the client", shown="from credentials")
    retry_timeout_s: float = _setting(
        120.0, "seconds one GCS request to an unreachable store is retried before publication "
        "fails")


#: The groups, by their attribute on `Settings`.
GROUPS: dict[str, type[_Group]] = {
    "schedule": ScheduleSettings, "inference": InferenceSettings, "graph": GraphSettings,
    "corpus": CorpusSettings, "gcs": GcsSettings}


def _flat_name(group: type[_Group], field: str) -> str:
    """The setting's name without `YOYO_`, lower case: `graph_sink` for `GraphSettings.sink`."""
    return (group.model_config["env_prefix"] + field)[len(ENV_PREFIX):].lower()


#: Each setting's flat name (`YOYO_` + it, upper case, is its variable) -> (group, field).
FLAT_NAMES: dict[str, tuple[str, str]] = {
    _flat_name(group, field): (attr, field)
    for attr, group in GROUPS.items() for field in group.model_fields}


class _Root(_Group):
    """The data root, the one setting that belongs to no group."""

    data_root: Path = _setting(
        Path("var/data"), "documents (`transcripts/`, `research/`, `contacts/`), "
        "`graph/datagraph.lbug`, `corpus/`, `models/`, `logs/`", shown="./var/data")

    @field_validator("data_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()


class Settings(BaseModel):
    """The deployment's settings: the data root and one group per concern (`settings.graph.sink`
    is `YOYO_GRAPH_SINK`); paths are absolute."""

    model_config = ConfigDict(frozen=True)

    data_root: Path
    schedule: ScheduleSettings
    inference: InferenceSettings
    graph: GraphSettings
    corpus: CorpusSettings
    gcs: GcsSettings

    @classmethod
    def from_env(cls, data_root: Path | None = None, **fields) -> Settings:
        """Settings from this process's environment; `data_root`, if given, replaces
        YOYO_DATA_ROOT, and `fields` (flat names: `graph_sink`, `tenants`) replace their
        variables.

        Raises:
            SettingsError: a value that does not parse or is not allowed, naming the variable;
                or a field name that is no setting.
        """
        unknown = sorted(set(fields) - set(FLAT_NAMES))
        if unknown:
            raise SettingsError(f"no such setting: {', '.join(map(variable, unknown))}")
        given = {attr: {} for attr in GROUPS}
        for name, value in fields.items():
            attr, field = FLAT_NAMES[name]
            given[attr][field] = value
        root = {"data_root": data_root} if data_root is not None else {}
        parts = {"data_root": _validated(_Root, root).data_root}
        parts.update({attr: _validated(GROUPS[attr], values)
                      for attr, values in given.items()})
        return cls(**parts)

    @property
    def adapters_root(self) -> Path:
        """Adapter versions' root: YOYO_ADAPTERS_ROOT, else `<data root>/adapters`."""
        return (self.corpus.adapters_root or self.data_root / "adapters").resolve()

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


def _validated(group: type[_Group], values: dict) -> _Group:
    try:
        return group(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{variable(_flat_name(group, str(e['loc'][0])))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(problems) from None


def variable(name: str) -> str:
    """The environment variable of the setting with flat name `name`: `YOYO_<NAME>`."""
    return f"{ENV_PREFIX}{name.upper()}"


def declared_default(name: str):
    """The default of the setting with flat name `name` (`graph_sink`), for a resource or
    function that takes the same value: the figure is written once, here."""
    attr, field = FLAT_NAMES[name]
    return GROUPS[attr].model_fields[field].default


#: Variables read outside `Settings`: (name, default shown, meaning).
OTHER_VARIABLES = (
    ("YOYO_CRASH_POINTS", "none", "fault-injection tests only: crash points that SIGKILL the "
     "process (`shared/faults.py`)"),
    ("DAGSTER_HOME", "./var/dagster_home", "the command line's Dagster instance (seeded with "
     "`dagster.yaml`)"),
    ("YOYO_WEBSERVER_HOST", "127.0.0.1", "`scripts/dagster-dev.sh` only: the UI's address"),
    ("YOYO_WEBSERVER_PORT", "3000", "`scripts/dagster-dev.sh` only: the UI's port"),
)


def _shown(field) -> tuple[str, str]:
    """(default as the README shows it, meaning) of one declared setting."""
    extra = field.json_schema_extra or {}
    if "shown" in extra:
        shown = extra["shown"]
    elif field.default in ("", None, ()):
        shown = "none"
    elif isinstance(field.default, tuple):
        shown = ",".join(field.default)
    else:
        shown = str(field.default)
    return shown, field.description


def settings_table() -> str:
    """The README's settings table (markdown): one row per variable, from the declarations,
    group by group (its attribute on `Settings`), then the variables read elsewhere."""
    rows = [("", variable("data_root"), *_shown(_Root.model_fields["data_root"]))]
    rows += [(f"`{attr}`", variable(_flat_name(group, name)), *_shown(field))
             for attr, group in GROUPS.items() for name, field in group.model_fields.items()]
    rows += [("", name, shown, meaning) for name, shown, meaning in OTHER_VARIABLES]
    return "\n".join(["| group | variable | default | meaning |", "|---|---|---|---|",
                      *(f"| {group} | `{name}` | {shown} | {meaning} |"
                        for group, name, shown, meaning in rows)])


def crash_points() -> set[str]:
    """YOYO_CRASH_POINTS, read at each crash point (a test sets it for one child process)."""
    return {p for p in os.environ.get("YOYO_CRASH_POINTS", "").split(",") if p}


def dagster_home() -> Path:
    """$DAGSTER_HOME, else ./var/dagster_home (absolute); the command line's instance."""
    return Path(os.environ.get("DAGSTER_HOME") or "var/dagster_home").resolve()
