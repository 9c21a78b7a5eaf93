"""Operators' corrections: the file format and its bad lines, applied in the graph through both
sinks (replacing MENTIONS, counts consistent, once, never undone by an older one), and whole
nights through the command: a night extracts, corrections arrive, the next night applies them
once even when killed before its commit, and they become tuples and DPO pairs that the
extraction bucket's threshold sensor picks up."""

import datetime
import hashlib
import json
import os
import signal

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from yoyo_assets.adapters.corpus import tuple_kind
from yoyo_assets.adapters.registry import versions
from yoyo_assets.datagraph.corrections.stream import Correction, parse_correction, read_corrections
from yoyo_assets.datagraph.extraction.batch import InvalidBatch
from yoyo_assets.datagraph.graph.client import GraphServiceClient
from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.datagraph.graph.wire import CORRECTIONS_PATH

from .helpers import (DEMO, NIGHT, REPO_ROOT, TINY_TRAINING, arrived_during, check_graph_invariants,
                      graph_snapshot, make_defs, run_night_process)
from .test_graph_service import service  # noqa: F401 (fixture)
from .test_graph_store import extraction

A, B, C = "a" * 64, "b" * 64, "c" * 64
NEXT_NIGHT = "2026-11-21"


def line(document=A, entities=(("Ada Lovelace", "person"),), by="ana", at="2026-11-21T10:00Z",
         **more) -> str:
    record = {"document": document, "by": by, "at": at, **more,
              "entities": [{"name": n, "type": t} for n, t in entities]}
    return json.dumps(record)


def correction(**given) -> Correction:
    return parse_correction(line(**given), REPO_ROOT)


def test_bad_lines_are_rejected_with_file_line_and_reason_and_lose_nothing_else(tmp_path):
    (tmp_path / "research").mkdir()
    note = tmp_path / "research" / "n.md"
    note.write_text("Ada Lovelace met Charles Babbage.")
    folder = tmp_path / "corrections"
    folder.mkdir()
    bad = {
        2: ("{not json", "not JSON"),
        3: (line(by=""), "at by:"),
        4: (line(entities=[("Ada", "planet")]), "at entities/0/type:"),
        5: (line(at="2026-11-21 10:00"), "no UTC offset"),
        6: (line(document="A" * 64), "at document:"),
        7: (json.dumps({"entities": [], "by": "ana", "at": "2026-11-21T10:00Z"}),
            "names no document"),
        8: (json.dumps({"path": "../outside.md", "entities": [], "by": "x",
                        "at": "2026-11-21T10:00Z"}), "outside the data root"),
        9: (json.dumps({"path": "research/missing.md", "entities": [], "by": "x",
                        "at": "2026-11-21T10:00Z"}), "No such file"),
        10: (line(surprise=1), "Additional properties"),
        11: (line(entities=[("...", "person")]), "no name left"),
        12: (line(by="a\x1bb"), "by: control character"),
    }
    lines = [line(document=B, at="2026-11-21T09:00Z")] + [text for text, _ in bad.values()] + [
        line(document=B, entities=[], at="2026-11-21T11:00+01:00"),  # 10:00 UTC: later wins
        json.dumps({"path": "research/n.md", "entities": [{"name": "Ada Lovelace",
                    "type": "person"}], "by": "sam", "at": "2026-11-21T12:00:00Z"}),
        line(document=C, at="2026-11-22T00:00:01Z")]  # after the night
    (folder / "day.jsonl").write_text("\n".join(lines) + "\n\n")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe")

    night_end = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc).timestamp()
    scan = read_corrections(tmp_path, night_end)
    rejected = {(r.path.rsplit("/", 1)[1], r.line): r.reason for r in scan.rejected}
    assert set(rejected) == {("binary.jsonl", 0), *(("day.jsonl", n) for n in bad)}
    for number, (_, reason) in bad.items():
        assert reason in rejected[("day.jsonl", number)], (number, rejected)
    note_hash = hashlib.sha256(note.read_bytes()).hexdigest()
    assert {c.document: (c.by, c.at, len(c.entities)) for c in scan.corrections} == {
        B: ("ana", "2026-11-21T10:00:00+00:00", 0),
        note_hash: ("sam", "2026-11-21T12:00:00+00:00", 1)}
    assert scan.later == 1


def mentions_of(graph, sha: str) -> dict:
    return {key: (n, by) for key, n, by in graph.query(
        "MATCH (d:Document {sha256: $s})-[m:MENTIONS]->(e:Entity) "
        "RETURN e.key, m.mentions, m.confirmed_by", {"s": sha})}


def test_a_correction_replaces_mentions_once_and_an_older_one_never_undoes_it(tmp_path):
    path = tmp_path / "g.lbug"
    fix = correction(entities=[("Ada Lovelace", "person"), ("Analytical Engine", "project")])
    with open_graph(path) as graph:
        assert [o.status for o in graph.apply_corrections([fix], NEXT_NIGHT)] == ["waiting"]
        graph.write_extractions([
            extraction(A, [("Ada Lovelace", "person"), ("Denver visit", "company")]),
            extraction(B, [("Ada Lovelace", "person"), ("London", "location")])], NIGHT)
    extracted = graph_snapshot(path)
    with open_graph(path) as graph:
        [preview] = graph.apply_corrections([fix], NEXT_NIGHT, preview=True)
        assert (preview.status, preview.extractor_answer[1]) == ("applicable",
                                                                 ("Denver visit", "company"))
    assert graph_snapshot(path) == extracted  # a preview writes nothing
    with open_graph(path) as graph:
        [outcome] = graph.apply_corrections([fix], NEXT_NIGHT)
        assert (outcome.status, outcome.applied_night) == ("applied", NEXT_NIGHT)
        assert outcome.extractor_answer == [("Ada Lovelace", "person"),
                                            ("Denver visit", "company")]
        # The confirmed entity the extractor had found keeps its count; the new one counts 1;
        # `Denver visit`, named by no document now, is gone.
        assert mentions_of(graph, A) == {"person:ada lovelace": (1, "ana"),
                                         "project:analytical engine": (1, "ana")}
        assert graph.query("MATCH (e:Entity {key: 'company:denver visit'}) RETURN e") == []
        assert graph.query("MATCH (e:Entity {key: 'person:ada lovelace'}) "
                           "RETURN e.document_count") == [[2]]
    check_graph_invariants(path)
    corrected = graph_snapshot(path)
    older = correction(entities=[], at="2026-11-21T09:00Z")
    with open_graph(path) as graph:
        assert [o.status for o in graph.apply_corrections([fix], "2026-11-22")] == \
            ["already_applied"]
        assert [o.status for o in graph.apply_corrections([older], "2026-11-22")] == \
            ["superseded"]
        # A later night's extraction writes its own documents and leaves the corrected one be.
        graph.write_extractions([extraction(A, [("Someone Else", "person")]),
                                 extraction(C, [("Ada Lovelace", "person")])], "2026-11-22")
        assert mentions_of(graph, A) == {"person:ada lovelace": (1, "ana"),
                                         "project:analytical engine": (1, "ana")}
        # A newer correction applies, and the extractor's own answer is still the one kept.
        newer = correction(entities=[], at="2026-11-21T11:00Z", by="sam")
        [outcome] = graph.apply_corrections([newer], "2026-11-22")
        assert outcome.status == "applied" and outcome.extractor_answer[1] == \
            ("Denver visit", "company")
        assert mentions_of(graph, A) == {}
    check_graph_invariants(path)
    assert corrected != graph_snapshot(path)


def test_the_service_applies_corrections_as_the_embedded_sink_does(service, tmp_path):
    client = GraphServiceClient(service.url, attempts=2)
    fixes = [correction(entities=[("Ada Lovelace", "person"), ("Lisbon", "location")]),
             correction(document=B, entities=[]), correction(document=C)]
    with open_graph(tmp_path / "embedded.lbug") as embedded:
        for sink in (client, embedded):
            sink.write_extractions([extraction(A, [("Ada Lovelace", "person")])], NIGHT)
            sink.write_extractions([extraction(B, [("Acme", "company")])], NIGHT)
            statuses = [o.status for o in sink.apply_corrections(fixes, NEXT_NIGHT)]
            assert statuses == ["applied", "applied", "waiting"]
        assert client.apply_corrections(fixes, NEXT_NIGHT) == embedded.apply_corrections(
            fixes, NEXT_NIGHT)
        assert client.counts() == embedded.counts()
    client.close()
    service.stop()
    assert graph_snapshot(service.graph_path) == graph_snapshot(tmp_path / "embedded.lbug")
    check_graph_invariants(service.graph_path)


HOSTILE_CORRECTIONS = [
    ({"night": "2026-02-30"}, "night"),
    ({"corrections": []}, "corrections: List should have at least 1 item"),
    ({"corrections.0.at": "yesterday"}, "corrections.0.at"),
    ({"corrections.0.at": "2026-11-21T10:00:00Z"}, "corrections.0.at"),
    ({"corrections.0.entities.0.key": "person:someone else"}, "corrections.0.entities.0"),
    ({"corrections.0.entities.0.type": "planet"}, "corrections.0.entities.0.type"),
    ({"corrections.0.by": "x" * 201}, "corrections.0.by"),
    ({"corrections.0.document": "../../etc/passwd"}, "corrections.0.document"),
    ({"corrections.0.surprise": 1}, "corrections.0.surprise"),
    ({"corrections.1": "twice"}, "corrections.1: document"),
    ({"corrections.0.entities.2": "twice"}, "corrections.0: entities.2: entity"),
]


def _hostile(change: dict) -> dict:
    """A valid corrections request with `change` applied (a dotted path -> a value; "twice":
    the list's first item appended again)."""
    body = {"night": NEXT_NIGHT, "corrections": [correction(
        entities=[("Ada", "person"), ("Acme", "company")]).model_dump()]}
    for where, value in change.items():
        *parents, last = where.split(".")
        target = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value == "twice":
            target.append(target[0])
        else:
            target[last] = value
    return body


def test_hostile_correction_requests_get_a_4xx_naming_the_field(service):
    for change, field in HOSTILE_CORRECTIONS:
        answer = httpx.post(service.url + CORRECTIONS_PATH, json=_hostile(change))
        assert answer.status_code == 422 and field in answer.json()["detail"], answer.text
    assert httpx.post(service.url + CORRECTIONS_PATH, content=b"{").status_code == 422
    assert httpx.get(service.url + "/healthz").status_code == 200


def test_the_embedded_sink_refuses_a_batch_naming_a_document_twice(tmp_path):
    with open_graph(tmp_path / "g.lbug") as graph:
        with pytest.raises(InvalidBatch, match="corrections.1: document"):
            graph.apply_corrections([correction(), correction(by="sam")], NEXT_NIGHT)


def test_corrections_survive_nights_a_kill_and_become_training_material(
        external_server, dagster_home, model_dir, tmp_path):
    root = tmp_path / "data"
    demo = DEMO
    for name in ("contacts/priya-nair.json", "contacts/tomasz-kowal.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((demo / name).read_bytes())
        os.utime(root / name, (arrived_during(NIGHT),) * 2)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file()),
           "YOYO_ADAPTER_THRESHOLD": "100000"}  # nothing trains in these nights
    graph_path, log = root / "graph" / "datagraph.lbug", tmp_path / "nights.log"
    next_night = ["--night", NEXT_NIGHT]
    buckets = root / "corpus"
    # A correction of a document that arrives the same night: applied after its extraction,
    # SFT tuples but no DPO pair (no answer of the extractor was known before it).
    gold = json.loads((demo / "gold.json").read_text())
    (root / "corrections").mkdir()
    (root / "corrections" / "early.jsonl").write_text(json.dumps({
        "path": "contacts/tomasz-kowal.json", "entities": gold["contacts/tomasz-kowal.json"],
        "by": "sam", "at": "2026-11-20T12:00:00Z"}) + "\n")
    assert run_night_process(env, log) == 0, log.read_text()[-3000:]
    early = (buckets / "extraction-pointsav" / f"corrections-{NIGHT}.jsonl").read_text()
    assert early and '"chosen"' not in early  # SFT tuples only
    assert not (buckets / "apprenticeship-pointsav").exists()  # pairs belong to the extractor
    with open_graph(graph_path) as graph:
        assert sorted(graph.query("MATCH (d:Document)-[m:MENTIONS]->(e:Entity) "
                                  "WHERE m.confirmed_by = 'sam' RETURN e.name")) == \
            sorted([g["name"]] for g in gold["contacts/tomasz-kowal.json"])

    gold = gold["contacts/priya-nair.json"]
    sha = hashlib.sha256((root / "contacts/priya-nair.json").read_bytes()).hexdigest()
    (root / "corrections" / "review.jsonl").write_text(
        json.dumps({"path": "contacts/priya-nair.json", "entities": gold, "by": "ana",
                    "at": "2026-11-21T15:00:00Z"}) + "\n{broken\n")
    before = graph_snapshot(graph_path)
    assert run_night_process(env, log, "corrections.before_commit", next_night) == \
        -signal.SIGKILL
    assert graph_snapshot(graph_path) == before  # killed before the commit: nothing applied
    assert run_night_process(env, log, "", next_night) == 0, log.read_text()[-3000:]
    # The night's summary says how its person mentions were resolved (docs/identity.md).
    assert "person mentions resolved:" in log.read_text().rsplit("night 2026-11-21", 1)[-1]

    check_graph_invariants(graph_path)
    with open_graph(graph_path) as graph:
        confirmed = graph.query(
            "MATCH (d:Document {sha256: $s})-[m:MENTIONS]->(e:Entity) "
            "RETURN e.name, e.type, m.confirmed_by", {"s": sha})
        [[answer, applied_night]] = graph.query(
            "MATCH (c:Correction)-[:CORRECTS]->(d:Document {sha256: $s}) "
            "RETURN c.extractor_answer, c.night", {"s": sha})
    assert applied_night == NEXT_NIGHT
    assert sorted(map(tuple, confirmed)) == sorted((g["name"], g["type"], "ana") for g in gold)
    instance = DagsterInstance.get()
    [record] = instance.fetch_materializations(AssetKey("datagraph"), limit=1).records
    applied = record.asset_materialization.metadata
    assert applied["corrections_applied"].value == 1
    sft = buckets / "extraction-pointsav" / f"corrections-{NEXT_NIGHT}.jsonl"
    records = [json.loads(t) for t in sft.read_text().splitlines()]
    assert records and all(t["source"].startswith("correction:") for t in records)
    tuples = [r for r in records if tuple_kind(r) == "sft"]
    named = {e["name"] for t in tuples
             for e in json.loads(t["messages"][-1]["content"])["entities"]}
    assert named and named <= {g["name"] for g in gold}
    # DPO pairs, in the same file, only where the extractor had answered otherwise.
    pairs = [r for r in records if tuple_kind(r) == "dpo"]
    extractor_was_right = sorted(map(tuple, json.loads(answer))) == sorted(
        (g["name"], g["type"]) for g in gold)
    assert not (pairs and extractor_was_right)
    assert all(pair["chosen"] != pair["rejected"] for pair in pairs)

    # A re-run of the night, and the next night: nothing changes, nothing is written twice.
    corrected, sft_text = graph_snapshot(graph_path), sft.read_text()
    assert run_night_process(env, log, "", next_night) == 0, log.read_text()[-3000:]
    assert run_night_process(env, log, "", ["--night", "2026-11-22"]) == 0
    assert graph_snapshot(graph_path) == corrected and sft.read_text() == sft_text
    assert not (sft.parent / "corrections-2026-11-22.jsonl").exists()

    # Past the threshold, the extraction bucket's sensor asks for a version trained on them.
    pending = sum(len(f.read_text().splitlines())
                  for f in (buckets / "extraction-pointsav").glob("corrections-*.jsonl"))
    defs = make_defs(root, model_dir, adapter_threshold=pending)
    sensor = defs.resolve_sensor_def("pointsav_extraction_corpus_threshold")
    with build_sensor_context(instance=instance, definitions=defs,
                              resources=defs.resources) as context:
        result = sensor.evaluate_tick(context)
    assert [r.job_name or sensor.job_name for r in result.run_requests] == \
        ["adapter_pointsav_extraction"], result.skip_message
    # ... and the run it asks for trains a version on exactly those tuples (whether it then
    # passes its F1 gate on the labelled set is test_extraction_adapter's matter).
    # The session server serves the extraction base: the check loads the version into it.
    defs = make_defs(root, model_dir, {"inference_server": external_server},
                     adapter_threshold=pending)
    defs.resolve_job_def("adapter_pointsav_extraction").execute_in_process(
        partition_key=result.run_requests[0].partition_key, instance=instance,
        raise_on_error=False, run_config={"ops": {
            "pointsav__extraction__adapter": {"config": {**TINY_TRAINING, "max_length": 384}}}})
    [version] = versions(root / "adapters" / "pointsav" / "extraction")
    assert version.manifest.serving_check.served_by.startswith("loaded into")  # no server start
    manifest = version.manifest
    # Every tuple and pair trained, or held out; a lone pair waits (a DPO pass needs two).
    waiting = 1 if len(pairs) == 1 else 0
    assert len(manifest.trained_tuples + manifest.held_out_tuples) == pending - waiting
    assert (manifest.preference_pass is not None) == (len(pairs) >= 2)
