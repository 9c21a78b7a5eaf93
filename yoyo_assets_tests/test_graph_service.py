"""The `service` graph sink against the reference graph service (a real uvicorn process over a
LadybugDB file): the same graph as the embedded sink, idempotent batches, refused and
unreachable requests, and the embedded sink refusing a file the service holds.
(A whole night through the service, with crashes: test_pipeline.)"""

import httpx
import pytest

from yoyo_assets.datagraph.graph_client import (GraphServiceClient, GraphServiceRejected,
                                                GraphServiceUnavailable)
from yoyo_assets.datagraph.graph_store import GraphFileBusy, open_graph
from yoyo_assets.datagraph.graph_wire import MUTATE_PATH, MutateRequest
from yoyo_assets.datagraph.resources import GraphStore

from .helpers import GraphService, free_port, graph_snapshot
from .test_graph_store import extraction

NIGHTS = ("2026-11-20", "2026-11-21")


def batches():
    """Two nights of batches with shared entities across documents and nights."""
    return [
        ([extraction("a" * 64, [("Ada Lovelace", "person"), ("London", "location")]),
          extraction("b" * 64, [("Ada Lovelace", "person"), ("Acme", "company")])], NIGHTS[0]),
        ([extraction("c" * 64, [("ada lovelace", "person"), ("Analytical Engine", "project")],
                     stream="transcripts")], NIGHTS[1]),
    ]


@pytest.fixture
def service(tmp_path):
    running = GraphService(tmp_path / "service" / "graph.lbug", tmp_path / "service.log",
                           max_batch_documents=2)
    running.start()
    yield running
    running.stop()


def test_the_service_builds_the_graph_the_embedded_sink_builds(service, tmp_path):
    client = GraphServiceClient(service.url, attempts=2)
    embedded_path = tmp_path / "embedded.lbug"
    with open_graph(embedded_path) as embedded:
        for batch, night in batches():
            assert client.write_extractions(batch, night) == embedded.write_extractions(batch,
                                                                                       night)
        # Replayed (a retry, or a re-run after a crash): nothing counted twice.
        first, night = batches()[0]
        again = client.write_extractions(first, night)
        assert again.documents_already_recorded == 2 and again.documents_recorded == 0
        # A batch mixing a recorded document and a new one: only the new one is written.
        mixed = [first[0], extraction("d" * 64, [("London", "location")])]
        assert client.write_extractions(mixed, NIGHTS[1]) == embedded.write_extractions(
            mixed, NIGHTS[1])
        assert client.counts() == embedded.counts() == {"documents": 4, "entities": 4,
                                                        "mentions": 7}
        for night in NIGHTS:
            assert client.night_totals(night) == embedded.night_totals(night)
        assert client.known_documents(["a" * 64, "e" * 64]) == {"a" * 64}
    client.close()
    service.stop()
    assert graph_snapshot(service.graph_path) == graph_snapshot(embedded_path)


def test_a_refused_batch_fails_with_the_services_answer(service):
    client = GraphServiceClient(service.url, attempts=2)
    three = [extraction(c * 64, [("Acme", "company")]) for c in "abc"]
    with pytest.raises(GraphServiceRejected, match="413.*over this service's limit of 2"):
        client.write_extractions(three, NIGHTS[0])
    body = MutateRequest.of(three[:1], NIGHTS[0]).model_dump(mode="json")
    body["documents"][0]["entities"][0]["type"] = "planet"
    answer = httpx.post(service.url + MUTATE_PATH, json=body)
    assert answer.status_code == 422 and "documents.0.entities.0.type" in answer.text
    body = MutateRequest.of(three[:1], NIGHTS[0]).model_dump(mode="json")
    body["request_id"] = "0" * 64
    answer = httpx.post(service.url + MUTATE_PATH, json=body)
    assert answer.status_code == 422 and "request_id" in answer.text
    assert client.counts() == {"documents": 0, "entities": 0, "mentions": 0}
    client.close()


def test_an_unreachable_service_is_unavailable_after_the_attempts():
    url = f"http://127.0.0.1:{free_port()}"
    client = GraphServiceClient(url, timeout_s=2, attempts=3, max_wait_s=0.2)
    with pytest.raises(GraphServiceUnavailable, match=f"{url} unreachable after 3 attempts"):
        client.write_extractions([extraction("a" * 64, [("Acme", "company")])], NIGHTS[0])
    client.close()


def test_the_embedded_sink_refuses_the_file_the_service_holds(service):
    store = GraphStore(path=str(service.graph_path))
    with pytest.raises(GraphFileBusy, match=f"graph file {service.graph_path} is open for "
                       "writing in another process.*YOYO_GRAPH_SINK=service"):
        with store.open():
            pass
    through_service = GraphStore(path=str(service.graph_path), sink="service",
                                 service_url=service.url)
    with through_service.open() as graph:
        assert graph.counts()["documents"] == 0
    assert through_service.location() == service.url
