"""A night of Phase 1 end to end: real Dagster instance, real vLLM server, real LadybugDB file,
real corpora. Re-running adds nothing; SIGKILL at any point loses and double-counts nothing;
the same holds through the reference graph service (the `service` sink), down or killed (the
crash tests on the shipped demo documents: what a night survives does not depend on them)."""

import os
import signal

import pytest
from dagster import AssetKey, DagsterInstance

from yoyo_assets.definitions import build_definitions
from yoyo_assets.datagraph.graph.client import GraphServiceClient
from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.datagraph.resources import GraphStore

from .helpers import (DEMO, NIGHT, WHOLE_DOCUMENTS, GraphService, arrived_during,
                      check_graph_invariants,
                      copy_documents, corpus_night, demo_night, graph_snapshot, metadata,
                      run_night_process)

pytestmark = pytest.mark.slow


def test_same_night_twice_gives_the_same_graph(corpora, external_server, dagster_home, tmp_path):
    root = tmp_path / "data"
    # A short transcript (the corpus ones take minutes on a CPU; chunking: test_extraction).
    expected = corpus_night(corpora, root, transcripts=0) + len(copy_documents(
        [DEMO / "transcripts" / "2026-11-21-ops-standup.md"],
        root, "transcripts", arrived_during(NIGHT)))
    broken = root / "contacts" / "broken.json"
    broken.write_text('{\n  "name": "Half a record",\n')
    os.utime(broken, (arrived_during(NIGHT),) * 2)
    defs = build_definitions(root, external_server)
    job = defs.resolve_job_def("datagraph_nightly")
    instance = DagsterInstance.get()
    whole = {"ops": {"extracted_entities": {"config": WHOLE_DOCUMENTS}}}

    first = job.execute_in_process(partition_key=NIGHT, instance=instance, run_config=whole)
    assert first.success
    found = metadata(first, "documents")
    assert found["documents"] == expected
    assert found["documents_transcripts"] == 1 and found["documents_contacts"] == 3
    assert found["rejected"] == 1
    [rejection] = found["rejections"]
    assert rejection["file"] == str(broken) and rejection["line"] == 3
    assert "malformed JSON" in rejection["reason"]
    extracted = metadata(first, "extracted_entities")
    assert extracted["documents_ok"] + extracted["documents_failed"] == expected
    assert extracted["documents_ok"] >= expected - 1, extracted["failures"]
    assert extracted["entities"] > 0 and extracted["prompt_tokens"] > 0
    written = metadata(first, "datagraph")
    assert written["run_entities_created"] > 0 and written["run_relationships_written"] > 0
    assert written["run_documents_recorded"] == extracted["documents_ok"]
    assert written["night_documents"] == extracted["documents_ok"]
    graph_path = root / "graph" / "datagraph.lbug"
    counts = check_graph_invariants(graph_path)
    assert counts["documents"] == extracted["documents_ok"]
    # The same extractions written through the reference graph service give the same graph.
    service = GraphService(tmp_path / "service.lbug", tmp_path / "service.log")
    service.start()
    try:
        through = build_definitions(root, external_server, resources={"graph_store": GraphStore(
            path=str(tmp_path / "unused.lbug"), sink="service", service_url=service.url)})
        served = through.resolve_job_def("datagraph_nightly").execute_in_process(
            partition_key=NIGHT, instance=instance, asset_selection=[AssetKey("datagraph")])
    finally:
        service.stop()
    assert served.success
    assert metadata(served, "datagraph")["run_documents_recorded"] == counts["documents"]
    assert graph_snapshot(service.graph_path) == graph_snapshot(graph_path)

    second = job.execute_in_process(partition_key=NIGHT, instance=instance, run_config=whole)
    assert second.success
    again = metadata(second, "documents")
    assert again["documents"] == extracted["documents_failed"]  # only failures are retried
    assert again["skipped_already_processed"] == extracted["documents_ok"]
    retried_ok = metadata(second, "extracted_entities")["documents_ok"]
    rewritten = metadata(second, "datagraph")
    assert rewritten["run_documents_recorded"] == retried_ok  # nothing counted twice
    assert rewritten["run_documents_already_recorded"] == 0
    after = check_graph_invariants(graph_path)
    assert after["documents"] == counts["documents"] + retried_ok
    if retried_ok == 0:
        assert after == counts and rewritten["run_entities_created"] == 0
    # The night's totals stay on its latest materialization, whatever this run added.
    assert rewritten["night_documents"] == after["documents"]
    assert rewritten["night_entities"] == written["night_entities"] or retried_ok > 0
    assert rewritten["night_entities"] > 0
    # The materializations are recorded per night in the instance.
    records = instance.fetch_materializations(AssetKey("datagraph"), limit=10).records
    assert {r.partition_key for r in records} == {NIGHT}


def test_sigkill_mid_night_loses_nothing_and_counts_nothing_twice(
        external_server, dagster_home, tmp_path):
    root = tmp_path / "data"
    total = demo_night(root)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file()),
           "YOYO_GRAPH_WRITE_BATCH": "2"}
    graph_path = root / "graph" / "datagraph.lbug"
    log = tmp_path / "runs.log"

    def ledger() -> int:
        with open_graph(graph_path) as graph:
            return graph.counts()["documents"]

    # Killed while extraction requests are in flight: nothing reaches the graph.
    assert run_night_process(env, log, "extraction.after_first_document") == -signal.SIGKILL
    assert ledger() == 0
    # Killed right after the first write transaction committed: exactly that batch is recorded.
    assert run_night_process(env, log, "graph.after_commit") == -signal.SIGKILL
    recorded = ledger()
    assert 1 <= recorded <= 2
    check_graph_invariants(graph_path)
    # Killed inside a write transaction, before COMMIT: it leaves no trace.
    assert run_night_process(env, log, "graph.before_commit") == -signal.SIGKILL
    assert ledger() == recorded
    # Killed after the last write, before Dagster recorded the materialization: the re-run
    # finds those documents in the ledger and writes nothing twice.
    assert run_night_process(env, log, "graph.before_materialization") == -signal.SIGKILL
    assert ledger() >= total - 1  # all but a model failure at most (retried by the next run)
    check_graph_invariants(graph_path)
    # A clean re-run finishes the night.
    assert run_night_process(env, log) == 0, log.read_text()[-3000:]
    counts = check_graph_invariants(graph_path)
    with open_graph(graph_path) as graph:
        paths = {r[0] for r in graph.query("MATCH (d:Document) RETURN d.path")}
    # No document lost: every one is in the ledger, unless the model failed it (retried later).
    assert len(paths) == counts["documents"] >= total - 1
    assert paths <= {str(p) for p in root.glob("*/*")}


def latest_datagraph(instance: DagsterInstance) -> dict:
    [record] = instance.fetch_materializations(AssetKey("datagraph"), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_through_the_graph_service_crashes_and_outages_lose_and_double_nothing(
        external_server, dagster_home, tmp_path):
    root = tmp_path / "data"
    total = demo_night(root)
    service = GraphService(tmp_path / "service" / "datagraph.lbug", tmp_path / "service.log")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file()),
           "YOYO_GRAPH_SINK": "service", "YOYO_GRAPH_SERVICE_URL": service.url,
           "YOYO_GRAPH_SERVICE_ATTEMPTS": "2", "YOYO_GRAPH_WRITE_BATCH": "1"}
    log = tmp_path / "runs.log"
    instance = DagsterInstance.get()

    def ledger() -> int:
        return GraphServiceClient(service.url).counts()["documents"]

    def service_killed_at(point: str) -> None:
        """Restart the service so that it SIGKILLs itself at `point`; run a night into it."""
        service.stop()
        service.start(crash_at=point)
        assert run_night_process(env, log) == 1  # documents deferred: the night is not done
        assert service.process.wait(timeout=60) == -signal.SIGKILL
        service.start()

    service.start()
    try:
        # The run killed before its first mutate request: nothing reaches the graph.
        assert run_night_process(env, log, "graph.before_request") == -signal.SIGKILL
        assert ledger() == 0
        # Killed after the service committed the first batch, before the run recorded it.
        assert run_night_process(env, log, "graph.after_commit") == -signal.SIGKILL
        assert ledger() == 1
        # The service killed inside its transaction (mid-batch): nothing of that batch is
        # written; the night defers what it could not write, with the reason.
        service_killed_at("graph.before_commit")
        assert ledger() == 1
        deferred = latest_datagraph(instance)
        assert deferred["run_documents_deferred"] >= total - 2  # a model failure at most
        assert "unreachable after 2 attempts" in deferred["deferred_batches"][0]["reason"]
        # Killed after committing, before answering: the answer is lost, the batch is not.
        service_killed_at("graph_service.before_response")
        assert ledger() == 2
        # The next run writes what was deferred, and nothing twice.
        assert run_night_process(env, log) == 0, log.read_text()[-3000:]
        assert latest_datagraph(instance)["run_documents_already_recorded"] == 0
        written = ledger()
    finally:
        service.stop()
    assert check_graph_invariants(service.graph_path)["documents"] == written >= total - 1
