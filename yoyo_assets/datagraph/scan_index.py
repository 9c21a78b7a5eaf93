"""What the streams held at the last scan, so that a night opens only the files that changed.

Like git's index: each file is remembered by its path with its size, modification and change
times (nanoseconds) and inode, the SHA-256 of its bytes, and whether that hash is in the ledger.
A file whose metadata is unchanged and whose hash the ledger holds is not opened again; any
change (a new file, a rewrite in place, even one that keeps size and modification time: the
change time moves) makes it read again. The index only decides what to read: the ledger in the
graph still decides what is new, so a lost or stale index costs a slower night, never a
document counted twice or missed.

Stored in SQLite (`<data root>/index/documents.sqlite`). A scan sends the metadata of every file
to SQLite as it lists them and gets back only those to open, so a night's memory does not grow
with the history.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER,
    sha256 TEXT, recorded INTEGER NOT NULL DEFAULT 0, rejection TEXT, line INTEGER);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
PRAGMA temp_store = MEMORY;
CREATE TEMP TABLE IF NOT EXISTS present (
    path TEXT, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER);
"""

# A folder lists in hash order, so looking each listed path up in `files` reads the index's
# pages at random (1,000,000 files: 9 s, docs/benchmarks.md). Sorted first, in a covering index
# of the listing built after it is loaded, the look-ups walk `files` in order (under 1 s; the
# sort ~3 s, ~250 MiB for a million files).
SORTED_LISTING = ("CREATE INDEX temp.present_in_order ON present "
                  "(path, size, mtime_ns, ctime_ns, inode)")

#: A file whose metadata equals what the index holds for its path.
_SAME = ("f.size = p.size AND f.mtime_ns = p.mtime_ns AND f.ctime_ns = p.ctime_ns "
         "AND f.inode = p.inode")


@dataclass(frozen=True)
class Stat:
    """The metadata a file is recognised by: size (bytes), modification and change times (ns),
    inode."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


@dataclass
class Triage:
    """One stream folder sorted by the index: the files to open (path, metadata; by path), the
    unchanged rejected ones (path, reason, line), and how many unchanged ones the ledger holds."""

    to_read: list[tuple[str, Stat]] = field(default_factory=list)
    rejected: list[tuple[str, str, int | None]] = field(default_factory=list)
    unchanged: int = 0


class ScanIndex:
    """The index file at `path` (created with its folder); `None`: an empty index in memory
    (every file is read). One scan at a time uses a file: Phase 1 runs one night at a time (the
    GPU run tag)."""

    def __init__(self, path: Path | None = None):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path if path is not None else ":memory:")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def triage(self, folder: str, files: Iterable[tuple[str, int, int, int, int]],
               arrived_by: float) -> Triage:
        """Sort the files now in `folder` (an iterable of path, size, mtime_ns, ctime_ns and
        inode, consumed once): those modified after `arrived_by` (Unix seconds) are left for a
        later night; entries of files gone from the folder are forgotten. One pass over the
        files in SQLite returns only those that are not passed over."""
        prefix, end = folder + os.sep, folder + chr(ord(os.sep) + 1)
        due = [0]

        def counted(rows):
            for row in rows:
                due[0] += row[2] / 1e9 <= arrived_by  # as Python's st_mtime compares
                yield row

        with self._db:
            self._db.execute("DROP INDEX IF EXISTS temp.present_in_order")
            self._db.execute("DELETE FROM present")
            self._db.executemany("INSERT INTO present VALUES (?, ?, ?, ?, ?)", counted(files))
            self._db.execute(SORTED_LISTING)
        rows = self._db.execute(
            "SELECT p.path, p.size, p.mtime_ns, p.ctime_ns, p.inode, f.path IS NOT NULL, "
            f"f.path IS NOT NULL AND {_SAME}, f.sha256, f.rejection, f.line "
            "FROM present p INDEXED BY present_in_order LEFT JOIN files f USING (path) "
            "WHERE p.mtime_ns / 1e9 <= ? AND NOT "
            f"(f.path IS NOT NULL AND {_SAME} AND f.recorded = 1) ORDER BY p.path",
            (arrived_by,)).fetchall()
        triage = Triage(unchanged=due[0] - len(rows))
        for path, size, mtime_ns, ctime_ns, inode, _, same, sha256, rejection, line in rows:
            if same and sha256 is None and rejection is not None:
                triage.rejected.append((path, rejection, line))
            else:
                triage.to_read.append((path, Stat(size, mtime_ns, ctime_ns, inode)))
        # Entries of files gone from the folder are forgotten. Counting first spares the search
        # on most nights (it costs as much as the pass above); indexed files that are not due
        # tonight (a backfill of an earlier night) make it search, and it keeps them.
        indexed = self._db.execute("SELECT count(*) FROM files WHERE path >= ? AND path < ?",
                                   (prefix, end)).fetchone()[0]
        if indexed > triage.unchanged + sum(row[5] for row in rows):
            with self._db:
                self._db.execute("DELETE FROM files WHERE path >= ? AND path < ? AND path NOT "
                                 "IN (SELECT path FROM present)", (prefix, end))
        return triage

    def remember(self, path: str, stat: Stat, sha256: str | None, rejection: str | None = None,
                 line: int | None = None) -> None:
        """What reading `path` (with metadata `stat`) gave: its hash, or why it was rejected.
        Kept until `commit`."""
        self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                         (path, stat.size, stat.mtime_ns, stat.ctime_ns, stat.inode, sha256,
                          rejection, line))

    def commit(self) -> None:
        """Make what `remember` recorded durable."""
        self._db.commit()

    def mark_recorded(self, hashes: set[str]) -> None:
        """The ledger holds `hashes`: their files are not opened again while unchanged."""
        with self._db:
            self._db.executemany("UPDATE files SET recorded = 1 WHERE sha256 = ?",
                                 [(h,) for h in hashes])
