"""What the streams held at the last scan, so that a night opens only the files that changed.

Like git's index: each file is remembered by its path with its size, modification and change
times (nanoseconds) and inode, the SHA-256 of its bytes, and whether that hash is in the ledger.
A file whose metadata is unchanged and whose hash the ledger holds is not opened again; any
change (a new file, a rewrite in place, even one that keeps size and modification time: the
change time moves) makes it read again. The index only decides what to read: the ledger in the
graph still decides what is new, so a lost or stale index costs a slower night, never a
document counted twice or missed.

Stored in SQLite (`<data root>/index/documents.sqlite`), with one file per stream folder beside
it (`settled-<key>.marshal`) that holds the metadata of the folder's *settled* files: those whose
hash the ledger held, metadata unchanged, when a scan last looked. A scan compares each listed
file with that map in memory and sends only the others to SQLite, so a night with nothing new
costs one `stat` per file and a dictionary look-up (docs/benchmarks.md, "The documents step over
a long history"). The map is a cache of what SQLite says: it is only used while it carries the
index's generation (a fresh or replaced SQLite file makes a new one), and a file the map does
not match is decided by SQLite as before.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from ...shared.atomic import write_atomically

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER,
    sha256 TEXT, recorded INTEGER NOT NULL DEFAULT 0, rejection TEXT, line INTEGER);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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


class Stat(NamedTuple):
    """The metadata a file is recognised by: size (bytes), modification and change times (ns),
    inode. Equal to the plain tuple of the same four numbers."""

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
        self._folder = path.parent if path is not None else None
        self._db = sqlite3.connect(path if path is not None else ":memory:")
        self._db.executescript(SCHEMA)
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', ?)",
                             (uuid.uuid4().hex,))
        self._generation = self._db.execute(
            "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def triage(self, folder: str, files: Iterable[tuple[str, tuple[int, int, int, int]]],
               arrived_by: float) -> Triage:
        """Sort the files now in `folder` (an iterable of name and (size, mtime_ns, ctime_ns,
        inode), consumed once): those modified after `arrived_by` (Unix seconds) are left for a
        later night; entries of files gone from the folder are forgotten. A settled file whose
        metadata is unchanged is counted in memory; only the other due files go to SQLite."""
        prefix, settled = folder + os.sep, self._load_settled(folder)
        candidates, unchanged, not_due = [], 0, 0
        for name, stat in files:
            if stat[1] / 1e9 > arrived_by:  # as Python's st_mtime compares
                not_due += name in settled
            elif settled.get(name) == stat:
                unchanged += 1
            else:
                candidates.append((name, stat))
        triage = self._triage_in_sqlite((prefix + name, *stat) for name, stat in candidates)
        # Listed again only on nights when files were deleted; at most once for both uses.
        names_now = functools.cache(lambda: set(_names(folder)))
        self._forget_gone(folder, unchanged, names_now)
        opened = {path for path, _ in triage.to_read} | {path for path, _, _ in triage.rejected}
        triage.unchanged = unchanged + len(candidates) - len(opened)
        fresh = [(name, stat) for name, stat in candidates if prefix + name not in opened]
        if self._update_settled(settled, unchanged + not_due, candidates, fresh, names_now):
            self._save_settled(folder, settled)
        return triage

    def _update_settled(self, settled: dict, matched: int, candidates: list, fresh: list,
                        names_now: Callable[[], set[str]]) -> bool:
        """Bring the folder's settled map up to date when more than 1% of it is out of date:
        entries of files gone (`settled` minus the `matched` ones listed, minus `candidates`;
        `names_now()`: the folder's names) or changed (`candidates`), and files newly settled
        (`fresh`). True when it changed (to be saved). Until then SQLite decides those few each
        night; a map that lags is never wrong, only slower (a changed file's metadata no longer
        matches its entry)."""
        changed = sum(name in settled for name, _ in candidates)
        gone = len(settled) - matched - changed
        if gone + changed + len(fresh) <= len(settled) // 100:
            return False
        if gone:
            present = names_now()
            for name in [name for name in settled if name not in present]:
                del settled[name]
        for name, _ in candidates:
            settled.pop(name, None)
        settled.update(fresh)
        return True

    def _triage_in_sqlite(self, rows: Iterable[tuple]) -> Triage:
        """`triage` of the listed due files the settled map did not match (path, size,
        mtime_ns, ctime_ns, inode each): one pass in SQLite returns only those to open or
        report (the others are unchanged)."""
        with self._db:
            self._db.execute("DROP INDEX IF EXISTS temp.present_in_order")
            self._db.execute("DELETE FROM present")
            self._db.executemany("INSERT INTO present VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute(SORTED_LISTING)
        found = self._db.execute(
            "SELECT p.path, p.size, p.mtime_ns, p.ctime_ns, p.inode, "
            f"f.path IS NOT NULL AND {_SAME}, f.sha256, f.rejection, f.line "
            "FROM present p INDEXED BY present_in_order LEFT JOIN files f USING (path) "
            f"WHERE NOT (f.path IS NOT NULL AND {_SAME} AND f.recorded = 1) ORDER BY p.path",
        ).fetchall()
        triage = Triage()
        for path, size, mtime_ns, ctime_ns, inode, same, sha256, rejection, line in found:
            if same and sha256 is None and rejection is not None:
                triage.rejected.append((path, rejection, line))
            else:
                triage.to_read.append((path, Stat(size, mtime_ns, ctime_ns, inode)))
        return triage

    def _forget_gone(self, folder: str, unchanged: int,
                     names_now: Callable[[], set[str]]) -> None:
        """Forget the index's entries of files gone from `folder`. Counting first spares the
        search on most nights: each listed due file the index holds is either one of the
        `unchanged` ones the settled map matched or in `present`. Indexed files that are not due
        tonight (a backfill of an earlier night) make it search too, and it keeps them."""
        prefix, end = folder + os.sep, folder + chr(ord(os.sep) + 1)
        indexed = self._db.execute("SELECT count(*) FROM files WHERE path >= ? AND path < ?",
                                   (prefix, end)).fetchone()[0]
        listed = self._db.execute(
            "SELECT count(*) FROM present JOIN files USING (path)").fetchone()[0]
        if indexed <= unchanged + listed:
            return
        with self._db:
            self._db.execute("DELETE FROM present")
            self._db.executemany("INSERT INTO present (path) VALUES (?)",
                                 ((prefix + name,) for name in names_now()))
            self._db.execute("DELETE FROM files WHERE path >= ? AND path < ? AND path NOT "
                             "IN (SELECT path FROM present)", (prefix, end))

    def _settled_path(self, folder: str) -> Path | None:
        """The folder's settled map file (None for an index in memory: no map)."""
        if self._folder is None:
            return None
        key = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
        return self._folder / f"settled-{key}.marshal"

    def _load_settled(self, folder: str) -> dict[str, tuple[int, int, int, int]]:
        """The folder's settled map ({} when there is none, or it belongs to another index
        file or folder, or cannot be read: SQLite then decides every file). `marshal`, not
        JSON: a million entries load in ~1.3 s instead of ~2.5 s (docs/benchmarks.md); the file
        is the pipeline's own, in its index folder, never one a stream delivers."""
        path = self._settled_path(folder)
        if path is None:
            return {}
        try:
            generation, owner, settled = marshal.loads(path.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return {}
        ours = (generation, owner) == (self._generation, folder) and isinstance(settled, dict)
        return settled if ours else {}

    def _save_settled(self, folder: str, settled: dict[str, tuple[int, int, int, int]]) -> None:
        path = self._settled_path(folder)
        if path is not None:
            write_atomically(path, marshal.dumps((self._generation, folder, settled)))

    def remember(self, path: str, stat: Stat, sha256: str | None, rejection: str | None = None,
                 line: int | None = None) -> None:
        """What reading `path` (with metadata `stat`) gave: its hash, or why it was rejected.
        Kept until `commit`."""
        self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                         (path, *stat, sha256, rejection, line))

    def commit(self) -> None:
        """Make what `remember` recorded durable."""
        self._db.commit()

    def mark_recorded(self, hashes: set[str]) -> None:
        """The ledger holds `hashes`: their files are not opened again while unchanged (the
        settled maps learn them at the next scan)."""
        with self._db:
            self._db.executemany("UPDATE files SET recorded = 1 WHERE sha256 = ?",
                                 [(h,) for h in hashes])


def _names(folder: str) -> list[str]:
    """The names in `folder` now ([] when it is gone)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
