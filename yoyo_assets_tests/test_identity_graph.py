"""Identities in the graph (issue 46): anchors from records that carry an id, found again by
surname; each document's person forms linked once to the identity they name, through later
nights, re-runs and a kill -9 inside the transaction."""

import json
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from yoyo_assets.datagraph.graph import identity as graph_identity
from yoyo_assets.datagraph.corrections.stream import read_corrections
from yoyo_assets.datagraph.graph.client import GraphServiceClient
from yoyo_assets.datagraph.graph.identity import ResolvedMention
from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.definitions import build_definitions

from .helpers import (REPO_ROOT, WHOLE_DOCUMENTS, GraphService, arrived_during, metadata,
                      timeout)
from .hostile import write
from .test_graph_store import extraction
from .test_resolution import SCOTTS

NIGHT, NEXT = "2026-11-20", "2026-11-21"
A, B = "a" * 64, "b" * 64
RESOLVED = [
    ResolvedMention(A, "Rep. Scott", "person", "bioguide:S001189", "Austin Scott", "name+place"),
    ResolvedMention(A, "Congressman Scott", "person", "mention:a:congressman scott",
                    "Congressman Scott", "conflict"),
    ResolvedMention(B, "Austin Scott", "person", "bioguide:S001189", "Austin Scott", "name"),
    ResolvedMention(B, "Ada Lovelace", "person", "person:ada lovelace", "Ada Lovelace",
                    "no anchor"),
]
REFERS = ("MATCH (d:Document)-[r:REFERS_TO]->(i:Identity) "
          "RETURN d.sha256, r.name, i.id, r.reason, r.night ORDER BY d.sha256, r.name")


def _two_documents(graph):
    graph.write_extractions([
        extraction(A, [("Rep. Scott", "person"), ("Congressman Scott", "person"),
                       ("Georgia", "location")]),
        extraction(B, [("Austin Scott", "person"), ("Ada Lovelace", "person")])], NIGHT)


def test_anchors_and_resolutions_are_recorded_once(tmp_path):
    with open_graph(tmp_path / "g.lbug") as graph:
        _two_documents(graph)
        assert graph.record_anchors(SCOTTS, NIGHT) == 4
        assert graph.record_anchors(SCOTTS, NEXT) == 0  # updated, not doubled
        assert {a.id for a in graph.anchors_named(["scott"])} == {
            "bioguide:S001189", "bioguide:S000185", "bioguide:S001184"}
        assert graph.anchors_named(["rochester"]) == [SCOTTS[3]]
        assert graph.anchors_named(["nobody"]) == [] and graph.anchors_named([]) == []

        stats = graph.record_resolutions(RESOLVED, NIGHT)
        assert (stats.resolved, stats.anchored, stats.kept_apart, stats.identities_created) == (
            4, 2, 1, 2)
        again = graph.record_resolutions([*RESOLVED[:1], ResolvedMention(
            A, "Rep. Scott", "person", "bioguide:S000185", "Robert C. Scott", "name")], NEXT)
        assert (again.resolved, again.already_resolved) == (0, 2)  # decided once, kept
        rows = graph.query(REFERS)
        assert [(r[1], r[2], r[4]) for r in rows] == [
            ("Congressman Scott", "mention:a:congressman scott", NIGHT),
            ("Rep. Scott", "bioguide:S001189", NIGHT),
            ("Ada Lovelace", "person:ada lovelace", NIGHT),
            ("Austin Scott", "bioguide:S001189", NIGHT)]
        counts = dict(graph.query("MATCH (i:Identity) RETURN i.id, i.document_count"))
        assert counts["bioguide:S001189"] == 2 and counts["bioguide:S000185"] == 0


CRASHING = """
import sys
from pathlib import Path
from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets_tests.test_identity_graph import RESOLVED, NIGHT, _decisions
with open_graph(sys.argv[1]) as graph:
    graph.record_resolutions(RESOLVED, NIGHT, _decisions(Path(sys.argv[2])))
"""


def test_a_kill_inside_the_transaction_leaves_no_trace_and_the_rerun_records_once(tmp_path):
    """Resolutions and operators' decisions of a night, SIGKILLed before their commit."""
    path = tmp_path / "g.lbug"
    with open_graph(path) as graph:
        _two_documents(graph)
        graph.record_anchors(SCOTTS, NIGHT)
    killed = subprocess.run([sys.executable, "-c", CRASHING, str(path), str(tmp_path)],
                            cwd=REPO_ROOT,
                            env={**__import__("os").environ,
                                 "YOYO_CRASH_POINTS": "identity.before_commit"},
                            timeout=timeout(120))
    assert killed.returncode == -9
    with open_graph(path) as graph:
        assert graph.query(REFERS) == []
        assert graph.query("MATCH (i:Identity) WHERE NOT i.anchored RETURN count(*)")[0][0] == 0
        assert graph.query("MATCH (x:IdentityDecision) RETURN count(*)")[0][0] == 0
        stats = graph.record_resolutions(RESOLVED, NIGHT, _decisions(tmp_path))
        assert (stats.resolved, stats.decisions_applied) == (4, 2)
        assert len(graph.query(REFERS)) == 4


SCOTT_RECORD = ('{"id": "bioguide:S001189", "name": "Austin Scott", "first_name": "Austin", '
                '"last_name": "Scott", "title": "U.S. Representative for Georgia\'s 8th '
                'congressional district", "represents": "Georgia"}')


def test_a_night_resolves_its_person_mentions_in_the_lineage(external_server, dagster_home,
                                                              tmp_path):
    """`resolved_mentions` after `datagraph`: the contact record with an id becomes an anchor
    that its own document refers to; every resolved form is in the graph once; a re-run of
    the night resolves nothing again."""
    root = tmp_path / "data"
    write(root / "contacts" / "austin-scott.json", SCOTT_RECORD)
    write(root / "research" / "vote.md", "Austin Scott met Ada Lovelace after the vote.\n")
    job = build_definitions(root, external_server).resolve_job_def("datagraph_nightly")
    config = {"ops": {"extracted_entities": {"config": WHOLE_DOCUMENTS}}}
    first = job.execute_in_process(partition_key=NIGHT, instance=DagsterInstance.get(),
                                   run_config=config)
    assert first.success
    found = metadata(first, "resolved_mentions")
    assert found["anchors_recorded"] == 1 and found["anchors_new"] == 1
    assert found["mentions_resolved"] >= 1 and found["resolved_by_record_id"] == 1
    with open_graph(root / "graph" / "datagraph.lbug") as graph:
        rows = graph.query(REFERS)
        assert len(rows) == found["mentions_resolved"]
        assert ("Austin Scott", "bioguide:S001189", "record id") in {(r[1], r[2], r[3])
                                                                      for r in rows}
    again = job.execute_in_process(partition_key=NIGHT, instance=DagsterInstance.get(),
                                   run_config=config)
    assert metadata(again, "resolved_mentions")["mentions_resolved"] == 0


@pytest.fixture
def both_sinks(tmp_path):
    """The graph service's client and an embedded graph; after the test, the two files must
    hold the same identities and references."""
    service = GraphService(tmp_path / "service.lbug", tmp_path / "service.log")
    service.start()
    client = GraphServiceClient(service.url, attempts=2)
    try:
        with open_graph(tmp_path / "embedded.lbug") as embedded:
            yield client, embedded
            expected = embedded.query(REFERS), embedded.query(IDENTITIES)
    finally:
        client.close()
        service.stop()
    with open_graph(tmp_path / "service.lbug") as served:
        assert (served.query(REFERS), served.query(IDENTITIES)) == expected


IDENTITIES = ("MATCH (i:Identity) RETURN i.id, i.name, i.type, i.anchored, i.given_names, "
              "i.surnames, i.role, i.region, i.groups, i.first_night, i.last_night, "
              "i.document_count ORDER BY i.id")


def test_the_service_records_the_identities_the_embedded_sink_records(both_sinks):
    client, embedded = both_sinks
    for sink in (client, embedded):
        _two_documents(sink)
        assert sink.record_anchors(SCOTTS, NIGHT) == 4
        assert sink.anchors_named(["scott", "rochester"]) and \
            sorted(a.id for a in sink.anchors_named(["scott"])) == sorted(
                a.id for a in SCOTTS[:3])
        assert vars(sink.record_resolutions(RESOLVED, NIGHT)) == vars(
            graph_identity.IdentityStats(4, 0, 2, 2, 1))
        assert sink.record_resolutions(RESOLVED, NEXT).already_resolved == 4
        assert sink.identity("bioguide:S000000") is None
    views = [sink.identity(i) for sink in (client, embedded)
             for i in ("bioguide:S001189", "mention:a:congressman scott")]
    assert views[:2] == views[2:]
    austin = views[0]
    assert (austin.name, austin.anchored, austin.document_count) == (
        "Austin Scott", True, 2)
    assert austin.forms == ["Rep. Scott", "Austin Scott"]
    assert [r[0] for r in austin.references] == [A, B]
    assert len(embedded.identity("bioguide:S001189", limit=1).references) == 1


def decision_line(**record) -> str:
    return json.dumps({"by": "ana", "at": "2026-11-21T01:00Z", **record})


SAME = decision_line(same=["person:ada lovelace", "bioguide:S001189"])
NOT_SAME = decision_line(not_same={"document": B, "name": "Austin Scott",
                                   "identity": "bioguide:S001189"})


def test_decision_lines_are_read_beside_corrections_and_bad_ones_rejected(tmp_path):
    folder = tmp_path / "corrections"
    bad = {
        2: (decision_line(same=["x"]), "at same: ['x'] is too short"),
        3: (decision_line(same=["x", "x"]), "the same as itself"),
        4: (decision_line(not_same={"document": B, "name": "A"}), "'identity' is a required"),
        5: (decision_line(same=["x", "y"], not_same={"document": B, "name": "A",
                                                      "identity": "x"}), "valid under each"),
        6: (decision_line(same=["x", "y"], at="yesterday"), "at at:"),
        7: (decision_line(same=["x\u0000", "y"]), "control character"),
    }
    write(folder / "ids.jsonl", "\n".join([SAME, *(t for t, _ in bad.values()), NOT_SAME])
          + "\n")
    scan = read_corrections(tmp_path, arrived_during(NEXT))
    assert [d.kind for d in scan.decisions] == ["same", "not_same"]
    assert scan.decisions[0].identities == ["person:ada lovelace", "bioguide:S001189"]
    got = {r.line: r.reason for r in scan.rejected}
    assert set(got) == set(bad), got
    for line, (_, reason) in bad.items():
        assert reason in got[line], (line, got[line])
    assert read_corrections(tmp_path, arrived_during(NIGHT)).decisions == []  # made later


def _decisions(tmp_path) -> list:
    write(tmp_path / "corrections" / "ids.jsonl", SAME + "\n" + NOT_SAME + "\n")
    return read_corrections(tmp_path, arrived_during(NEXT)).decisions


def test_an_anchor_merged_into_another_is_no_longer_a_candidate(tmp_path):
    """Two records of one person (`same`): a short form that fits both is not ambiguous."""
    write(tmp_path / "corrections" / "ids.jsonl", decision_line(
        same=["bioguide:S001189", "bioguide:S000185"]) + "\n")
    decisions = read_corrections(tmp_path, arrived_during(NEXT)).decisions
    with open_graph(tmp_path / "g.lbug") as graph:
        graph.record_anchors(SCOTTS, NIGHT)
        assert graph.record_resolutions([], NEXT, decisions).decisions_applied == 1
        assert {a.id for a in graph.anchors_named(["scott"])} == {
            "bioguide:S001189", "bioguide:S001184"}


def test_operators_decisions_hold_through_later_nights_on_both_sinks(both_sinks, tmp_path):
    client, embedded = both_sinks
    decisions = _decisions(tmp_path)
    for sink in (client, embedded):
        _two_documents(sink)
        sink.record_anchors(SCOTTS, NIGHT)
        sink.record_resolutions(RESOLVED, NIGHT)
        # Night 2: the `same` decision alone.
        stats = sink.record_resolutions([], NEXT, decisions[:1])
        assert stats.decisions_applied == 1
        austin = sink.identity("bioguide:S001189")  # same first night: the anchored one kept
        assert set(austin.forms) == {"Rep. Scott", "Austin Scott", "Ada Lovelace"}
        # The read holds the merge: who decided, when, and what it did.
        [(_, kind, by, _, night, outcome)] = austin.decisions
        assert (kind, by, night, outcome) == (
            "same", "ana", NEXT, "merged person:ada lovelace into bioguide:S001189")
        assert sink.identity("person:ada lovelace").decisions == austin.decisions
        assert sink.identity("person:ada lovelace").forms == []
        # Later: the merged id resolves to the kept one; decisions apply once.
        later = ResolvedMention("c" * 64, "Ada Lovelace", "person",
                                "person:ada lovelace", "Ada Lovelace", "no anchor")
        sink.write_extractions([extraction("c" * 64, [("Ada Lovelace", "person")])],
                               "2026-11-22")
        stats = sink.record_resolutions([later], "2026-11-22", decisions)
        assert (stats.decisions_already_applied, stats.decisions_applied) == (1, 1)
        assert sink.identity("bioguide:S001189").document_count == 3
        moved = sink.identity(f"mention:{B}:austin scott")
        assert moved.forms == ["Austin Scott"] and moved.references[0][4].startswith(
            "not bioguide:S001189")
        assert [d[1] for d in moved.decisions] == ["not_same"]
        assert vars(sink.record_resolutions(RESOLVED, "2026-11-23", decisions)) == vars(
            graph_identity.IdentityStats(already_resolved=4,
                                         decisions_already_applied=2))
