"""The graph store on a real LadybugDB file: idempotent batched writes, the ledger, hostile
names as data, batches that break the rules refused before LadybugDB sees them, write plans
that look nodes up by key, large writes bulk-copied to the same graph, and one shared Database
per process."""

import dataclasses
import gc
import subprocess
import sys

import ladybug
import pytest

from yoyo_assets.datagraph.extraction import batch as graph_batch
from yoyo_assets.datagraph.graph import store as graph_store
from yoyo_assets.datagraph.extraction.extractor import (ENTITY_TYPES, DocumentExtraction,
                                                        ExtractedEntity, entity_key)
from yoyo_assets.datagraph.extraction.batch import InvalidBatch
from yoyo_assets.datagraph.graph.bulk import BULK_ROWS, copy_new_rows
from yoyo_assets.datagraph.graph.store import WRITE_STATEMENTS, batch_rows, open_graph

from .helpers import REPO_ROOT, check_graph_invariants, graph_snapshot


def extraction(sha, names, stream="research"):
    entities = [ExtractedEntity(entity_key(n, t), n, t, [n], 1 + i)
                for i, (n, t) in enumerate(names)]
    return DocumentExtraction(sha, stream, f"/data/{stream}/{sha}.md", entities, chunks=1)


def test_writes_are_idempotent_and_count_documents_once(tmp_path):
    path = tmp_path / "graph" / "g.lbug"
    batch = [extraction("a" * 64, [("Ada Lovelace", "person"), ("London", "location")]),
             extraction("b" * 64, [("Ada Lovelace", "person"), ("Acme", "company")])]
    with open_graph(path) as graph:
        first = graph.write_extractions(batch, "2026-11-20")
        assert (first.entities_created, first.entities_updated) == (3, 0)
        assert (first.documents_recorded, first.relationships_written) == (2, 4)
        again = graph.write_extractions(batch, "2026-11-21")
        assert vars(again) == {"entities_created": 0, "entities_updated": 0,
                               "documents_recorded": 0, "relationships_written": 0,
                               "documents_already_recorded": 2}
        later = graph.write_extractions(
            [extraction("c" * 64, [("ada lovelace", "person")])], "2026-11-22")
        assert (later.entities_created, later.entities_updated) == (0, 1)
    with open_graph(path) as graph:  # reopened: everything persisted
        assert graph.counts() == {"documents": 3, "entities": 3, "mentions": 5}
        ada = graph.query("MATCH (e:Entity {key: $k}) RETURN e.document_count, e.first_night, "
                          "e.last_night, e.spellings", {"k": "person:ada lovelace"})[0]
        assert ada[:3] == [3, "2026-11-20", "2026-11-22"]
        assert sorted(ada[3]) == ["Ada Lovelace", "ada lovelace"]
        assert graph.known_documents(["a" * 64, "d" * 64]) == {"a" * 64}
        # Mention counts: Ada 1 in a, 1 in b; London 2 in a; Acme 2 in b.
        first_night = graph.night_totals("2026-11-20", sample=2)
        assert (first_night.documents, first_night.entities, first_night.mentions) == (2, 3, 6)
        assert first_night.entities_by_type == {"person": 1, "company": 1, "project": 0,
                                                "account": 0, "location": 1}
        assert first_night.sample == [("Acme", "company", 2), ("Ada Lovelace", "person", 2)]
        assert graph.night_totals("2026-11-21").documents == 0  # written again: counted once


def test_hostile_names_are_stored_as_data(tmp_path):
    hostile = [
        ("x'}) DETACH DELETE e //", "person"),
        ('"; MATCH (n) DETACH DELETE n; //', "company"),
        ("Robert'); DROP TABLE Entity;--", "project"),
        ("{key: 'x'}", "location"),
    ]
    with open_graph(tmp_path / "g.lbug") as graph:
        graph.write_extractions([extraction("e" * 64, hostile)], "2026-11-20")
        names = {r[0] for r in graph.query("MATCH (e:Entity) RETURN e.name")}
        assert names == {n for n, _ in hostile}
        assert graph.counts() == {"documents": 1, "entities": 4, "mentions": 4}


def test_one_database_per_process_is_shared(tmp_path):
    path = tmp_path / "g.lbug"
    with open_graph(path) as outer, open_graph(path) as inner:
        outer.write_extractions([extraction("a" * 64, [("Ada", "person")])], "2026-11-20")
        inner.write_extractions([extraction("b" * 64, [("Bob", "person")])], "2026-11-20")
    with open_graph(path) as graph:  # both writers' data survive reopening
        assert graph.counts()["documents"] == 2


def _with_entity(document, **changes):
    entity = dataclasses.replace(document.entities[0], **changes)
    return dataclasses.replace(document, entities=[entity, *document.entities[1:]])


GOOD = extraction("a" * 64, [("Ada Lovelace", "person"), ("London", "location")])
#: (batch, night, the field the refusal must name): what a careless or hostile client sends.
BROKEN_BATCHES = [
    ([dataclasses.replace(GOOD, path="/data/\ud800.md")], "2026-11-20",
     "documents.0.path: lone surrogate U+D800"),
    ([dataclasses.replace(GOOD, stream="research\udfff")], "2026-11-20", "documents.0.stream"),
    ([_with_entity(GOOD, name="Ro\x00bert", key="person:ro\x00bert")], "2026-11-20",
     "documents.0.entities.0.name: control character U+0000"),
    ([_with_entity(GOOD, spellings=["Ada\x1b[31m"])], "2026-11-20",
     "documents.0.entities.0.aliases.0: control character U+001B"),
    ([dataclasses.replace(GOOD, extractor="model\ud83d")], "2026-11-20",
     "documents.0.extractor: lone surrogate"),
    ([GOOD, GOOD], "2026-11-20", "documents.1: document aaaa"),
    ([dataclasses.replace(GOOD, entities=[GOOD.entities[0], GOOD.entities[0]])], "2026-11-20",
     "documents.0: entities.1: entity 'person:ada lovelace' given twice"),
    ([_with_entity(GOOD, mentions=2**63)], "2026-11-20", "documents.0.entities.0.mentions"),
    ([_with_entity(GOOD, mentions=0)], "2026-11-20", "documents.0.entities.0.mentions"),
    ([_with_entity(GOOD, mentions=True)], "2026-11-20", "documents.0.entities.0.mentions"),
    ([_with_entity(GOOD, mentions="3")], "2026-11-20", "documents.0.entities.0.mentions"),
    ([_with_entity(GOOD, key="company:ada lovelace")], "2026-11-20",
     "documents.0.entities.0: key 'company:ada lovelace' is not the key of its type and name"),
    ([_with_entity(GOOD, type="planet", key="planet:ada lovelace")], "2026-11-20",
     "documents.0.entities.0.type"),
    ([_with_entity(GOOD, name="x" * 121, key="person:" + "x" * 121)], "2026-11-20",
     "documents.0.entities.0.name"),
    ([dataclasses.replace(GOOD, sha256="A" * 64)], "2026-11-20", "documents.0.sha256"),
    ([GOOD], "2026-13-45", "night: month must be in 1..12"),
    ([GOOD], "２０２６-11-20", "night: String should match pattern"),
    ([GOOD], "2026-11-20\n", "night"),
]


@pytest.mark.parametrize("batch,night,field", BROKEN_BATCHES)
def test_batches_breaking_the_rules_are_refused_naming_the_field(tmp_path, batch, night, field):
    with open_graph(tmp_path / "g.lbug") as graph:
        with pytest.raises(InvalidBatch) as refused:
            graph.write_extractions(batch, night)
        assert field in str(refused.value)
        assert graph.counts() == {"documents": 0, "entities": 0, "mentions": 0}
        assert graph.write_extractions([GOOD], "2026-11-20").documents_recorded == 1


def test_writes_find_nodes_by_key_never_by_a_cross_product(tmp_path):
    """`MATCH (d {..}), (e {..})` in one clause is planned as a cross product of both tables,
    and a DataFrame scan (`LOAD FROM $rows`) as a hash join over a scan of the whole table: each
    write got slower with the graph and pinned more memory (docs/reliability.md)."""
    rows = batch_rows([extraction("a" * 64, [("Ada", "person")])], "2026-11-20")
    parameters = {"hashes": ["a" * 64], "keys": ["person:ada"], "id": "r", "content": "c",
                  **rows.entities,
                  **rows.documents, **rows.mentions}
    with open_graph(tmp_path / "g.lbug") as graph:
        for statement in WRITE_STATEMENTS:
            plan = "\n".join(row[0] for row in graph.query("EXPLAIN " + statement, parameters))
            plan = plan.replace("PRIMARY_KEY_SCAN_NODE_TABLE", "")  # a look-up by key
            for operator in ("CROSS_PRODUCT", "SCAN_NODE_TABLE", "HASH_JOIN", "READ_PANDAS"):
                assert operator not in plan, (operator, statement)


def test_failed_transaction_leaves_no_trace(tmp_path):
    with open_graph(tmp_path / "g.lbug") as graph:
        with pytest.raises(RuntimeError):
            with graph.transaction():
                graph.query("CREATE (:Document {sha256: 'x', path: 'p', stream: 's', "
                            "night: 'n', entity_count: 0})")
                graph.query("THIS IS NOT CYPHER")
        assert graph.counts()["documents"] == 0


def test_a_graph_written_under_the_old_property_names_is_migrated_on_open(tmp_path):
    """Graphs written before the renames (Entity.mention_count and aliases, MENTIONS.count)
    keep their values under the new names and take new writes."""
    path = tmp_path / "old.lbug"
    database = ladybug.Database(str(path))
    old = ladybug.Connection(database)
    for statement in (
            "CREATE NODE TABLE Document(sha256 STRING PRIMARY KEY, path STRING, stream STRING, "
            "night STRING, entity_count INT64, processed_at TIMESTAMP)",
            "CREATE NODE TABLE Entity(key STRING PRIMARY KEY, name STRING, type STRING, "
            "aliases STRING[], first_night STRING, last_night STRING, mention_count INT64)",
            "CREATE REL TABLE MENTIONS(FROM Document TO Entity, count INT64)",
            "CREATE (:Document {sha256: 'old', path: '/old.md', stream: 'research', "
            "night: '2026-11-19', entity_count: 1})",
            "CREATE (:Entity {key: 'person:ada lovelace', name: 'Ada Lovelace', type: 'person', "
            "aliases: ['ada lovelace'], first_night: '2026-11-19', last_night: '2026-11-19', "
            "mention_count: 1})",
            "MATCH (d:Document {sha256: 'old'}) WITH d MATCH (e:Entity {key: 'person:ada "
            "lovelace'}) CREATE (d)-[:MENTIONS {count: 3}]->(e)"):
        old.execute(statement)
    old.close()
    database.close()

    with open_graph(path) as graph:
        assert graph.migrate_names() == []  # done once, on open
        graph.write_extractions([GOOD], "2026-11-20")
        [ada] = graph.query("MATCH (e:Entity {key: 'person:ada lovelace'}) RETURN "
                            "e.document_count, list_sort(e.spellings), e.first_night, e.last_night")
        assert ada == [2, ["Ada Lovelace", "ada lovelace"], "2026-11-19", "2026-11-20"]
        assert graph.query("MATCH (:Document {sha256: 'old'})-[m:MENTIONS]->() "
                           "RETURN m.mentions") == [[3]]
    check_graph_invariants(path)


def large_batches() -> list[list[DocumentExtraction]]:
    """Two batches over BULK_ROWS: 30 documents naming 80 entities each, half of them shared
    with the previous document, names with quotes, commas, backslashes and other scripts; the
    second batch names entities of the first (updates) and new ones."""
    def name(n):
        return ["O'Brien, \"Ltd\" %d", "back\\slash %d", "Zürich–Ōsaka %d", "plain %d"][n % 4] % n
    def document(d, first):
        names = [(name(n), ENTITY_TYPES[n % 5]) for n in range(first, first + 80)]
        return extraction(f"{d:064x}", names, stream=("research", "contacts")[d % 2])
    return [[document(d, 40 * d) for d in range(30)],
            [document(d, 40 * (d - 15)) for d in range(30, 60)]]


def test_a_large_write_is_bulk_copied_and_stores_what_small_writes_store(tmp_path,
                                                                         monkeypatch):
    bulk_writes = []

    def counted(query, entities, documents, mentions):
        bulk_writes.append(len(entities["key"]) + len(mentions["key"]))
        copy_new_rows(query, entities, documents, mentions)

    monkeypatch.setattr(graph_store, "copy_new_rows", counted)
    batches = large_batches()
    with open_graph(tmp_path / "bulk.lbug") as graph:
        for night, batch in zip(("2026-11-20", "2026-11-21"), batches):
            graph.write_extractions(batch, night)
    assert len(bulk_writes) == 2 and min(bulk_writes) >= BULK_ROWS
    with open_graph(tmp_path / "small.lbug") as graph:
        for night, batch in zip(("2026-11-20", "2026-11-21"), batches):
            for document in batch:
                graph.write_extractions([document], night)
    assert len(bulk_writes) == 2  # one document's rows stay under BULK_ROWS: UNWIND
    bulk = check_graph_invariants(tmp_path / "bulk.lbug")
    assert bulk == check_graph_invariants(tmp_path / "small.lbug")
    assert bulk["documents"] == 60 and bulk["mentions"] == 60 * 80
    assert graph_snapshot(tmp_path / "bulk.lbug") == graph_snapshot(tmp_path / "small.lbug")


def test_a_bulk_copy_in_a_failed_transaction_leaves_no_trace(tmp_path):
    [batch, _] = large_batches()
    rows = batch_rows(batch, "2026-11-20")
    with open_graph(tmp_path / "g.lbug") as graph:
        with pytest.raises(RuntimeError, match="after the copy"):
            with graph.transaction():
                copy_new_rows(graph.query, rows.entities, rows.documents, rows.mentions)
                assert graph.counts()["mentions"] == len(rows.mentions["key"])
                raise RuntimeError("after the copy")
        assert graph.counts() == {"documents": 0, "entities": 0, "mentions": 0}


def test_a_graph_left_in_a_variable_holds_neither_the_lock_nor_stale_pages(tmp_path):
    path = tmp_path / "g.lbug"
    with open_graph(path) as graph:
        graph.write_extractions([extraction("a" * 64, [("Ada", "person")])], "2026-11-20")
    # `graph` outlives its block (a test's or a handler's local); another process then writes.
    writer = (f"from yoyo_assets.datagraph.graph.store import open_graph\n"
              f"from yoyo_assets_tests.test_graph_store import extraction\n"
              f"with open_graph({str(path)!r}) as g:\n"
              f"    for i in range(20):\n"
              f"        g.write_extractions([extraction(format(i + 1, '064x'), "
              f"[('Name %d' % j, 'person') for j in range(10)])], '2026-11-21')\n")
    subprocess.run([sys.executable, "-c", writer], cwd=REPO_ROOT, check=True)
    del graph
    gc.collect()  # the connection is gone now: it must not have written anything back
    assert check_graph_invariants(path) == {"documents": 21, "entities": 11, "mentions": 201}


def test_a_write_holds_the_garbage_collector_off_and_gives_it_back(tmp_path, monkeypatch):
    """The writer pauses the cyclic collector during a write (graph/store.py, collector_paused);
    whatever the write's outcome, the collector is left as the caller had it."""
    states = []
    monkeypatch.setattr(graph_store, "check_batch",
                        lambda *args: (states.append(gc.isenabled()),
                                       graph_batch.check_batch(*args)))
    with open_graph(tmp_path / "g.lbug") as graph:
        assert graph.write_extractions([GOOD], "2026-11-20").documents_recorded == 1
        assert gc.isenabled()
        with pytest.raises(InvalidBatch):
            graph.write_extractions([GOOD], "2026-13-45")
        assert gc.isenabled()
        gc.disable()
        try:
            graph.write_extractions([GOOD], "2026-11-21")
            assert not gc.isenabled()  # a caller's choice stays
        finally:
            gc.enable()
    assert states == [False, False, False]
