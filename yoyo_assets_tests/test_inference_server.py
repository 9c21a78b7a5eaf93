"""The managed server with real processes: the settings it starts vLLM with; a server left by a
killed run is stopped by the next run, and a recycled pid that is not that server is left alone."""

import logging
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch, server_dtype
from yoyo_assets.shared.processes import start_time, stop_process_group


def start_group(command):
    return subprocess.Popen(command, start_new_session=True)


def test_stale_server_of_a_killed_run_is_stopped(tmp_path):
    orphan = start_group(["sleep", "300"])
    (tmp_path / "inference-server.pid").write_text(f"{orphan.pid} {start_time(orphan.pid)}\n")
    server = InferenceServer(launch=ServerLaunch(log_dir=str(tmp_path), shutdown_grace_s=5))
    server._reap_stale_server(logging.getLogger("test"))
    assert not psutil.pid_exists(orphan.pid)  # stopped (and reaped) by the next run
    assert not (tmp_path / "inference-server.pid").exists()


def test_recycled_pid_of_another_program_is_left_alone(tmp_path):
    other = start_group(["sleep", "301"])
    try:
        # The recorded server started earlier: this pid now belongs to another program.
        recorded = start_time(other.pid) - 100
        (tmp_path / "inference-server.pid").write_text(f"{other.pid} {recorded}\n")
        InferenceServer(launch=ServerLaunch(log_dir=str(tmp_path)))._reap_stale_server(
            logging.getLogger("test"))
        assert other.poll() is None
        assert not (tmp_path / "inference-server.pid").exists()
    finally:
        stop_process_group(other.pid, 5, other)


def test_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    ready = tmp_path / "ready"
    stubborn = start_group(["sh", "-c", f"trap '' TERM; touch {ready}; sleep 300 & wait"])
    while not ready.exists():  # SIGTERM before the trap would end it early
        time.sleep(0.05)
    assert stop_process_group(stubborn.pid, 1.0, stubborn) is True
    stubborn.wait(timeout=10)
    deadline = time.monotonic() + 10  # the orphaned `sleep` is reaped by init, not by us
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(stubborn.pid, 0)
            time.sleep(0.1)


def test_the_managed_server_runs_the_model_in_its_engine_process_eagerly(vllm_server):
    """The settings the extraction profile chose (docs/benchmarks.md) reach vLLM: the model runs
    in the engine-core process (no worker process, no busy wait on shared memory), so the
    server's process group holds the API server and its engine core, no worker; no graph
    compilation; the dtype this CPU computes natively; the vLLM cache the environment names (the suite's own)."""
    if vllm_server.mode == "external":
        pytest.skip("YOYO_TEST_VLLM_URL: the session's server was not started here")
    log = open(vllm_server.log_path, encoding="utf-8").read()
    pgid = int((Path(vllm_server.log_path).parent / "inference-server.pid").read_text().split()[0])
    titles = [p.name() for p in psutil.process_iter() if _group_of(p) == pgid]
    assert "VLLM::EngineCore" in titles  # vLLM names its processes (mp's worker: VLLM::Worker*)
    assert not [t for t in titles if "Worker" in t], titles
    assert "multiproc_executor" not in log
    assert "enforce_eager=True" in log
    assert f"dtype=torch.{server_dtype('auto')}" in log
    assert list((Path(os.environ["VLLM_CACHE_ROOT"]) / "modelinfos").glob("*ForCausalLM.json"))


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx avx2 fma", "float32"),  # AVX2 only: bfloat16 would be emulated
    ("avx2 avx512f avx512_bf16", "bfloat16"),
    ("avx2 amx_bf16 amx_tile", "bfloat16")])
def test_auto_dtype_follows_the_cpus_bfloat16_support(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert server_dtype("auto", cpuinfo) == expected
    assert server_dtype("float16", cpuinfo) == "float16"  # a choice is kept as it is
    assert server_dtype("auto", tmp_path / "missing") == "float32"


def test_the_lora_rank_vllm_gets_is_the_largest_its_adapters_state(tmp_path):
    """`--max-lora-rank` comes from the adapters' own PEFT configs, rounded up to a rank vLLM
    accepts: a rank 24 adapter beside a rank 8 one gets 32, and no adapter the recipe's 16."""
    folders = {}
    for name, rank in (("small", 8), ("wide", 24)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(f'{{"r": {rank}}}')
        folders[name] = str(tmp_path / name)
    served = InferenceServer(model_dir=str(tmp_path), lora_modules=folders)
    command = served.command(tmp_path, 8000)
    assert command[command.index("--max-lora-rank") + 1] == "32"
    assert command[command.index("--max-loras") + 1] == "2"
    runtime = InferenceServer(model_dir=str(tmp_path))
    runtime = runtime.model_copy(update={"launch": ServerLaunch(vllm={"runtime_lora": True})})
    command = runtime.command(tmp_path, 8000)
    assert command[command.index("--max-lora-rank") + 1] == "16"


def _group_of(process: psutil.Process) -> int | None:
    """`process`'s process group, None when it has gone (or may not be read)."""
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None
