"""Helpers the tests share: where things are, timeouts for a busy machine, documents dated to a
night, child processes that are always stopped, and a GCS emulator.

YOYO_TEST_TIMEOUT_SCALE (default 1) multiplies every wait of the suite: set 2 or 3 on a machine
that is busy with other work instead of editing tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import httpx
from dagster import AssetKey

from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.definitions import build_definitions
from yoyo_assets.shared.atomic import staged_folder
from yoyo_assets.shared.partitions import nights_partitions
from yoyo_assets.shared.processes import stop_process_group
from yoyo_assets.shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("YOYO_TEST_CACHE", REPO_ROOT / "var" / "test-cache"))
CORPORA = Path(os.environ.get("YOYO_CORPORA", REPO_ROOT.parent / "shared" / "corpora"))
DEMO = REPO_ROOT / "yoyo_assets" / "demo_data"
TIMEOUT_SCALE = float(os.environ.get("YOYO_TEST_TIMEOUT_SCALE", "1"))
#: The night most tests run.
NIGHT = "2026-11-20"


def timeout(seconds: float) -> float:
    """`seconds` scaled by YOYO_TEST_TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


def arrived_during(night: str) -> float:
    """Unix time three hours into `night`: a file with this mtime arrived during it."""
    nights = nights_partitions(Settings.from_env())
    return (nights.time_window_for_partition_key(night).start + timedelta(hours=3)).timestamp()


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


#: Decoder layers kept by `shallow_copy` (SmolLM2-135M has 30).
SHALLOW_LAYERS = 4


def shallow_copy(model_dir: Path, layers: int = SHALLOW_LAYERS) -> Path:
    """`<model_dir>-<layers>-layers` beside `model_dir`: its causal LM with only the first
    `layers` decoder layers, and its tokenizer; written whole (staged, then renamed) once."""
    target = model_dir.with_name(f"{model_dir.name}-{layers}-layers")
    if not (target / "config.json").is_file():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
        with staged_folder(target) as staging:
            model.save_pretrained(staging)
            AutoTokenizer.from_pretrained(model_dir).save_pretrained(staging)
    return target


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def child_group(command: list[str], grace_s: float = 10, **popen) -> Iterator[subprocess.Popen]:
    """`command` in its own process group for the block; afterwards, even when the test fails,
    the whole group gets SIGTERM, SIGKILL after `grace_s`, and the leader is reaped."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    try:
        yield process
    finally:
        stop_process_group(process.pid, grace_s, process)


def run_with_timeout(command: list[str], seconds: float, **popen) -> int:
    """Run `command` in its own process group; its exit status (negative: killed by that
    signal). Past `seconds` (scaled), or when the test ends, the group is killed and reaped."""
    with child_group(command, grace_s=5, **popen) as process:
        try:
            return process.wait(timeout=timeout(seconds))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


class Emulator:
    """gcp-storage-emulator on a loopback port, in memory or (with `data_dir`) on disk, so that
    objects outlive a stop; `start()` / `stop()`. It ignores SIGTERM at times: `stop()` kills
    its process group after a grace and reaps it."""

    def __init__(self, port: int, data_dir: Path | None = None):
        self.port, self.process, self.data_dir = port, None, data_dir
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        storage = ["--in-memory"] if self.data_dir is None else []
        env = {**os.environ, "STORAGE_BASE": str(self.data_dir or ".")}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host",
             "127.0.0.1", "--port", str(self.port), *storage],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout(30)
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gcp-storage-emulator did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process.pid, timeout(5), self.process)


class GraphService:
    """The reference graph service (`python -m yoyo_assets graph-service`) over `graph_path` on
    a loopback port, with more command-line `options` and a bearer `token`; `start(crash_at)`
    (a crash point of the service process) / `stop()`."""

    def __init__(self, graph_path: Path, log: Path, max_batch_documents: int = 1024,
                 options: tuple[str, ...] = (), token: str = ""):
        self.graph_path, self.log, self.process = graph_path, log, None
        self.max_batch_documents, self.options, self.token = max_batch_documents, options, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, crash_at: str = "") -> None:
        env = {**os.environ, "YOYO_CRASH_POINTS": crash_at,
               "YOYO_GRAPH_SERVICE_TOKEN": self.token}
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "yoyo_assets", "graph-service", "--graph",
                 str(self.graph_path), "--port", str(self.port), "--max-batch-documents",
                 str(self.max_batch_documents), *self.options],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout(60)
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"graph service did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process.pid, timeout(10), self.process)
            self.process = None


def corpus_night(corpora: Path, root: Path, transcripts=1, research=2, contacts=3) -> int:
    """Copy a few real documents into `root`, arrived during NIGHT; returns how many."""
    when = arrived_during(NIGHT)
    by_size = sorted((corpora / "transcripts").glob("*.md"), key=lambda p: p.stat().st_size)
    copied = copy_documents(by_size[:transcripts], root, "transcripts", when)
    copied += copy_documents(sorted((corpora / "research").glob("*.md"))[:research], root,
                             "research", when)
    copied += copy_documents(sorted((corpora / "contacts").glob("*.json"))[:contacts], root,
                             "contacts", when)
    return len(copied)


def demo_night(root: Path, research: int = 1, contacts: int = 3) -> int:
    """Copy shipped demo documents (a few hundred bytes, one chunk each) into `root`, arrived
    during NIGHT; returns how many. For tests of what a night survives, where the documents'
    content is not under test and a real contact record costs ~8 s of CPU extraction."""
    when = arrived_during(NIGHT)
    copied = copy_documents(sorted((DEMO / "research").glob("*.*"))[:research], root,
                            "research", when)
    copied += copy_documents(sorted((DEMO / "contacts").glob("*.json"))[:contacts], root,
                             "contacts", when)
    return len(copied)


def metadata(result, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def check_graph_invariants(graph_path: Path) -> dict:
    """Nothing counted twice: one MENTIONS per (document, entity), each entity's document_count
    equal to its MENTIONS, each document's entity_count equal to its MENTIONS."""
    with open_graph(graph_path) as graph:
        pairs = graph.query("MATCH (d:Document)-[:MENTIONS]->(e:Entity) "
                            "RETURN d.sha256, e.key, count(*) AS n ORDER BY n DESC LIMIT 1")
        assert not pairs or pairs[0][2] == 1, pairs
        wrong_entities = graph.query(
            "MATCH (d:Document)-[:MENTIONS]->(e:Entity) WITH e, count(d) AS n "
            "WHERE n <> e.document_count RETURN e.key, n, e.document_count")
        assert wrong_entities == []
        wrong_documents = graph.query(
            "MATCH (d:Document) OPTIONAL MATCH (d)-[m:MENTIONS]->(:Entity) "
            "WITH d, count(m) AS n WHERE n <> d.entity_count RETURN d.path, n, d.entity_count")
        assert wrong_documents == []
        return graph.counts()


def graph_snapshot(graph_path: Path) -> dict:
    """Every node and relationship of a graph file, by key, with its properties (all but the
    time a document was processed)."""
    with open_graph(graph_path) as graph:
        return {
            "documents": sorted(graph.query(
                "MATCH (d:Document) RETURN d.sha256, d.path, d.stream, d.night, "
                "d.entity_count, d.extractor")),
            "entities": sorted(graph.query(
                "MATCH (e:Entity) RETURN e.key, e.name, e.type, list_sort(e.spellings), "
                "e.first_night, e.last_night, e.document_count")),
            "mentions": sorted(graph.query(
                "MATCH (d:Document)-[m:MENTIONS]->(e:Entity) RETURN d.sha256, e.key, m.mentions")),
        }


#: Phase 1 reading whole documents with no worked example and naming at most four entities
#: each: one short answer per document, for tests of crashes and counting, whose subject is
#: what is written, not how much (a CPU answers ~10 tokens/s: the answer's length is the
#: night's cost; chunking and quality: test_extraction, test_quality).
WHOLE_DOCUMENTS = {"max_chunk_tokens": None, "few_shot": False, "max_entities": 4}


def run_night_process(env: dict, log: Path, crash_at: str = "",
                      extra_args: list[str] = ()) -> int:
    """Run one night in a child process (the README's command reading whole documents, with
    `extra_args`), killed at crash point `crash_at` if given; returns its exit status."""
    env = {**env, "YOYO_CRASH_POINTS": crash_at}
    with open(log, "a") as out:
        # Own process group, killed after: a SIGKILL leaves the `tail` processes of Dagster's
        # compute-log capture behind.
        return run_with_timeout([sys.executable, "-m", "yoyo_assets", "night", "--night", NIGHT,
                                 "--extraction-config", json.dumps(WHOLE_DOCUMENTS),
                                 *extra_args], 600, cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


JOB = "adapter_pointsav_engineering"


PUBLISHED = AssetKey(["pointsav", "engineering", "published_adapter"])


#: The serving check asking 4 prompts for 16 answer tokens each (the default: 8 x 48), enough to
#: see that the adapter answers differently.
QUICK_OVERLAY_CHECK = {"overlay_check_prompts": 4, "overlay_check_tokens": 16}

#: Small enough for a CPU test: one epoch, batches of 16 short sequences; a learning rate high
#: enough that the few steps change the adapter's greedy answers (the overlay check).
TINY_TRAINING = {"max_length": 64, "num_train_epochs": 1, "per_device_train_batch_size": 16,
                 "gradient_checkpointing": False, "sft_learning_rate": 1e-3,
                 **QUICK_OVERLAY_CHECK}
TINY = {"ops": {"pointsav__engineering__adapter": {"config": TINY_TRAINING}}}


def write_bucket_file(root: Path, name: str, lines: list[str], night: str) -> None:
    folder = root / "corpus" / "engineering-pointsav"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.utime(path, (arrived_during(night), arrived_during(night)))


def sft_lines(corpora: Path) -> list[str]:
    """100 short SFT tuples (fast to train on a CPU): the shipped demo examples, then the
    shortest hh-rlhf dialogues as prompt/completion (prompt and chosen reply)."""
    demo = DEMO / "corpus" / "engineering-pointsav"
    lines = [line for f in demo.iterdir() for line in f.read_text().splitlines()]
    pairs = (corpora / "apprenticeship" / "hh-rlhf-helpful-base-test.dpo.jsonl").read_text()
    for line in sorted(pairs.splitlines(), key=len)[:100 - len(lines)]:
        pair = json.loads(line)
        lines.append(json.dumps({"prompt": pair["prompt"], "completion": pair["chosen"]}))
    assert len(set(lines)) == 100
    return lines


def make_defs(root: Path, model_dir: Path, resources: dict | None = None, **settings):
    """The project's definitions over the data root `root`, training on `model_dir`, in the
    emulator's GCS project; `settings` set more Settings fields (gcs_bucket, corpus_source,
    adapter_threshold, ...), `resources` replace configured resources by key."""
    return build_definitions(root, base_model_dir=str(model_dir), gcs_project="yoyo-test",
                             resources=resources, **settings)

