"""Writes that readers see whole or not at all, and that survive a crash once made: stage beside
the target, flush to disk, rename over it (POSIX rename is atomic within a filesystem), flush the
folder that holds the new name."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def flush(path: Path) -> None:
    """fsync one file or folder (a folder: its entries, i.e. names created or renamed in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, and `folder` itself."""
    for item in [*folder.rglob("*"), folder]:
        flush(item)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A fresh, empty folder beside `target` for the block to fill; when the block ends without
    an error it is flushed and renamed to `target`, else removed. `target` must not exist (a
    rename over a non-empty folder fails with OSError); callers hold a lock against a second
    writer."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-staging-", dir=target.parent))
    try:
        yield staging
        flush_tree(staging)
        os.rename(staging, target)
        flush(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: Path, text: str | bytes, mtime: float | None = None) -> None:
    """Replace `path` with `text` (a str is written as UTF-8) whole; `mtime` (Unix seconds), if
    given, becomes its modification time before it appears under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode() if isinstance(text, str) else text)
            out.flush()
            os.fsync(out.fileno())
        if mtime is not None:
            os.utime(temporary, (mtime, mtime))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    flush(path.parent)
