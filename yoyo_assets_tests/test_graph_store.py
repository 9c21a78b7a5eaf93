"""The graph store on a real LadybugDB file: idempotent batched writes, the ledger, hostile
names as data, and one shared Database per process."""

from yoyo_assets.datagraph.extraction import DocumentExtraction, ExtractedEntity, entity_key
from yoyo_assets.datagraph.graph_store import open_graph


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
        ada = graph.query("MATCH (e:Entity {key: $k}) RETURN e.mention_count, e.first_night, "
                          "e.last_night, e.aliases", {"k": "person:ada lovelace"})[0]
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
        ("Robert\x00'); DROP TABLE Entity;--\n\t\x1b[31m", "project"),
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


def test_failed_transaction_leaves_no_trace(tmp_path):
    import pytest
    with open_graph(tmp_path / "g.lbug") as graph:
        with pytest.raises(RuntimeError):
            with graph.transaction():
                graph.query("CREATE (:Document {sha256: 'x', path: 'p', stream: 's', "
                            "night: 'n', entity_count: 0})")
                graph.query("THIS IS NOT CYPHER")
        assert graph.counts()["documents"] == 0
