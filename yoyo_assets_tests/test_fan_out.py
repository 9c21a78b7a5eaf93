"""A night's extraction fanned out over two vLLM servers on loopback (the session server and one
started here), run by Dagster's multiprocess executor: each shard a step of its own, every
document extracted and written once; a server killed mid-night has its shard retried by Dagster
on the other, nothing lost or doubled."""

import logging
import os
import signal
import threading

import httpx
import pytest
from dagster import DagsterInstance, DagsterEventType, execute_job, reconstructable

from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.definitions import build_definitions
from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch, VllmOptions
from yoyo_assets.shared.settings import GPU_POOL

from .helpers import (DEMO, NIGHT, WHOLE_DOCUMENTS, arrived_during, check_graph_invariants,
                      copy_documents, metadata, timeout)

pytestmark = pytest.mark.slow

NEXT_NIGHT = "2026-11-21"


def nightly_job():
    """Phase 1's job as the environment configures it; the executor rebuilds it in each step's
    process from here."""
    return build_definitions().resolve_job_def("datagraph_nightly")


@pytest.fixture
def second_server(model_dir, tmp_path, monkeypatch):
    """A second vLLM server serving the session model: (live endpoint, its pid file). It runs
    one OpenMP thread: with two per server, four threads on two cores spin-wait for cores the
    other server holds (generation fell to 2-6 tokens/s: a shard of two demo contacts took
    88 s; 10 s with one thread)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launch = ServerLaunch(health_timeout_s=timeout(600), log_dir=str(tmp_path / "second"),
                          vllm=VllmOptions(memory_share=0.2))
    server = InferenceServer(mode="managed", model_dir=str(model_dir), launch=launch)
    with server.serving(logging.getLogger("second_server")) as live:
        monkeypatch.delenv("OMP_NUM_THREADS")
        yield live, tmp_path / "second" / "inference-server.pid"


def answered(base_url: str) -> float:
    """Requests the vLLM server at `base_url` has answered (its Prometheus counter)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))


def run_night(instance: DagsterInstance, night: str, concurrency: int = 16):
    config = {**WHOLE_DOCUMENTS, "attempts": 2, "concurrency": concurrency}
    return execute_job(reconstructable(nightly_job), instance, raise_on_error=False,
                       tags={"dagster/partition": night},
                       run_config={"ops": {"extracted_entities": {"config": config}}})


def in_graph(root) -> list[str]:
    with open_graph(root / "graph" / "datagraph.lbug") as graph:
        return [row[0] for row in graph.query("MATCH (d:Document) RETURN d.path")]


def test_a_night_split_over_two_servers_and_one_killed_loses_and_doubles_nothing(
        external_server, second_server, dagster_home, tmp_path, monkeypatch):
    live, pid_file = second_server
    root = tmp_path / "data"
    # The shipped demo documents (one chunk each): the fan-out, not extraction, is under test.
    copy_documents(sorted((DEMO / "contacts").glob("*.json")), root, "contacts",
                   arrived_during(NIGHT))
    for key, value in {"YOYO_DATA_ROOT": str(root), "YOYO_INFERENCE_MODE": "external",
                       "YOYO_INFERENCE_URL": f"{live.base_url},{external_server.url}",
                       "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file())
                       }.items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.get()
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, 2)  # one slot per server

    # Both servers up: two shards, one per server, in steps of their own.
    first = run_night(instance, NIGHT)
    assert first.success
    extracted = metadata(first, "extracted_entities")
    shards = extracted["shards"]
    assert {s["endpoint"] for s in shards} == {live.base_url, external_server.url}
    assert sum(s["documents_ok"] for s in shards) == extracted["documents_ok"]
    assert extracted["documents_ok"] + extracted["documents_failed"] == 4
    shard_steps = {e.step_key for e in first.all_events
                   if e.event_type == DagsterEventType.STEP_SUCCESS
                   and e.step_key.startswith("extracted_entities.extract_shard")}
    assert len(shard_steps) == 2
    assert len(in_graph(root)) == extracted["documents_ok"]

    # The next night, the second server is killed once it has answered a request of the night
    # (one request at a time: its shard's other two documents are still to come): Dagster
    # retries the shard on the session server.
    for stream in ("research", "transcripts"):
        copy_documents(sorted((DEMO / stream).glob("*.*")), root, stream,
                       arrived_during(NEXT_NIGHT))
    before, killed = answered(live.base_url), threading.Event()

    def kill_when_busy() -> None:
        while not killed.wait(0.1):
            try:
                if answered(live.base_url) > before:
                    os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                    killed.set()
            except httpx.HTTPError:
                return

    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    second = run_night(instance, NEXT_NIGHT, concurrency=1)
    killed.set()
    watcher.join()
    assert second.success
    retried = [e for e in second.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retried] and all(
        e.step_key.startswith("extracted_entities.extract_shard") for e in retried)
    extracted = metadata(second, "extracted_entities")
    assert {s["endpoint"] for s in extracted["shards"]} == {external_server.url}
    assert extracted["documents_deferred"] == 0
    assert extracted["documents_ok"] + extracted["documents_failed"] == 6
    paths = in_graph(root)
    assert len(paths) == len(set(paths)) == metadata(first, "extracted_entities")[
        "documents_ok"] + extracted["documents_ok"]
    check_graph_invariants(root / "graph" / "datagraph.lbug")
