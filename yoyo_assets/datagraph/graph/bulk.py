"""Bulk appends of a write's new rows: Parquet files that LadybugDB's `COPY FROM` appends to the
node and relationship tables inside the writer's open transaction.

`COPY FROM` costs ~30 ms per table whatever its size and a few microseconds per row; the
`UNWIND` statements of graph_store cost ~80 µs per row (docs/benchmarks.md, "Graph writes").
They cross near 1,500 rows, so graph_store sends a write through here from `BULK_ROWS` new
entities and relationships on. A COPY into a table that holds a row's primary key already fails
(and the transaction with it), so only rows new to the graph come here; updates stay `UNWIND`.
The files are scanned from disk, never from Python objects: a DataFrame scan pins memory until
the process ends (docs/reliability.md, "Bounded memory").
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

#: New entities plus new `MENTIONS` of one write from which `COPY FROM` is used.
BULK_ROWS = 2000

#: Arrow type of each property whose Parquet type would not be inferred as LadybugDB's.
ARROW_TYPES = {"document_count": pa.int64(), "entity_count": pa.int64(), "mentions": pa.int64(),
               "spellings": pa.list_(pa.string()), "processed_at": pa.timestamp("us")}

#: Properties a write leaves at their default (set later by corrections: graph_corrections.py).
LEFT_EMPTY = {"confirmed_by", "confirmed_at"}

Query = Callable[..., list[list[Any]]]


def property_names(query: Query, table: str) -> list[str]:
    """`table`'s properties in the order the catalog keeps them: the order `COPY FROM` reads a
    file's columns in (a graph migrated since it was made may differ from the schema's text)."""
    return [row[1] for row in query(f"CALL table_info('{table}') RETURN *")]


#: Where a table's property comes from in graph_store.BatchRows' columns, when named otherwise.
SOURCE_COLUMNS = {"Entity": {"first_night": "night", "last_night": "night",
                             "document_count": "documents"},
                  "MENTIONS": {"from": "sha256", "to": "key"}}


def copy_new_rows(query: Query, entities: dict[str, list], documents: dict[str, list],
                  mentions: dict[str, list]) -> None:
    """Append `entities` (columns of graph_store.BatchRows, all new to the graph),
    `documents` and their `mentions` to the graph through `query`, a connection inside a
    transaction.

    Raises:
        RuntimeError: LadybugDB refused a file (a primary key already present, a type it
            cannot read); the caller's transaction rolls the whole write back.
    """
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)  # TIMESTAMP is UTC, without zone
    tables = (("Entity", entities, len(entities["key"])),
              ("Document", {**documents, "processed_at": [stamp] * len(documents["sha256"])},
               len(documents["sha256"])),
              ("MENTIONS", mentions, len(mentions["key"])))
    with tempfile.TemporaryDirectory(prefix="yoyo-graph-copy-") as folder:
        if "'" in folder:  # the path is the one text pasted into a statement
            raise RuntimeError(f"temporary folder {folder!r} has a quote; set TMPDIR")
        for table, source, rows in tables:
            if not rows:
                continue
            names = property_names(query, table)
            if table == "MENTIONS":
                names = ["from", "to", *names]
            path = Path(folder) / f"{table}.parquet"
            pq.write_table(arrow_table(source, names, rows, SOURCE_COLUMNS.get(table, {})),
                           path)
            query(f"COPY {table} FROM '{path}'")


def arrow_table(source: dict[str, list], names: list[str], rows: int,
                renamed: dict[str, str]) -> pa.Table:
    """An Arrow table of `rows` rows with the columns `names`, in that order, each taken from
    `source` under its own name or the one `renamed` gives it (LEFT_EMPTY ones empty)."""
    return pa.table({name: pa.array([""] * rows if name in LEFT_EMPTY
                                    else source[renamed.get(name, name)], ARROW_TYPES.get(name))
                     for name in names})
