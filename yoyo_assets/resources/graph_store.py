"""The graph store resource: the one read-write LadybugDB `Database` of this process.

LadybugDB loses writes silently when one process opens two read-write `Database` objects on the
same file (../shared/STACK.md), so every opener in the process goes through `open_graph`, which
shares one `Database` per file and closes it when the last user leaves.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import ladybug
import pandas
from dagster import ConfigurableResource
from pydantic import Field

from ..datagraph import graph_writes as gw
from ..datagraph.extraction import DocumentExtraction
from ..faults import crash_point

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


class GraphDatabase:
    """A connection to the process's `Database` for one file, with the DataGraph's operations."""

    def __init__(self, database: Any):
        self._connection = ladybug.Connection(database)
        for statement in gw.SCHEMA:
            self._connection.execute(statement)

    def query(self, cypher: str, parameters: dict[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a parameterised query, each a list of column values."""
        result = self._connection.execute(cypher, parameters or {})
        rows = []
        while result.has_next():
            rows.append(result.get_next())
        return rows

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One explicit transaction: committed when the block ends, rolled back on an error."""
        self._connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def known_documents(self, hashes: Iterable[str]) -> set[str]:
        """The subset of `hashes` (SHA-256 hex) already in the ledger."""
        hashes = list(hashes)
        if not hashes:
            return set()
        return {row[0] for row in self.query(gw.KNOWN_DOCUMENTS, {"hashes": hashes})}

    def write_extractions(self, extractions: list[DocumentExtraction], night: str) -> WriteStats:
        """Write the entities, ledger entries and `MENTIONS` of `extractions` in one transaction.

        Documents already in the ledger are skipped, so a re-run adds nothing twice; the ledger
        entries commit together with their entities or not at all.
        """
        stats = WriteStats()
        with self.transaction():
            known = self.known_documents(x.sha256 for x in extractions)
            fresh = [x for x in extractions if x.sha256 not in known]
            stats.documents_already_recorded = len(extractions) - len(fresh)
            if not fresh:
                return stats
            rows = gw.batch_rows(fresh, night)
            existing = {r[0] for r in self.query(gw.KNOWN_ENTITIES,
                                                 {"keys": [e["key"] for e in rows.entities]})}
            if rows.entities:
                self.query(gw.UPSERT_ENTITIES, {"rows": pandas.DataFrame(rows.entities)})
            self.query(gw.CREATE_DOCUMENTS, {"rows": pandas.DataFrame(rows.documents)})
            if rows.mentions:
                self.query(gw.CREATE_MENTIONS, {"rows": pandas.DataFrame(rows.mentions)})
            crash_point("graph.before_commit")
        stats.entities_created = len(rows.entities) - len(existing)
        stats.entities_updated = len(existing)
        stats.documents_recorded = len(rows.documents)
        stats.relationships_written = len(rows.mentions)
        return stats

    def counts(self) -> dict[str, int]:
        """Node and relationship counts: documents, entities, mentions."""
        return {
            "documents": self.query("MATCH (d:Document) RETURN count(d)")[0][0],
            "entities": self.query("MATCH (e:Entity) RETURN count(e)")[0][0],
            "mentions": self.query("MATCH ()-[m:MENTIONS]->() RETURN count(m)")[0][0],
        }


@contextmanager
def open_graph(path: str | Path) -> Iterator[GraphDatabase]:
    """A `GraphDatabase` on the process's shared read-write `Database` for `path`.

    The parent folder is created. Raises `RuntimeError` (from LadybugDB) when another process
    holds the file's write lock.
    """
    path = Path(path).resolve()
    with _registry_lock:
        entry = _registry.get(path)
        if entry is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = _registry[path] = [ladybug.Database(str(path)), 0]
        entry[1] += 1
    try:
        yield GraphDatabase(entry[0])
    finally:
        with _registry_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _registry[path]
                entry[0].close()


class GraphStore(ConfigurableResource):
    """The DataGraph's LadybugDB file. `open()` gives the process's one read-write handle."""

    path: str = Field(description="LadybugDB database file (its folder is created if missing).")
    write_batch_documents: int = Field(
        default=256, description="Documents per write transaction (ledger + entities + MENTIONS).")

    @contextmanager
    def open(self) -> Iterator[GraphDatabase]:
        """See `open_graph`."""
        with open_graph(self.path) as graph:
            yield graph
