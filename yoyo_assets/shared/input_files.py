"""Opening files that someone else put under the data root, and parsing their JSON, so that no
file can stop a step: whatever is wrong with one file becomes a reason naming it.

Only a regular file that lies inside the data root once its links are followed is opened; a
FIFO, a device, a socket, a folder, a dangling link or a link loop is refused by what `lstat`
and `stat` say, before any `open` that could block (a FIFO's `open` waits for a writer). The
file is then opened non-blocking and checked again on the open descriptor, so a file swapped for
a FIFO between the check and the open is refused too. Reads stop one byte past the size limit.

JSON is parsed by the standard library with three limits it does not set itself: nesting depth
(its parser recurses: ~1,000 levels raise RecursionError, and every walk over the value after it
recurses too), integer size (Python refuses over 4,300 digits with a ValueError, see
`sys.get_int_max_str_digits`) and, where asked, duplicate keys (the standard parser keeps the
last silently; RFC 8259 §4 leaves their meaning undefined).
"""

from __future__ import annotations

import json
import os
import stat as stat_module
from pathlib import Path
from typing import Any, Callable, TypeVar

from .text import printable

#: Nesting depth a JSON value may have (objects and arrays). The project's records are 4 deep at
#: most (a DPO pair of message lists); the limit is far from Python's recursion limit.
MAX_JSON_DEPTH = 64
#: Characters of untrusted text kept in an error message (file names, keys, values).
MAX_QUOTED_CHARS = 200


_T = TypeVar("_T")


def isolated(parse: Callable[..., _T], *args: Any) -> _T:
    """`parse(*args)`, with any exception but a ValueError turned into one that names its type:
    the failure of one line or file, whatever it is (a RecursionError deep in a library), stays
    that line's or file's rejection instead of stopping the step."""
    try:
        return parse(*args)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - the point of this function
        raise ValueError(f"unusable: {type(exc).__name__}: {quoted(str(exc))}") from None


class UnusableFile(ValueError):
    """A file that is not opened or not read, with `reason` (no path: the caller names it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidJson(ValueError):
    """Text that is not acceptable JSON: malformed, too deep, a number too large, a duplicate
    key. `line` is the 1-based line where the parser says, else None."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(reason)
        self.reason, self.line = reason, line


def quoted(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """`text` as a Python literal safe for one log line: control characters, newlines and lone
    surrogates escaped (repr), cut to `limit` characters with the number cut said."""
    shown = repr(printable(text[:limit]))
    return shown if len(text) <= limit else f"{shown} (+{len(text) - limit} characters)"


def _kind(mode: int) -> str:
    for test, name in ((stat_module.S_ISDIR, "a folder"), (stat_module.S_ISFIFO, "a FIFO"),
                       (stat_module.S_ISSOCK, "a socket"), (stat_module.S_ISCHR, "a device"),
                       (stat_module.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: Path, root: Path | None) -> os.stat_result:
    """The `stat` of `path` (its links followed) when it is a regular file inside `root`
    (None: anywhere, for files an operator names, such as a labelled set).

    Raises:
        UnusableFile: a dangling link or a link loop, a target outside `root` (resolved), or
            not a regular file (folder, FIFO, socket, device); an OS error reading the metadata.
        FileNotFoundError: `path` itself is gone (removed while scanning).
    """
    try:
        os.lstat(path)
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        if os.path.lexists(path):
            raise UnusableFile("a link to nothing (dangling symlink)") from None
        raise
    except OSError as exc:  # ELOOP: a link loop; EACCES: a folder on the way
        raise UnusableFile(f"unreadable: {exc.strerror or exc}") from None
    if root is not None and not real.is_relative_to(Path(os.path.realpath(root))):
        raise UnusableFile(f"a link to {quoted(str(real))}, outside the data root: refused")
    found = os.stat(real)
    if not stat_module.S_ISREG(found.st_mode):
        raise UnusableFile(f"{_kind(found.st_mode)}, not a regular file")
    return found


def read_regular_file(path: Path, root: Path | None, max_bytes: int
                      ) -> tuple[bytes, os.stat_result]:
    """The bytes of `path`, a regular file inside `root` (see `check_regular_file`), and its
    `stat`; at most `max_bytes` bytes.

    Raises:
        UnusableFile: as `check_regular_file`; over `max_bytes` (by its size, before reading,
            or while reading when it grew); an OS error reading it.
        FileNotFoundError: `path` is gone.
    """
    found = check_regular_file(path, root)
    if found.st_size > max_bytes:
        raise UnusableFile(f"oversized: {found.st_size} bytes, limit {max_bytes}")
    try:
        descriptor = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnusableFile(f"unreadable: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as file:
        opened = os.fstat(file.fileno())
        if not stat_module.S_ISREG(opened.st_mode):  # swapped since the check
            raise UnusableFile(f"{_kind(opened.st_mode)}, not a regular file")
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise UnusableFile(f"unreadable: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UnusableFile(f"oversized: over {max_bytes} bytes (it grew while read)")
    return data, opened


def read_text_lines(path: Path, root: Path | None, max_bytes: int
                    ) -> tuple[list[str], os.stat_result]:
    """The lines of `path`, a UTF-8 text file read as `read_regular_file` reads, and its
    `stat`.

    Raises:
        UnusableFile: as `read_regular_file`; not UTF-8 (with the byte's offset); an OS error.
        FileNotFoundError: `path` is gone.
    """
    try:
        data, found = read_regular_file(path, root, max_bytes)
    except (UnusableFile, FileNotFoundError):
        raise
    except OSError as exc:
        raise UnusableFile(f"unreadable: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8").splitlines(), found
    except UnicodeDecodeError as exc:
        raise UnusableFile(f"not UTF-8: byte at offset {exc.start}") from None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = {}
    for key, value in pairs:
        if key in result:
            raise InvalidJson(f"duplicate key {quoted(key)}")
        result[key] = value
    return result


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when `value` nests objects or arrays deeper than `limit` (walked without
    recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH,
               duplicate_keys: bool = True) -> Any:
    """`text` parsed as JSON, within the limits of this module's docstring.

    Raises:
        InvalidJson: malformed (with the line), nested deeper than `max_depth`, an integer over
            Python's digit limit, or (with `duplicate_keys` False) a key given twice in one
            object.
    """
    hook = None if duplicate_keys else _refuse_duplicates
    try:
        value = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                          exc.lineno) from None
    except RecursionError:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels") from None
    except InvalidJson:
        raise
    except ValueError as exc:  # an integer over sys.get_int_max_str_digits() digits
        raise InvalidJson(f"a number too large: {str(exc)[:120]}") from None
    if _depth_exceeds(value, max_depth):
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels")
    return value
