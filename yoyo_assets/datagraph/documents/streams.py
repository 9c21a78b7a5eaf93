"""Reading the night's documents from the three streams, with a clear error for each bad one.

A document's identity is the SHA-256 of its bytes. Nothing here touches the graph or Dagster:
`scan_streams` returns what is on disk, and the `documents` asset filters it through the ledger.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

import yaml

from ...shared.input_files import (InvalidJson, UnusableFile, parse_json, quoted,
                                  read_regular_file)
from ...shared.text import printable, unsafe_character
from .scan_index import ScanIndex, Stat

#: Stream name -> file patterns under `<data root>/<stream>/`.
STREAM_PATTERNS: dict[str, tuple[str, ...]] = {
    "transcripts": ("*.md",),
    "research": ("*.yaml", "*.yml", "*.md"),
    "contacts": ("*.json",),
}

#: Default size limit of one document, in bytes (the largest shipped transcript is ~40 KB).
DEFAULT_MAX_DOCUMENT_BYTES = 2 * 1024 * 1024

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Nodes a YAML document may expand to with its aliases followed ("billion laughs" guard): the
#: shipped research notes have under 300.
MAX_YAML_NODES = 10_000
#: A transcript's speaker turn: `**Name**: words` (the shipped corpora) or `Name: words`.
_SPEAKER_TURN = re.compile(r"^[ \t]*(?:\*\*[^*\n]{1,80}\*\*|[^\s:*#][^:\n]{0,80}?)[ \t]*:[ \t]*\S",
                           re.MULTILINE)


@dataclass(frozen=True)
class Document:
    """One readable document of a stream.

    `text` is what the model reads: the file's text, or for JSON the record re-serialised as
    YAML, one field per line (as many tokens, same content). `size_bytes` is the file's size in bytes and
    `modified_at` its modification time (Unix seconds), taken as its arrival time.
    """

    sha256: str
    stream: str
    path: str
    size_bytes: int
    modified_at: float
    text: str


@dataclass(frozen=True)
class Rejection:
    """A document turned away, with the file, the 1-based line where known, and why."""

    path: str
    stream: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


class DocumentError(ValueError):
    """Raised by `read_document` for a document that cannot be used; carries a `Rejection`."""

    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


class _SelfReference(Exception):
    """A YAML alias inside the node it refers to (args: that node)."""


def _alias_bomb(root: yaml.Node | None) -> tuple[str, int] | None:
    """(reason, 1-based line) if `root` expands past MAX_YAML_NODES nodes with its aliases
    followed, or refers to itself; else None. Counts shared nodes once per use, without
    expanding anything."""
    sizes: dict[int, int] = {}
    inside: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in inside:
            raise _SelfReference(node)
        inside.add(key)
        children: list = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        total = 1
        for child in children:
            total = min(total + size(child), MAX_YAML_NODES + 1)
        inside.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise OverflowError(node)
        return total

    if root is None:
        return None
    try:
        size(root)
    except OverflowError as exc:
        return (f"YAML alias expansion over {MAX_YAML_NODES} nodes (alias bomb)",
                exc.args[0].start_mark.line + 1)
    except _SelfReference as exc:
        return ("YAML alias refers to itself", exc.args[0].start_mark.line + 1)
    return None


def _read_text(path: Path, root: Path | None, max_bytes: int, reject
               ) -> tuple[bytes, str, float]:
    """The file's bytes, its text and its modification time, or a rejection: not a regular
    file inside `root`, unreadable, oversized, not UTF-8, empty, binary."""
    try:
        data, stat = read_regular_file(path, root, max_bytes)
    except UnusableFile as exc:
        raise reject(exc.reason) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject(f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                     _line_of_offset(data, exc.start)) from exc
    if not text.strip():
        raise reject("empty document")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise reject(f"binary content: NUL byte at offset {nul}", _line_of_offset(data, nul))
    return data, text, stat.st_mtime


def _json_record_as_lines(text: str, reject) -> str:
    """A JSON contact record (an object) as YAML block text, one field per line: chunks end at
    line breaks, and a small model reads `city: Cullman` better than JSON punctuation
    (docs/benchmarks.md)."""
    try:
        record = parse_json(text)
    except InvalidJson as exc:
        raise reject(exc.reason, exc.line) from None
    if not isinstance(record, dict):
        raise reject(f"expected a JSON object, found {type(record).__name__}", 1)
    return yaml.safe_dump(record, allow_unicode=True, sort_keys=False, width=2**31 - 1)


def _check_yaml(text: str, reject) -> None:
    """Parse once, as yaml.load does it, with the alias check between composing and building;
    the safe loader builds only plain data, so a `!!python/...` tag is an error here."""
    loader = _YAML_LOADER(text)
    try:
        root = loader.get_single_node()
        bomb = _alias_bomb(root)
        if bomb is not None:
            raise reject(*bomb)
        if root is not None:
            loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise reject(f"malformed YAML: {exc.problem or exc.context}",
                     mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise reject(f"malformed YAML: {exc}") from exc
    except RecursionError:  # libyaml composes ~1,000 levels; walking them recurses in Python
        raise reject("YAML nested too deeply") from None
    finally:
        loader.dispose()


def read_document(path: Path, stream: str, max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
                  root: Path | None = None) -> Document:
    """Read and check one document file.

    Checks, in order: a file name without control characters and in UTF-8, a regular file (its
    links followed) inside `root` (None: anywhere; the scan passes the data root), readable, at
    most `max_bytes` bytes, not empty, UTF-8, no NUL byte (binary),
    and for `.json` / `.yaml` / `.yml` that it parses (YAML with the safe loader only; a JSON
    contact record must be an object).

    Raises:
        DocumentError: naming the file, the line where the parser gives one, and the reason.
    """

    def reject(reason: str, line: int | None = None) -> DocumentError:
        return DocumentError(Rejection(printable(str(path)), stream, reason, line))

    # A file name that is not UTF-8 reaches Python as lone surrogates, which the graph refuses.
    problem = unsafe_character(str(path))
    if problem:
        raise reject(f"file name holds a {problem} (not UTF-8, or a control character): "
                     f"rename the file")
    data, text, modified_at = _read_text(path, root, max_bytes, reject)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = _json_record_as_lines(text, reject)
    elif suffix in (".yaml", ".yml"):
        _check_yaml(text, reject)
    elif stream == "transcripts" and not _SPEAKER_TURN.search(text):
        raise reject("transcript has no speaker turns (no line like '**Name**: words' or "
                     "'Name: words')")
    return Document(sha256=hashlib.sha256(data).hexdigest(), stream=stream, path=str(path),
                    size_bytes=len(data), modified_at=modified_at, text=text)


@dataclass
class StreamScan:
    """What `scan_streams` found: readable documents (unique by hash), rejections, duplicates
    (files whose bytes equal an earlier file's in the same scan), and how many files were
    opened and how many were passed over unopened (unchanged since the ledger recorded them)."""

    documents: list[Document] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    opened: int = 0
    unchanged: int = 0


def _stream_files(folder: Path, patterns: tuple[str, ...], odd: list[Path]):
    """(name, (size, mtime_ns, ctime_ns, inode)) of the regular files (or links to them) in
    `folder` that match `patterns` (`*.<suffix>`); a missing folder is empty, files removed
    meanwhile are left out. The other matching entries go to `odd`, to be rejected one by one
    when read, never indexed: names that are not valid text (not UTF-8), and entries that are
    not regular files (folders, FIFOs, sockets, devices, dangling links, link loops). Each file
    is `stat`ed by name relative to the open folder, the cheapest way Python has: a night over a
    long history is mostly these calls (docs/benchmarks.md).

    Raises:
        OSError: the folder exists but cannot be listed (not a folder, no permission).
    """
    suffixes = tuple(pattern.removeprefix("*") for pattern in patterns)
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    folder_unsafe = unsafe_character(str(folder)) is not None
    try:
        for name in os.listdir(descriptor):
            if not name.endswith(suffixes):
                continue
            if folder_unsafe or not name.isprintable() and unsafe_character(name):
                odd.append(folder / name)
                continue
            try:
                stat = os.stat(name, dir_fd=descriptor)
            except FileNotFoundError:
                if os.path.lexists(folder / name):  # a dangling link
                    odd.append(folder / name)
                continue
            except OSError:  # a link loop, or a folder on the way we may not enter
                odd.append(folder / name)
                continue
            if S_ISREG(stat.st_mode):
                yield name, (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            else:
                odd.append(folder / name)
    finally:
        os.close(descriptor)


def _read_into(scan: StreamScan, index: ScanIndex, path: Path, stat: Stat | None, stream: str,
               max_bytes: int, seen: set[str], data_root: Path) -> None:
    """Read one file into `scan` and what it gave into `index` (`stat` None: not indexed)."""
    scan.opened += 1
    try:
        document = read_document(path, stream, max_bytes, root=data_root)
    except FileNotFoundError:
        return  # removed while scanning
    except DocumentError as exc:
        scan.rejected.append(exc.rejection)
        if stat is not None:
            index.remember(str(path), stat, None, exc.rejection.reason, exc.rejection.line)
        return
    except Exception as exc:  # noqa: BLE001 - one file's failure, whatever it is, is its own
        scan.rejected.append(Rejection(printable(str(path)), stream,
                                       f"unreadable: {type(exc).__name__}: {quoted(str(exc))}"))
        return
    if stat is not None:
        index.remember(str(path), stat, document.sha256)
    if document.sha256 in seen:
        scan.duplicates.append(document.path)
        return
    seen.add(document.sha256)
    scan.documents.append(document)


def _list_stream(index: ScanIndex, folder: Path, patterns: tuple[str, ...], arrived_by: float,
                 scan: StreamScan, stream: str) -> tuple[list, list[Path]]:
    """The index's triage of `folder` (what to read) and its odd entries arrived by
    `arrived_by`; a folder that cannot be listed is one rejection."""
    odd: list[Path] = []
    try:
        triage = index.triage(str(folder), _stream_files(folder, patterns, odd), arrived_by)
    except OSError as exc:
        scan.rejected.append(Rejection(printable(str(folder)), stream,
                                       f"stream folder unreadable: {exc.strerror or exc}"))
        return [], []
    scan.unchanged += triage.unchanged
    scan.rejected += [Rejection(printable(path), stream, reason, line)
                      for path, reason, line in triage.rejected]
    arrived = []
    for path in sorted(odd):
        try:
            if path.lstat().st_mtime <= arrived_by:
                arrived.append(path)
        except FileNotFoundError:
            continue
    return triage.to_read, arrived


def scan_streams(data_root: Path, arrived_by: float,
                 max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
                 index: ScanIndex | None = None) -> StreamScan:
    """The documents under `data_root/<stream>/` whose modification time is at most `arrived_by`
    (Unix seconds), in a stable order (stream, then path). A missing stream folder is empty.

    Only regular files inside `data_root` (links followed) are read; every other matching
    entry, and any file that fails to read for whatever reason, is one rejection naming it.
    With `index`, a file unchanged since the ledger recorded its hash is not opened, and an
    unchanged rejected file is reported again without being opened (see scan_index.py); the
    index learns what this scan read. A night's cost then follows what changed, plus one `stat`
    per file. Without one, every file is read.
    """
    index = index or ScanIndex()
    scan, seen = StreamScan(), set()
    for stream, patterns in STREAM_PATTERNS.items():
        to_read, odd = _list_stream(index, data_root / stream, patterns, arrived_by, scan,
                                    stream)
        for path, stat in to_read:
            _read_into(scan, index, Path(path), stat, stream, max_bytes, seen, data_root)
        for path in odd:
            _read_into(scan, index, path, None, stream, max_bytes, seen, data_root)
        index.commit()
    return scan
