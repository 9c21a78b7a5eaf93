"""Property-based tests of the graph store (hypothesis): batches generated near the wire format
(hostile strings with lone surrogates and control characters, repeated documents and entities,
numbers of every JSON type and size, keys that do not match, nights that are not dates) and
arbitrary JSON, sent to the running graph service and given to the embedded writer.

Whatever is sent: never a 5xx, never a crash, every refusal names a field, and afterwards the
graph's counts agree with what was accepted (helpers.check_graph_invariants)."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yoyo_assets.datagraph.extraction.extractor import (ENTITY_TYPES, DocumentExtraction,
                                                        ExtractedEntity, entity_key)
from yoyo_assets.datagraph.extraction.batch import InvalidBatch
from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.datagraph.graph.wire import KNOWN_PATH, MUTATE_PATH, request_id

from .helpers import GraphService, check_graph_invariants

EXAMPLES = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

#: Any character, with lone surrogates and control characters over-represented.
hostile_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs", "Cc"])),
                       max_size=30)
names = st.one_of(st.sampled_from(["Ada Lovelace", "London", "Acme", "ACME", "ada lovelace"]),
                  hostile_text)
numbers = st.one_of(st.integers(-3, 5), st.integers(2**62, 2**66), st.booleans(),
                    st.floats(allow_nan=False), st.sampled_from(["3", None]))
hashes = st.one_of(st.sampled_from([c * 64 for c in "abcd"]), hostile_text)


@st.composite
def wire_entities(draw):
    name = draw(names)
    type_ = draw(st.sampled_from([*ENTITY_TYPES, "planet"]))
    key = draw(st.one_of(st.just(entity_key(name, type_)), hostile_text))
    return {"key": key, "name": name, "type": type_,
            "aliases": draw(st.lists(names, max_size=3)),
            "mentions": draw(st.one_of(st.integers(1, 50), numbers))}


@st.composite
def wire_documents(draw):
    return {"sha256": draw(hashes), "path": draw(st.one_of(st.just("/d/x.md"), hostile_text)),
            "stream": draw(st.sampled_from(["research", "contacts", "transcripts", "\ud800"])),
            "extractor": draw(st.one_of(st.just("model"), hostile_text)),
            "entities": draw(st.lists(wire_entities(), max_size=4))}


nights = st.one_of(st.sampled_from(["2026-11-20", "2026-11-21"]),
                   st.sampled_from(["2026-13-45", "2026-02-30", "２０２６-11-20"]), hostile_text)
batches = st.tuples(st.lists(wire_documents(), min_size=1, max_size=4), nights)

arbitrary_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12)


def mutate_body(documents, night):
    ids = [d["sha256"] for d in documents if isinstance(d["sha256"], str)]
    return {"request_id": request_id(ids), "night": night, "documents": documents}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-service")
    running = GraphService(folder / "graph.lbug", folder / "service.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(service):
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


def _post(http: httpx.Client, path: str, body) -> httpx.Response:
    # ensure_ascii: a lone surrogate goes out as the escape `\ud800`, as JSON allows.
    return http.post(path, content=json.dumps(body).encode(),
                     headers={"content-type": "application/json"})


@EXAMPLES
@given(batch=batches)
def test_the_service_answers_every_batch_with_2xx_or_a_4xx_naming_a_field(http, batch):
    documents, night = batch
    answer = _post(http, MUTATE_PATH, mutate_body(documents, night))
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert ":" in answer.json()["detail"]


@EXAMPLES
@given(body=arbitrary_json)
def test_the_service_answers_arbitrary_json_with_a_4xx(http, body):
    for path in (MUTATE_PATH, KNOWN_PATH):
        answer = _post(http, path, body)
        assert answer.status_code == 422, answer.text


def test_after_the_fuzzing_the_service_is_up_and_its_graph_consistent(service):
    assert service.process.poll() is None, "the service died"
    counts = httpx.get(service.url + "/v1/graph/counts").json()
    service.stop()
    assert check_graph_invariants(service.graph_path) == counts
    assert counts["documents"] > 0, "no generated batch was valid: the fuzzing tried nothing"


def _extraction(document: dict) -> DocumentExtraction:
    return DocumentExtraction(
        sha256=document["sha256"], stream=document["stream"], path=document["path"], chunks=1,
        extractor=document["extractor"],
        entities=[ExtractedEntity(e["key"], e["name"], e["type"], e["aliases"], e["mentions"])
                  for e in document["entities"]])


def test_the_embedded_writer_refuses_what_it_cannot_store_and_stays_consistent(tmp_path):
    path = tmp_path / "graph.lbug"
    with open_graph(path) as graph:
        @EXAMPLES
        @given(batch=batches)
        def write(batch):
            documents, night = batch
            try:
                graph.write_extractions([_extraction(d) for d in documents], night)
            except InvalidBatch as refused:
                assert ":" in str(refused)
        write()
    assert check_graph_invariants(path)["documents"] > 0, "no generated batch was valid"
