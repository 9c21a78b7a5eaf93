"""Shared test fixtures: real parts only.

- `model_dir`: the embedded SmolLM2 model converted once into var/test-cache (reused across runs);
  `shallow_model_dir`: its first 4 decoder layers, for tests of training mechanics.
- `gemma_conversion`: the Gemma model's conversion, started in the background as the session
  starts when its test is selected and the cache lacks it.
- `vllm_server`: one real vLLM server on loopback for the whole session, started by the project's
  own managed InferenceServer.
- `dagster_home`: a Dagster instance in a temporary DAGSTER_HOME with the project's dagster.yaml.
- `corpora`: ../shared/corpora.
- `emulator`: a real gcp-storage-emulator on loopback, STORAGE_EMULATOR_HOST pointing at it.
- every test: the extraction quality check scores one demo note (YOYO_QUALITY_SET; test_quality
  uses the whole demo set), managed vLLM servers take a quarter of the RAM
  (YOYO_VLLM_MEMORY_SHARE), so that one starts beside the session's server, and share one vLLM
  cache (VLLM_CACHE_ROOT).
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from yoyo_assets.shared.embedded_model import GEMMA_MODEL_NAME, ensure_embedded_model
from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch, VllmOptions
from yoyo_assets.shared.processes import stop_process_group

from .helpers import (CORPORA, DEMO, REPO_ROOT, TEST_CACHE, Emulator, free_port, shallow_copy,
                      timeout)


#: The test that `gemma_conversion` starts the work of.
GEMMA_TEST = "test_gemma_is_converted"

#: Fixtures whose tests are `slow` (a server or a training), `corpora` (../shared/corpora).
SLOW_FIXTURES = {"vllm_server", "external_server", "emulator"}


def pytest_collection_modifyitems(items):
    """Mark tests by the fixtures they use; modules mark what fixtures cannot tell."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if "corpora" in item.fixturenames:
            item.add_marker(pytest.mark.corpora)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """After the session: every process the suite started and left running is stopped
    (SIGTERM, then SIGKILL) and reaped, and the session fails naming them."""
    yield
    leftovers, names = [], []
    for process in psutil.Process().children(recursive=True):
        try:
            command = " ".join(process.cmdline())
            # Python's own helper of the multiprocessing the Dagster executor used: it exits
            # with this interpreter.
            if "multiprocessing.resource_tracker" in command:
                continue
            leftovers.append(process)
            names.append(f"{process.pid} {command[:80]}")
            if os.getpgid(process.pid) == os.getpgid(0):  # never the suite's own group
                process.kill()
            else:
                stop_process_group(os.getpgid(process.pid), timeout(10))
        except (ProcessLookupError, psutil.Error):
            pass
    psutil.wait_procs(leftovers, timeout=timeout(10))
    assert not names, f"processes left running by the suite (now killed): {names}"


@pytest.fixture(scope="session", autouse=True)
def test_settings(tmp_path_factory):
    labelled = tmp_path_factory.mktemp("labelled-set")
    demo = DEMO
    note = "research/field-notes.md"
    (labelled / "research").mkdir()
    shutil.copy(demo / note, labelled / note)
    gold = json.loads((demo / "gold.json").read_text())
    (labelled / "gold.json").write_text(json.dumps({note: gold[note]}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOYO_QUALITY_SET", str(labelled))
        patch.setenv("YOYO_VLLM_MEMORY_SHARE", "0.25")
        # One vLLM cache for the suite's servers, as a deployment's nights share theirs: only
        # the first start inspects the model's class (~15 s, in a process of its own).
        patch.setenv("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm-cache")))
        yield


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        message = f"corpora not found at {CORPORA} (../shared/corpora; set YOYO_CORPORA)"
        if os.environ.get("YOYO_REQUIRE_CORPORA") == "1":  # CI: never skipped
            pytest.fail(message)
        pytest.skip(message)
    return CORPORA


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return ensure_embedded_model(TEST_CACHE / "models")


@pytest.fixture(scope="session")
def shallow_model_dir(model_dir) -> Path:
    """The embedded SmolLM2 cut to its first SHALLOW_LAYERS decoder layers: the tests of training
    mechanics (budget and resume, DPO's loss) then do a fraction of the work per step on the
    same tokenizer, width and LoRA target modules. Made once into var/test-cache."""
    return shallow_copy(model_dir)


@pytest.fixture(scope="session", autouse=True)
def gemma_conversion(request, tmp_path_factory
                     ) -> Iterator[tuple[subprocess.Popen, Path] | None]:
    """When the Gemma conversion test is selected and the test cache lacks that model: the
    README's `gemma-model` command, started as the session starts, in a process of its own. Its
    work is mostly one core of GGUF parsing (~50 s on an AVX-512 machine), and the session's first
    minute (the embedded model's conversion, vLLM's start) leaves a core idle; the test waits for
    it. Yields (process, its log) or None; a process still running at the end is stopped."""
    wanted = any(item.name.startswith(GEMMA_TEST) for item in request.session.items)
    if not wanted or (TEST_CACHE / "models" / GEMMA_MODEL_NAME / "config.json").is_file():
        yield None
        return
    log = tmp_path_factory.mktemp("gemma") / "gemma-model.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "yoyo_assets", "gemma-model"], cwd=REPO_ROOT,
            env={**os.environ, "YOYO_DATA_ROOT": str(TEST_CACHE)}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    yield process, log
    if process.poll() is None:
        stop_process_group(process.pid, timeout(10), process)


@pytest.fixture(scope="session")
def vllm_server(model_dir, tmp_path_factory) -> InferenceServer:
    """A running vLLM server; `.base_url`, `.model`, `.tokenizer_file()` as in a run.
    YOYO_TEST_VLLM_URL points the session at a server already running (development only)."""
    url = os.environ.get("YOYO_TEST_VLLM_URL", "")
    launch = ServerLaunch(health_timeout_s=timeout(600), vllm=VllmOptions(memory_share=0.25, runtime_lora=True),
                          log_dir=str(tmp_path_factory.mktemp("vllm-logs")))
    server = InferenceServer(mode="external" if url else "managed", url=url or "unused",
                             model_dir=str(model_dir), launch=launch)
    with server.serving(logging.getLogger("vllm_server")) as running:
        pid_file = Path(launch.log_dir) / "inference-server.pid"
        pgid = int(pid_file.read_text().split()[0]) if not url else None
        yield running
    if pgid is not None:  # teardown stopped the whole process group (vLLM and its engine core)
        assert not pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


@pytest.fixture
def external_server(vllm_server, model_dir) -> InferenceServer:
    """The session server as a run's resource sees it: external mode, serving `model_dir` (the
    base Phase 2 trains extraction adapters on, and loads them into at runtime)."""
    return InferenceServer(mode="external", url=vllm_server.base_url, model=vllm_server.model,
                           model_dir=str(model_dir),
                           tokenizer_path=str(model_dir / "tokenizer.json"))


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def emulator(monkeypatch):
    server = Emulator(free_port())
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    yield server
    server.stop()
