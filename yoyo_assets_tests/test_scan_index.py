"""A night opens only what changed: the scan index passes over files whose metadata is unchanged
since the ledger recorded them; a new file, a rewrite in place (even one that restores size and
modification time) and a file the ledger does not hold yet are read. Files opened are counted
by Python's audit hook, independently of the scan's own counters."""

import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from yoyo_assets.datagraph.documents.streams import scan_streams
from yoyo_assets.datagraph.documents.scan_index import ScanIndex

_opened: list[str] = []
_listed: list[str] = []  # folders listed by name (the stream scan lists through an open fd)
_counting: list[Path] = []  # the data root whose opens are counted; empty: none


def _count_opens(event: str, args: tuple) -> None:
    if _counting and event == "open" and isinstance(args[0], (str, Path)) \
            and str(args[0]).startswith(str(_counting[0])):
        _opened.append(str(args[0]))
    if _counting and event == "os.listdir" and isinstance(args[0], (str, Path)) \
            and str(args[0]).startswith(str(_counting[0])):
        _listed.append(str(args[0]))


sys.addaudithook(_count_opens)  # process-wide and permanent: inert unless _counting is set


def scan_counting_opens(root: Path, index: ScanIndex):
    """A scan of `root` with `index` (arrived by now), and the document files it opened."""
    _opened.clear()
    _listed.clear()
    _counting.append(root)
    try:
        scan = scan_streams(root, time.time() + 1, index=index)
    finally:
        _counting.clear()
    return scan, [p for p in _opened  # documents: not the index, not the stream folders
                  if not p.startswith(str(root / "index")) and Path(p).parent != root]


def note(root: Path, name: str, text: str) -> Path:
    path = root / "research" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def recorded_night(root: Path, index: ScanIndex):
    """A scan whose documents the ledger then holds (as the documents asset marks them)."""
    scan, _ = scan_counting_opens(root, index)
    index.mark_recorded({d.sha256 for d in scan.documents})
    return scan


def test_a_night_with_nothing_new_opens_no_document(tmp_path):
    root = tmp_path / "data"
    for i in range(2000):
        note(root, f"n{i:05}.md", f"Note {i}: Ada Lovelace met Charles Babbage in London.\n")
    index = ScanIndex(root / "index" / "documents.sqlite")
    first = recorded_night(root, index)
    assert len(first.documents) == 2000 and first.opened == 2000

    for night in ("decided by SQLite", "decided by the settled map it left"):
        again, opened = scan_counting_opens(root, index)
        assert opened == [] and again.opened == 0, night
        assert again.unchanged == 2000 and again.documents == [], night
    assert len(list((root / "index").glob("settled-*"))) == 1  # the research folder's

    for i in range(5):  # fewer than 1% of the map: it lags, SQLite decides these five
        note(root, f"late{i}.md", f"Late note {i}: Grace Hopper met Alan Turing.\n")
    assert len(recorded_night(root, index).documents) == 5
    for _ in range(2):
        again, opened = scan_counting_opens(root, index)
        assert opened == [] and again.unchanged == 2005 and again.documents == []


@pytest.mark.parametrize("quiet_nights", [0, 1])  # 1: the settled map holds the files
def test_new_rewritten_and_unrecorded_files_are_read_again(tmp_path, quiet_nights):
    root = tmp_path / "data"
    kept = note(root, "kept.md", "Ada met Charles.\n")
    rewritten = note(root, "rewritten.md", "Grace met Alan.\n")
    pending = note(root, "pending.md", "Maria met Pierre.\n")
    gone = note(root, "gone.md", "Emmy met David.\n")
    index = ScanIndex(root / "index" / "documents.sqlite")
    scan, _ = scan_counting_opens(root, index)
    # The ledger holds all but `pending` (its extraction failed, say).
    index.mark_recorded({d.sha256 for d in scan.documents if d.path != str(pending)})
    for _ in range(quiet_nights):
        scan, opened = scan_counting_opens(root, index)
        assert opened == [str(pending)] and scan.unchanged == 3

    before = rewritten.stat()
    rewritten.write_text("Grace met Linus.\n")  # same size; its mtime put back below
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    gone.unlink()
    added = note(root, "added.md", "Ada met Mary.\n")

    scan, opened = scan_counting_opens(root, index)
    assert sorted(opened) == sorted(str(p) for p in (rewritten, pending, added))
    assert {d.path for d in scan.documents} == {str(rewritten), str(pending), str(added)}
    assert "Linus" in next(d.text for d in scan.documents if d.path == str(rewritten))
    assert scan.unchanged == 1  # kept
    # A deletion: the folder is listed once more, for the index and the settled map together.
    assert _listed == [str(root / "research")]
    indexed = {row[0] for row in sqlite3.connect(root / "index" / "documents.sqlite").execute(
        "SELECT path FROM files")}
    assert str(gone) not in indexed and str(kept) in indexed

    index.mark_recorded({d.sha256 for d in scan.documents})
    for _ in range(2):  # SQLite decides the files read last night; the settled map, after
        scan, opened = scan_counting_opens(root, index)
        assert opened == [] and scan.unchanged == 4
    gone.write_text("Emmy met David again.\n")  # a new file where a settled one was
    scan, opened = scan_counting_opens(root, index)
    assert opened == [str(gone)] and scan.unchanged == 4


def test_a_rejected_file_is_reported_every_night_but_read_once(tmp_path):
    root = tmp_path / "data"
    bad = root / "contacts" / "bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "Ada",\n "city": }\n')
    index = ScanIndex(root / "index" / "documents.sqlite")
    first, opened = scan_counting_opens(root, index)
    assert opened == [str(bad)]
    second, opened = scan_counting_opens(root, index)
    assert opened == [] and second.rejected == first.rejected
    assert "malformed JSON" in second.rejected[0].reason and second.rejected[0].line == 2


def test_without_its_index_a_scan_reads_everything_and_counts_nothing_twice(tmp_path):
    """The index is a cache: losing it makes a night slower, never wrong."""
    root = tmp_path / "data"
    note(root, "a.md", "Ada met Charles.\n")
    note(root, "b.md", "Ada met Charles.\n")  # the same bytes: one document
    index_path = root / "index" / "documents.sqlite"
    for _ in range(2):  # the second leaves a settled map, which a new index file must not trust
        recorded_night(root, ScanIndex(index_path))
    index_path.unlink()
    scan, opened = scan_counting_opens(root, ScanIndex(index_path))
    assert len(opened) == 2 and len(scan.documents) == 1 and len(scan.duplicates) == 1


def test_files_that_arrive_after_the_night_are_left_for_their_own_night(tmp_path):
    root = tmp_path / "data"
    path = note(root, "late.md", "Ada met Charles.\n")
    future = time.time() + 3600
    os.utime(path, (future, future))
    index = ScanIndex(root / "index" / "documents.sqlite")
    assert scan_streams(root, time.time(), index=index).documents == []
    assert len(scan_streams(root, future, index=index).documents) == 1
