"""Adapter versions on local disk: `<adapters root>/<tenant>/<role>/v<N>/`.

A version is written whole into a staging folder beside its final place and renamed into
`v<N>` (one `rename(2)`, atomic on one filesystem), under an exclusive lock so that N is strictly
increasing per tenant and role. A crash leaves either no `v<N>` or a complete one; leftover
staging folders are removed before the next training. Each version holds the PEFT adapter files, the
tokenizer files and `manifest.json`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..faults import crash_point
from .corpus import bucket_name

MANIFEST = "manifest.json"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class AdapterVersion:
    """One committed version: its number, folder and parsed manifest."""

    number: int
    path: Path
    manifest: dict[str, Any]

    @property
    def passed_quality_gate(self) -> bool:
        return bool(self.manifest.get("quality_gate", {}).get("passed"))


def adapter_folder(root: Path, tenant: str, role: str) -> Path:
    """`<root>/<tenant>/<role>`.

    Raises:
        ValueError: an unknown role or a tenant name that could leave the root (see bucket_name).
    """
    bucket_name(role, tenant)  # validates both names
    folder = (root / tenant / role).resolve()
    if root.resolve() not in folder.parents:
        raise ValueError(f"adapter folder {folder} is outside {root}")
    return folder


def versions(folder: Path) -> list[AdapterVersion]:
    """Committed versions in `folder`, oldest first. A `v<N>` without a readable manifest is not
    a version (it cannot come from `commit_version`, but a hand-made one is ignored, not trusted)."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = _VERSION.match(path.name)
        if not match:
            continue
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(AdapterVersion(int(match.group(1)), path, manifest))
    return sorted(found, key=lambda v: v.number)


def trained_hashes(folder: Path) -> set[str]:
    """Hashes of every tuple that some version in `folder` used: trained on or held out for its
    evaluation. The rest of a bucket is pending."""
    return {h for v in versions(folder)
            for h in v.manifest.get("trained_tuples", []) + v.manifest.get("eval_tuples", [])}


def version_for_night(folder: Path, night: str) -> AdapterVersion | None:
    """The newest version trained for `night` (a partition key), if any."""
    matching = [v for v in versions(folder) if v.manifest.get("night") == night]
    return matching[-1] if matching else None


def serving_version(folder: Path) -> AdapterVersion | None:
    """The newest version that passed its quality gate: the one to serve, if any."""
    passed = [v for v in versions(folder) if v.passed_quality_gate]
    return passed[-1] if passed else None


def served_name(version: AdapterVersion) -> str:
    """The model name a version is served under: `<tenant>-<role>-v<N>`."""
    m = version.manifest
    return f"{m['tenant']}-{m['role']}-v{version.number}"


def folder_sha256(folder: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file under `folder`, in path order: the
    identity of a base model folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def staging_folder(folder: Path) -> Path:
    """A fresh, empty staging folder inside `folder` (same filesystem as the versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=folder))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_version(folder: Path, staged: Path, manifest: dict[str, Any]) -> AdapterVersion:
    """Write `manifest` into `staged`, flush it to disk and rename it into the next `v<N>`.

    Raises:
        ValueError: `staged` is not a staging folder of `folder`.
    """
    if staged.parent != folder or not staged.name.startswith(_STAGING_PREFIX):
        raise ValueError(f"{staged} is not a staging folder of {folder}")
    with _locked(folder):
        number = max((v.number for v in versions(folder)), default=0) + 1
        manifest = {**manifest, "version": number}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        for item in [*staged.rglob("*"), staged]:
            _fsync(item)
        crash_point("registry.before_rename")
        target = folder / f"v{number}"
        os.rename(staged, target)
        crash_point("registry.after_rename")
        _fsync(folder)  # the new directory entry; the version's files were flushed above
    return AdapterVersion(number, target, manifest)


def remove_stale_staging(folder: Path) -> int:
    """Remove staging folders left by crashed trainings; returns how many. Call it before a
    training starts: only one training runs at a time (the GPU run tag), so none is in use."""
    removed = 0
    with _locked(folder):
        for leftover in folder.glob(_STAGING_PREFIX + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed

