"""Shared test fixtures: real parts only.

- `model_dir`: the embedded SmolLM2 model converted once into var/test-cache (reused across runs).
- `vllm_server`: one real vLLM server on loopback for the whole session, started by the project's
  own managed InferenceServer.
- `dagster_home`: a Dagster instance in a temporary DAGSTER_HOME with the project's dagster.yaml.
- `corpora`: ../shared/corpora.
- `emulator`: a real gcp-storage-emulator on loopback, STORAGE_EMULATOR_HOST pointing at it.
- every test: the extraction quality check scores one demo note (YOYO_QUALITY_SET; test_quality
  uses the whole demo set), and managed vLLM servers take a quarter of the RAM
  (YOYO_VLLM_MEMORY_SHARE), so that one starts beside the session's server.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yoyo_assets.shared.embedded_model import ensure_embedded_model
from yoyo_assets.shared.inference_server import InferenceServer

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("YOYO_TEST_CACHE", REPO_ROOT / "var" / "test-cache"))
CORPORA = Path(os.environ.get("YOYO_CORPORA", REPO_ROOT.parent / "shared" / "corpora"))


@pytest.fixture(scope="session", autouse=True)
def test_settings(tmp_path_factory):
    labelled = tmp_path_factory.mktemp("labelled-set")
    demo = REPO_ROOT / "yoyo_assets" / "demo_data"
    note = "research/field-notes.md"
    (labelled / "research").mkdir()
    shutil.copy(demo / note, labelled / note)
    gold = json.loads((demo / "gold.json").read_text())
    (labelled / "gold.json").write_text(json.dumps({note: gold[note]}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOYO_QUALITY_SET", str(labelled))
        patch.setenv("YOYO_VLLM_MEMORY_SHARE", "0.25")
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
def vllm_server(model_dir, tmp_path_factory) -> InferenceServer:
    """A running vLLM server; `.base_url`, `.model`, `.tokenizer_file()` as in a run.
    YOYO_TEST_VLLM_URL points the session at a server already running (development only)."""
    url = os.environ.get("YOYO_TEST_VLLM_URL", "")
    server = InferenceServer(mode="external" if url else "managed", url=url or "unused",
                             model_dir=str(model_dir), health_timeout_s=600, memory_share=0.25,
                             log_dir=str(tmp_path_factory.mktemp("vllm-logs")))
    with server.serving(logging.getLogger("vllm_server")) as running:
        pid_file = Path(server.log_dir) / "inference-server.pid"
        pgid = int(pid_file.read_text().split()[0]) if not url else None
        yield running
    if pgid is not None:  # teardown stopped the whole process group (vLLM and its engine core)
        assert not pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


@pytest.fixture
def external_server(vllm_server, model_dir) -> InferenceServer:
    """The session server as a run's resource sees it: external mode."""
    return InferenceServer(mode="external", url=vllm_server.base_url, model=vllm_server.model,
                           tokenizer_path=str(model_dir / "tokenizer.json"))


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def copy_documents(sources: list[Path], data_root: Path, stream: str, mtime: float) -> list[Path]:
    """Copy `sources` into `data_root/stream/` with modification time `mtime` (Unix seconds)."""
    folder = data_root / stream
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in sources:
        target = folder / source.name
        shutil.copyfile(source, target)
        os.utime(target, (mtime, mtime))
        copies.append(target)
    return copies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """gcp-storage-emulator on a loopback port, in memory or (with `data_dir`) on disk, so that
    objects outlive a stop; `start()` / `stop()`."""

    def __init__(self, port: int, data_dir: Path | None = None):
        self.port, self.process, self.data_dir = port, None, data_dir
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        storage = ["--in-memory"] if self.data_dir is None else []
        env = {**os.environ, "STORAGE_BASE": str(self.data_dir or ".")}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host",
             "127.0.0.1", "--port", str(self.port), *storage],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gcp-storage-emulator did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def emulator(monkeypatch):
    server = Emulator(free_port())
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    yield server
    if server.process.poll() is None:
        server.stop()
