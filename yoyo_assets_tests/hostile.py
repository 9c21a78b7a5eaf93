"""Hostile and careless files for every stream a night reads (documents, operators'
corrections, corpus tuples), each with the reason its rejection must give; and an audit of the
files a piece of code opens (`sys.addaudithook`).

A kind is placed by `place(kind, folder, name, outside)`: `outside` is a folder beside the data
root holding a secret file that nothing may open.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import Iterator

from .helpers import NIGHT, arrived_during

#: A JSON value nested 1,000 levels (Python's parser recurses: RecursionError before the fix).
DEEP_JSON = '{"name": "Ada", "notes": ' + "[" * 1000 + "]" * 1000 + "}"
#: A 5,000-digit integer (Python refuses over 4,300 digits with a ValueError).
BIG_NUMBER = '{"name": "Ada", "id": ' + "9" * 5000 + "}"

#: kind -> the reason's substring a rejection of it must hold.
FILE_KINDS = {
    "fifo": "a FIFO, not a regular file",
    "folder": "a folder, not a regular file",
    "dangling": "a link to nothing",
    "loop": "Too many levels of symbolic links",
    "outside": "outside the data root",
}
#: kind -> (JSON text, reason substring), for every stream that reads JSON.
JSON_KINDS = {
    "deep": (DEEP_JSON, "nested deeper than"),
    "big_number": (BIG_NUMBER, "a number too large"),
}


def place(kind: str, folder: Path, name: str, outside: Path) -> Path:
    """Make the special file `kind` of FILE_KINDS as `folder/name`, arrived during NIGHT."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(folder / "nothing-here")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "outside":
        path.symlink_to(secret(outside))
    else:
        raise ValueError(kind)
    when = arrived_during(NIGHT)
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def write(path: Path, data: bytes | str) -> Path:
    """A regular file arrived during NIGHT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (arrived_during(NIGHT),) * 2)
    return path


def secret(outside: Path) -> Path:
    """The file outside the data root that links point at (made once)."""
    path = outside / "secret.md"
    if not path.exists():
        write(path, "**Mallory**: the root password is hunter2.\n")
    return path


class OpenAudit:
    """Paths opened (audit event `open`) while `recording()` is active, in this process."""

    def __init__(self):
        self.opened: list[str] = []
        self._active = False
        sys.addaudithook(self._hook)  # hooks cannot be removed: this one only records

    def _hook(self, event: str, args: tuple) -> None:
        if self._active and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.opened.append(os.fsdecode(args[0]))

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[str]]:
        self.opened, self._active = [], True
        try:
            yield self.opened
        finally:
            self._active = False

    def breaches(self, outside: Path) -> list[str]:
        """Opened paths that resolve inside `outside`, or to a FIFO (whose open blocks)."""
        found = []
        for path in self.opened:
            real = os.path.realpath(path)
            is_fifo = os.path.exists(real) and stat.S_ISFIFO(os.stat(real).st_mode)
            if Path(real).is_relative_to(outside.resolve()) or is_fifo:
                found.append(path)
        return found


AUDIT = OpenAudit()
