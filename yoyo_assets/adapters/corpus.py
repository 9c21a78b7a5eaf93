"""Corpus buckets: JSONL tuples that other systems append, validated line by line.

`engineering-<tenant>` holds SFT examples (`{"messages": [...]}` or `{"prompt", "completion"}`),
`apprenticeship-<tenant>` holds DPO pairs (`prompt`, `chosen`, `rejected`, each a string or a
message list), `extraction-<tenant>` SFT examples of the entity extractor's prompt and answer
and DPO pairs from operators' corrections (the confirmed answer chosen over the extractor's). A
tuple's identity is the SHA-256 of its canonical JSON, so exact duplicates are dropped whatever
their key order or whitespace; near-duplicates are reported (MinHash LSH).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ..shared.input_files import (InvalidJson, UnusableFile, isolated, parse_json,
                                  read_text_lines)
from ..shared.json_schema import schema_violation
from ..shared.jsonl import InvalidLine
from ..shared.text import printable

#: Bucket role -> training kind. `extraction` holds SFT tuples that teach the entity extractor
#: (datagraph/corrections/tuples.py) and the DPO pairs of operators' corrections: its adapter is
#: trained by SFT, then a DPO pass over the pairs (the pairs' rejected answers are the
#: extractor's own), and served to Phase 1.
ROLES = {"engineering": "sft", "apprenticeship": "dpo", "extraction": "sft+dpo"}

#: Longest tuple accepted, in characters of its canonical JSON (about 4 characters a token:
#: 64 KiB is far beyond the 512-token training length, so only runaway records are refused).
DEFAULT_MAX_TUPLE_CHARS = 64 * 1024

#: Largest bucket file read, bytes (a night's harvest of 1,000 commits at the 48 KiB diff cap
#: is ~50 MiB).
MAX_FILE_BYTES = 256 * 2**20

_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}
_MESSAGE = {
    "type": "object",
    "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string"}},
    "required": ["role", "content"],
}
_MESSAGES = {"type": "array", "minItems": 1, "items": _MESSAGE}
_TEXT_OR_MESSAGES = {"oneOf": [_TEXT, _MESSAGES]}

SFT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "required": ["messages"],
         "properties": {"messages": {**_MESSAGES, "minItems": 2}}},
        {"type": "object", "required": ["prompt", "completion"],
         "properties": {"prompt": _TEXT_OR_MESSAGES, "completion": _TEXT_OR_MESSAGES}},
    ]
}
DPO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "chosen", "rejected"],
    "properties": {"prompt": _TEXT_OR_MESSAGES, "chosen": _TEXT_OR_MESSAGES,
                   "rejected": _TEXT_OR_MESSAGES},
}
#: A tuple that names `chosen` or `rejected` is a DPO pair; any other an SFT tuple.
_PAIR = {"anyOf": [{"required": ["chosen"]}, {"required": ["rejected"]}]}
SFT_OR_DPO_SCHEMA: dict[str, Any] = {"if": _PAIR, "then": DPO_SCHEMA, "else": SFT_SCHEMA}
_VALIDATORS = {"sft": jsonschema.Draft202012Validator(SFT_SCHEMA),
               "dpo": jsonschema.Draft202012Validator(DPO_SCHEMA),
               "sft+dpo": jsonschema.Draft202012Validator(SFT_OR_DPO_SCHEMA)}

_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def bucket_name(role: str, tenant: str) -> str:
    """`<role>-<tenant>`, e.g. `engineering-pointsav`.

    Raises:
        ValueError: an unknown role, or a tenant name that could leave its folder (only
            lower-case letters, digits, `-` and `_`, at most 63 characters).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {sorted(ROLES)}")
    if not _SAFE_NAME.match(tenant):
        raise ValueError(f"unsafe tenant name {tenant!r}: use [a-z0-9_-], starting alphanumeric")
    return f"{role}-{tenant}"


@dataclass(frozen=True)
class CorpusTuple:
    """One valid tuple: its hash (SHA-256 of canonical JSON), record, and where it was read."""

    sha256: str
    record: dict[str, Any]
    path: str
    line: int


@dataclass
class BucketScan:
    """A bucket as of a night: the files read, valid unique tuples (file order), invalid lines,
    exact duplicates dropped, and near-duplicate pairs reported as `(path:line, path:line)`."""

    files: list[Path] = field(default_factory=list)
    tuples: list[CorpusTuple] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    duplicates: int = 0
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)

    def pending(self, trained: set[str]) -> list[CorpusTuple]:
        """Tuples whose hash no adapter version lists in `trained`."""
        return [t for t in self.tuples if t.sha256 not in trained]


def canonical_hash(record: dict[str, Any]) -> str:
    """SHA-256 hex of the record's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tuple_kind(record: dict[str, Any]) -> str:
    """"dpo" for a record that names `chosen` or `rejected`, else "sft" (how a bucket of kind
    "sft+dpo" tells its tuples apart)."""
    return "dpo" if "chosen" in record or "rejected" in record else "sft"


def check_line(text: str, kind: str, max_chars: int = DEFAULT_MAX_TUPLE_CHARS) -> dict[str, Any]:
    """Parse and validate one JSONL line as a tuple of `kind` ("sft", "dpo", or "sft+dpo":
    either, by `tuple_kind`).

    Raises:
        ValueError: not JSON (or nested too deeply, a number too large), not an object, over
            `max_chars`, or a schema violation (the message names the field).
    """
    if len(text) > max_chars:
        raise ValueError(f"over-long tuple: {len(text)} characters, limit {max_chars}")
    try:
        record = parse_json(text)
    except InvalidJson as exc:
        raise ValueError(f"not JSON: {exc.reason}") from None
    if not isinstance(record, dict):
        raise ValueError(f"not an object: {type(record).__name__}")
    violation = schema_violation(_VALIDATORS[kind], record)
    if violation:
        raise ValueError(f"schema violation {violation}")
    return record


def _shingles(record: dict[str, Any]) -> set[bytes]:
    words = json.dumps(record, sort_keys=True, ensure_ascii=False).lower().split()
    return {" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))}


def _lines_of(path: Path, root: Path, arrived_by: float) -> list[str] | None:
    """The lines of one bucket file, or None when it arrived after `arrived_by` (or is gone).

    Raises:
        ValueError: not a regular file inside `root`, over MAX_FILE_BYTES, unreadable, not
            UTF-8.
    """
    try:
        if os.lstat(path).st_mtime > arrived_by:
            return None
        lines, found = read_text_lines(path, root, MAX_FILE_BYTES)
    except FileNotFoundError:
        return None
    except UnusableFile as exc:
        raise ValueError(f"unusable file: {exc.reason}") from None
    # A link that arrived in time to a file that did not.
    return None if found.st_mtime > arrived_by else lines


def scan_bucket(folder: Path, kind: str, arrived_by: float,
                max_chars: int = DEFAULT_MAX_TUPLE_CHARS,
                near_duplicate_threshold: float = 0.9, root: Path | None = None) -> BucketScan:
    """Read every `*.jsonl` file in `folder` modified by `arrived_by` (Unix seconds), in name
    order. Blank lines are skipped; bad lines are reported and skipped; the rest are kept once
    each. Only regular files inside `root` (default: the folder holding the buckets), links
    followed, are read; any other entry is one invalid "line 0" naming it. Near-duplicates:
    estimated Jaccard similarity of word 3-grams >= the threshold (MinHash, 128 permutations,
    from datasketch)."""
    # Imported here: datasketch loads scipy (~0.6 s), which no Phase 1 process needs.
    from datasketch import MinHash, MinHashLSH

    scan = BucketScan()
    seen: set[str] = set()
    lsh = MinHashLSH(threshold=near_duplicate_threshold, num_perm=128)
    root = folder.parent if root is None else root
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        name = printable(str(path))
        try:
            lines = _lines_of(path, root, arrived_by)
        except ValueError as exc:
            scan.invalid.append(InvalidLine(name, 0, str(exc)))
            continue
        if lines is None:
            continue
        scan.files.append(path)
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                record = isolated(check_line, text, kind, max_chars)
            except ValueError as exc:
                scan.invalid.append(InvalidLine(name, number, str(exc)))
                continue
            digest = canonical_hash(record)
            if digest in seen:
                scan.duplicates += 1
                continue
            seen.add(digest)
            where = f"{path}:{number}"
            signature = MinHash(num_perm=128)
            signature.update_batch(list(_shingles(record)))
            scan.near_duplicates.extend((other, where) for other in lsh.query(signature))
            lsh.insert(where, signature)
            scan.tuples.append(CorpusTuple(digest, record, str(path), number))
    return scan
