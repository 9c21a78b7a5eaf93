"""The DataGraph in LadybugDB: its schema, its batched parameterised writes (Cypher), and
`GraphDatabase`, which runs them on the process's one read-write `Database` (the `embedded`
sink; the reference graph service runs the same class behind its HTTP endpoints).

Node tables: `Document` (the ledger: one node per processed document hash) and `Entity`;
relationship `MENTIONS` (Document -> Entity, with a mention count). Every statement takes its
values as parameters, never as text pasted into the query.

LadybugDB 0.22 loses writes silently when one process opens two read-write `Database` objects on
the same file (the second one's writes are gone after reopening, with no error), so every opener
in the process goes through `open_graph`, which shares one `Database` per file and closes it
when the last user leaves (`test_graph_store::test_one_database_per_process_is_shared`).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import ladybug

from ...shared.faults import crash_point
from ...resolution.resolver import Anchor
from ...shared.settings import declared_default
from ..corrections.stream import Correction, CorrectionOutcome, check_corrections
from ..extraction.extractor import ENTITY_TYPES, DocumentExtraction
from ..extraction.batch import ConflictingReplay, check_batch
from .bulk import BULK_ROWS, copy_new_rows
from .corrections import SCHEMA as CORRECTION_SCHEMA
from .corrections import apply_correction
from .identity import SCHEMA as IDENTITY_SCHEMA
from .identity import (IdentityStats, IdentityView, ResolvedMention, anchors_named,
                             apply_decision, identity_view, record_anchor, record_resolutions)
from ..corrections.identity_decisions import IdentityDecision

log = logging.getLogger(__name__)

#: LadybugDB's buffer pool (page cache and working memory of queries) per open graph, MiB. Its
#: own default is ~80% of the machine's memory; the writes need a few MiB per batch.
DEFAULT_BUFFER_POOL_MIB = declared_default("graph_buffer_pool_mib")
#: Write-ahead log size, MiB, past which LadybugDB checkpoints it into the file (its own
#: default is 16 MiB).
DEFAULT_CHECKPOINT_MIB = declared_default("graph_checkpoint_mib")

SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Document(sha256 STRING PRIMARY KEY, path STRING, "
    "stream STRING, night STRING, entity_count INT64, processed_at TIMESTAMP)",
    "CREATE NODE TABLE IF NOT EXISTS Entity(key STRING PRIMARY KEY, name STRING, type STRING, "
    "spellings STRING[], first_night STRING, last_night STRING, document_count INT64)",
    "CREATE REL TABLE IF NOT EXISTS MENTIONS(FROM Document TO Entity, mentions INT64)",
    # Which extractor (model, and adapter version if any) produced the document's entities;
    # added to graphs made before it existed.
    "ALTER TABLE Document ADD IF NOT EXISTS extractor STRING DEFAULT ''",
    *CORRECTION_SCHEMA,  # operators' corrections (graph_corrections.py)
    *IDENTITY_SCHEMA,  # identities of mentions (graph_identity.py)
    # The graph service's mutate requests: id and SHA-256 of the body that wrote them, so that
    # an id sent again with other content is refused (graph_service.py).
    "CREATE NODE TABLE IF NOT EXISTS MutateRequest(id STRING PRIMARY KEY, content STRING, "
    "night STRING)",
)

#: Properties renamed since graphs were first written: (table, old name, new name). A graph file
#: written before is migrated when it is opened (`migrate_names`).
RENAMED_PROPERTIES = (
    ("Entity", "mention_count", "document_count"),  # it counts documents, not mentions
    ("Entity", "aliases", "spellings"),  # the case and spacing variants seen; no alias resolution
    ("MENTIONS", "count", "mentions"),  # how often the one document names the entity
)

KNOWN_DOCUMENTS = "UNWIND $hashes AS h MATCH (d:Document {sha256: h}) RETURN d.sha256"
KNOWN_ENTITIES = "UNWIND $keys AS k MATCH (e:Entity {key: k}) RETURN e.key"
REQUEST_CONTENT = "MATCH (r:MutateRequest {id: $id}) RETURN r.content"
RECORD_REQUEST = "CREATE (:MutateRequest {id: $id, content: $content, night: $night})"

# A write's new rows go through `COPY FROM` from `graph_bulk.BULK_ROWS` on (graph_bulk); the rest
# is `UNWIND` over list parameters, one list per column (`$key[i]`, 1-based):
# LadybugDB converts lists of strings and numbers 4-5x faster than a list of row dicts
# (docs/benchmarks.md). Every node a write touches is found by its primary key, one `MATCH`
# clause per node, each after a `WITH` (a `$key[i]` inside the pattern, or two `MATCH` clauses
# in a row, are planned as scans and joins): LadybugDB plans `MATCH (d {..}), (e {..})` in one clause as a cross
# product of both tables, and scans of DataFrame parameters (`LOAD FROM $rows`) pin memory until the
# process ends; the two made a process grow by gigabytes over a few hundred writes
# (docs/reliability.md, "Bounded memory"). A test checks the plans.

# One row per entity key new to the graph; `documents` counts the batch's documents naming it.
CREATE_ENTITIES = """
UNWIND range(1, size($key)) AS i
CREATE (:Entity {key: $key[i], name: $name[i], type: $type[i], spellings: $spellings[i],
                 first_night: $night[i], last_night: $night[i], document_count: $documents[i]})
"""

# One row per entity key already in the graph. Nights are 'YYYY-MM-DD' strings, so min/max
# compare as text.
UPDATE_ENTITIES = """
UNWIND range(1, size($key)) AS i
WITH $key[i] AS key, $spellings[i] AS spellings, $night[i] AS night, $documents[i] AS documents
MATCH (e:Entity {key: key})
SET e.spellings = list_distinct(list_concat(e.spellings, spellings)),
    e.first_night = CASE WHEN night < e.first_night THEN night ELSE e.first_night END,
    e.last_night = CASE WHEN night > e.last_night THEN night ELSE e.last_night END,
    e.document_count = e.document_count + documents
"""

CREATE_DOCUMENTS = """
UNWIND range(1, size($sha256)) AS i
CREATE (:Document {sha256: $sha256[i], path: $path[i], stream: $stream[i], night: $night[i],
                   entity_count: $entity_count[i], extractor: $extractor[i],
                   processed_at: current_timestamp()})
"""

# The documents are new in this transaction, so CREATE cannot duplicate a relationship.
CREATE_MENTIONS = """
UNWIND range(1, size($sha256)) AS i
WITH $sha256[i] AS sha256, $key[i] AS key, $mentions[i] AS mentions
MATCH (d:Document {sha256: sha256})
WITH d, key, mentions
MATCH (e:Entity {key: key})
CREATE (d)-[:MENTIONS {mentions: mentions}]->(e)
"""

#: The statements a write runs, for the plan check of the tests.
WRITE_STATEMENTS = (KNOWN_DOCUMENTS, KNOWN_ENTITIES, CREATE_ENTITIES, UPDATE_ENTITIES,
                    CREATE_DOCUMENTS, CREATE_MENTIONS, REQUEST_CONTENT, RECORD_REQUEST)

# Entities that the night's documents mention, most mentioned first.
NIGHT_ENTITIES = """
MATCH (d:Document {night: $night})-[m:MENTIONS]->(e:Entity)
RETURN e.name, e.type, sum(m.mentions) AS mentions ORDER BY mentions DESC, e.name
"""


def selected(table: dict[str, list], keep: list[bool]) -> dict[str, list]:
    """The rows of `table` (one list per column) whose `keep` flag is true."""
    return {name: [value for value, kept in zip(values, keep) if kept]
            for name, values in table.items()}


@dataclass
class BatchRows:
    """Parameters for one transaction, each table one list per column (a statement's
    parameters as they are): entity upserts (one row per key: key, name, type, spellings,
    night, documents), documents (sha256, path, stream, night, entity_count, extractor) and
    mentions (sha256, key, mentions). Columns rather than row dicts: a 10,000-entity write
    allocates a few lists instead of tens of thousands of dicts, which the cyclic garbage
    collector would otherwise walk (docs/benchmarks.md, "Graph writes")."""

    entities: dict[str, list]
    documents: dict[str, list]
    mentions: dict[str, list]


def batch_rows(extractions: Iterable[DocumentExtraction], night: str) -> BatchRows:
    """Turn documents' extractions into parameter columns, merging entities by key across
    documents. `night` is the partition key ('YYYY-MM-DD') recorded on documents and entities.
    """
    entities: dict[str, list] = {name: [] for name in
                                 ("key", "name", "type", "spellings", "night", "documents")}
    documents: dict[str, list] = {name: [] for name in
                                  ("sha256", "path", "stream", "night", "entity_count",
                                   "extractor")}
    mentions: dict[str, list] = {"sha256": [], "key": [], "mentions": []}
    row_of: dict[str, int] = {}  # entity key -> its row in `entities`
    for extraction in extractions:
        for name, value in zip(documents, (extraction.sha256, extraction.path,
                                           extraction.stream, night,
                                           len(extraction.entities), extraction.extractor)):
            documents[name].append(value)
        for entity in extraction.entities:
            row = row_of.get(entity.key)
            if row is None:
                row_of[entity.key] = len(entities["key"])
                # The name is one of its own spellings (and the list is never empty: LadybugDB
                # infers a parameter's list type from its elements).
                spellings = list(dict.fromkeys([entity.name, *entity.spellings]))
                for name, value in zip(entities, (entity.key, entity.name, entity.type,
                                                  spellings, night, 1)):
                    entities[name].append(value)
            else:
                entities["documents"][row] += 1
                seen = entities["spellings"][row]
                seen.extend(s for s in entity.spellings if s not in seen)
            mentions["sha256"].append(extraction.sha256)
            mentions["key"].append(entity.key)
            mentions["mentions"].append(entity.mentions)
    return BatchRows(entities, documents, mentions)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off for the block (and restored as it was).

    A 10,000-entity write allocates tens of thousands of objects that live until it ends
    (validated models, columns, Arrow arrays) and form no reference cycles; their number
    alone sets off full collections, each walking every object of the process: a third of the
    writes of the graph benchmark paid ~130 ms for one (docs/benchmarks.md, "Graph writes").
    Reference counting still frees everything; a cycle made meanwhile waits for the next
    collection. With threads, the collector may come back on while another thread's block
    runs: that costs it time, never correctness.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_registry_lock = threading.Lock()
_registry: dict[Path, list[Any]] = {}  # resolved path -> [Database, users]


@dataclass
class WriteStats:
    """What one `write_extractions` call changed: entities created and updated, documents added
    to the ledger, relationships written, and documents skipped as already in the ledger."""

    entities_created: int = 0
    entities_updated: int = 0
    documents_recorded: int = 0
    relationships_written: int = 0
    documents_already_recorded: int = 0

    def add(self, other: "WriteStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class NightTotals:
    """A night in the graph: its documents, the distinct entities they mention and the mentions
    (summed counts), entities by type, and a sample (name, type, mentions), most mentioned
    first."""

    documents: int
    entities: int
    mentions: int
    entities_by_type: dict[str, int]
    sample: list[tuple[str, str, int]]


class GraphDatabase:
    """A connection to the process's `Database` for one file, with the DataGraph's operations."""

    def __init__(self, database: Any):
        self._connection = ladybug.Connection(database)
        for statement in SCHEMA:
            self._connection.execute(statement)
        self.migrate_names()

    def close(self) -> None:
        """Close the connection. `open_graph` does this before it closes the `Database`: a
        connection left open keeps the database (its file lock, its buffered pages) alive after
        `Database.close()`, until the connection is garbage-collected, which may be while
        another process writes the file (`test_graph_store::test_a_graph_left_in_a_variable_
        holds_neither_the_lock_nor_stale_pages`)."""
        self._connection.close()

    def migrate_names(self) -> list[str]:
        """Rename the properties of RENAMED_PROPERTIES that this file still has under their
        old names (values kept); returns the renames done, as `Table.old -> new`."""
        done = []
        for table, old, new in RENAMED_PROPERTIES:
            names = {row[1] for row in self.query(f"CALL table_info('{table}') RETURN *")}
            if old in names and new not in names:
                self._connection.execute(f"ALTER TABLE {table} RENAME {old} TO {new}")
                done.append(f"{table}.{old} -> {new}")
        if done:
            log.info("graph properties renamed: %s", ", ".join(done))
        return done

    def query(self, cypher: str, parameters: dict[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a parameterised query, each a list of column values."""
        result = self._connection.execute(cypher, parameters or {})
        rows = []
        while result.has_next():
            rows.append(result.get_next())
        return rows

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One explicit transaction: committed when the block ends, rolled back on an error.
        When LadybugDB has already ended the failed transaction itself, the rollback's own
        error is logged and the block's error is what propagates."""
        self._connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            try:
                self._connection.execute("ROLLBACK")
            except RuntimeError as rollback_error:
                log.warning("rollback after a failed write: %s", rollback_error)
            raise
        self._connection.execute("COMMIT")

    def known_documents(self, hashes: Iterable[str]) -> set[str]:
        """The subset of `hashes` (SHA-256 hex) already in the ledger."""
        hashes = list(hashes)
        if not hashes:
            return set()
        return {row[0] for row in self.query(KNOWN_DOCUMENTS, {"hashes": hashes})}

    def write_extractions(self, extractions: list[DocumentExtraction], night: str,
                          checked: bool = False, request: tuple[str, str] | None = None
                          ) -> WriteStats:
        """Write the entities, ledger entries and `MENTIONS` of `extractions` in one transaction.

        Documents already in the ledger are skipped, so a re-run adds nothing twice; the ledger
        entries commit together with their entities or not at all. `checked`: the caller has
        already validated the batch against graph_batch's rules (the graph service, whose
        request model holds them), so they are not checked twice. `request`: the graph
        service's (request id, SHA-256 of its body), recorded with a batch it writes whole, so
        that the id sent again with another body is refused.

        Raises:
            graph_batch.InvalidBatch: the batch breaks a rule of graph_batch (named); nothing
                is written.
            graph_batch.ConflictingReplay: `request`'s id was recorded with another body;
                nothing is written.
        """
        if not extractions:
            return WriteStats()
        with collector_paused():
            if not checked:
                check_batch(extractions, night)
            return self._write(extractions, night, request)

    def _check_request(self, request: tuple[str, str] | None) -> bool:
        """True when `request` is to be recorded (its id is new); raises ConflictingReplay
        when its id was recorded with another body."""
        if request is None:
            return False
        found = self.query(REQUEST_CONTENT, {"id": request[0]})
        if found and found[0][0] != request[1]:
            raise ConflictingReplay(f"request_id {request[0]}: sent before with another body "
                                    f"(its documents' hashes are the id; their content differs)")
        return not found

    def _write(self, extractions: list[DocumentExtraction], night: str,
               request: tuple[str, str] | None) -> WriteStats:
        """`write_extractions` of a checked batch."""
        stats = WriteStats()
        with self.transaction():
            new_request = self._check_request(request)
            known = self.known_documents(x.sha256 for x in extractions)
            fresh = [x for x in extractions if x.sha256 not in known]
            stats.documents_already_recorded = len(extractions) - len(fresh)
            if new_request and not known:  # a body that writes all its documents
                self.query(RECORD_REQUEST, {"id": request[0], "content": request[1],
                                            "night": night})
            if not fresh:
                return stats
            rows = batch_rows(fresh, night)
            keys = rows.entities["key"]
            existing = {r[0] for r in self.query(KNOWN_ENTITIES, {"keys": keys})}
            is_new = [key not in existing for key in keys]
            new_entities = selected(rows.entities, is_new)
            if existing:
                self.query(UPDATE_ENTITIES, selected(rows.entities, [not n for n in is_new]))
            mention_count = len(rows.mentions["key"])
            if len(new_entities["key"]) + mention_count >= BULK_ROWS:
                copy_new_rows(self.query, new_entities, rows.documents, rows.mentions)
            else:
                self._create_rows(new_entities, rows.documents, rows.mentions)
            crash_point("graph.before_commit")
        stats.entities_created = len(keys) - len(existing)
        stats.entities_updated = len(existing)
        stats.documents_recorded = len(rows.documents["sha256"])
        stats.relationships_written = mention_count
        return stats

    def apply_corrections(self, corrections: list[Correction], night: str,
                          preview: bool = False, checked: bool = False
                          ) -> list[CorrectionOutcome]:
        """Apply operators' `corrections` during `night` in one transaction (see
        graph_corrections.py): a correction applied before, or older than one applied, changes
        nothing; one whose document is not in the ledger waits. `preview`: say what would be
        done, write nothing. `checked`: as for `write_extractions`.

        Raises:
            graph_batch.InvalidBatch: the corrections break corrections.CorrectionBatch's rules
                (named); nothing is applied.
        """
        if not corrections:
            return []
        if not checked:
            check_corrections(corrections, night)
        with self.transaction():
            outcomes = [apply_correction(self.query, c, night, preview) for c in corrections]
            if not preview:
                crash_point("corrections.before_commit")
        return outcomes

    def record_anchors(self, anchors: list[Anchor], night: str) -> int:
        """Create or update the identities of `anchors` (records that carry an id) in one
        transaction; returns how many were new."""
        with self.transaction():
            return sum(record_anchor(self.query, anchor, night) for anchor in anchors)

    def anchors_named(self, words: Iterable[str]) -> list[Anchor]:
        """The anchors whose surname holds one of `words` (folded surname words)."""
        words = list(words)
        return anchors_named(self.query, words) if words else []

    def record_resolutions(self, resolved: list[ResolvedMention], night: str,
                           decisions: list[IdentityDecision] = ()) -> IdentityStats:
        """Link each document's surface forms to their identities, then apply operators'
        identity `decisions`, in one transaction; a form resolved before, and a decision
        applied before, stay as they are (see graph_identity.py)."""
        stats = IdentityStats()
        with self.transaction():
            record_resolutions(self.query, resolved, night, stats)
            for decision in decisions:
                apply_decision(self.query, decision, night, stats)
            crash_point("identity.before_commit")
        return stats

    def identity(self, identity: str, limit: int = 100) -> IdentityView | None:
        """One identity with its forms and up to `limit` documents referring to it (see
        graph_identity.IdentityView); None if the graph holds no such id."""
        return identity_view(self.query, identity, limit)

    def _create_rows(self, entities: dict[str, list], documents: dict[str, list],
                     mentions: dict[str, list]) -> None:
        """Create new entities, documents and their MENTIONS (columns of `BatchRows`) with the
        UNWIND statements."""
        if entities["key"]:
            self.query(CREATE_ENTITIES, entities)
        self.query(CREATE_DOCUMENTS, documents)
        if mentions["key"]:
            self.query(CREATE_MENTIONS, mentions)

    def night_totals(self, night: str, sample: int = 10) -> NightTotals:
        """What the ledger holds for `night` (a partition key), whichever run wrote it."""
        documents = self.query("MATCH (d:Document {night: $night}) RETURN count(d)",
                               {"night": night})[0][0]
        # sum() of INT64 comes back as a Decimal (INT128): counts go back to int.
        rows = [(name, type_, int(n)) for name, type_, n in
                self.query(NIGHT_ENTITIES, {"night": night})]
        by_type = Counter(type_ for _, type_, _ in rows)
        return NightTotals(documents, len(rows), sum(n for _, _, n in rows),
                           {t: by_type.get(t, 0) for t in ENTITY_TYPES}, rows[:sample])

    def counts(self) -> dict[str, int]:
        """Node and relationship counts: documents, entities, mentions."""
        return {
            "documents": self.query("MATCH (d:Document) RETURN count(d)")[0][0],
            "entities": self.query("MATCH (e:Entity) RETURN count(e)")[0][0],
            "mentions": self.query("MATCH ()-[m:MENTIONS]->() RETURN count(m)")[0][0],
        }


class DataGraph(Protocol):
    """The operations Phase 1 needs from its graph, whichever sink provides them:
    `GraphDatabase` (embedded) or `graph_client.GraphServiceClient` (service)."""

    def known_documents(self, hashes: Iterable[str]) -> set[str]: ...
    def write_extractions(self, extractions: list[DocumentExtraction],
                          night: str) -> WriteStats: ...
    def apply_corrections(self, corrections: list[Correction], night: str,
                          preview: bool = False) -> list[CorrectionOutcome]: ...
    def night_totals(self, night: str, sample: int = 10) -> NightTotals: ...
    def counts(self) -> dict[str, int]: ...
    def record_anchors(self, anchors: list[Anchor], night: str) -> int: ...
    def anchors_named(self, words: Iterable[str]) -> list[Anchor]: ...
    def record_resolutions(self, resolved: list[ResolvedMention], night: str,
                           decisions: list[IdentityDecision] = ()) -> IdentityStats: ...
    def identity(self, identity: str, limit: int = 100) -> IdentityView | None: ...


class GraphFileBusy(RuntimeError):
    """Another process holds the graph file open for writing (LadybugDB has one writer)."""


def _open_database(path: Path, buffer_pool_mib: int, checkpoint_mib: int) -> Any:
    try:
        return ladybug.Database(str(path), buffer_pool_size=buffer_pool_mib * 2**20,
                                checkpoint_threshold=checkpoint_mib * 2**20)
    except RuntimeError as exc:
        if "Could not set lock" not in str(exc):
            raise
        raise GraphFileBusy(
            f"graph file {path} is open for writing in another process (LadybugDB allows one "
            f"writer): stop that process, or, if it is the graph service, set "
            f"YOYO_GRAPH_SINK=service to write through it ({exc})") from None


@contextmanager
def open_graph(path: str | Path, buffer_pool_mib: int = DEFAULT_BUFFER_POOL_MIB,
               checkpoint_mib: int = DEFAULT_CHECKPOINT_MIB) -> Iterator[GraphDatabase]:
    """A `GraphDatabase` on the process's shared read-write `Database` for `path`.

    The parent folder is created. The first opener's `buffer_pool_mib` (LadybugDB's buffer
    pool, MiB) and `checkpoint_mib` (write-ahead log size that triggers a checkpoint, MiB)
    hold while the file stays open. Raises `GraphFileBusy`, naming the path, when another
    process holds the file's write lock.
    """
    path = Path(path).resolve()
    with _registry_lock:
        entry = _registry.get(path)
        if entry is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = _registry[path] = [_open_database(path, buffer_pool_mib, checkpoint_mib), 0]
        entry[1] += 1
    graph = None
    try:
        graph = GraphDatabase(entry[0])
        yield graph
    finally:
        if graph is not None:
            graph.close()
        with _registry_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _registry[path]
                entry[0].close()
