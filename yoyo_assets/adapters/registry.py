"""Adapter versions on local disk: `<adapters root>/<tenant>/<role>/v<N>/`.

A version is written whole into a staging folder beside its final place and renamed into
`v<N>` (one `rename(2)`, atomic on one filesystem), under an exclusive lock so that N is strictly
increasing per tenant and role. A crash leaves either no `v<N>` or a complete one; leftover
staging folders are removed before the next training. Each version holds the PEFT adapter files, the
tokenizer files and `manifest.json` (`manifest.Manifest`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic import ValidationError

from ..shared.atomic import flush, flush_tree
from ..shared.faults import crash_point
from .corpus import bucket_name
from .manifest import Manifest

MANIFEST = "manifest.json"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class AdapterVersion:
    """One committed version: its number, folder and validated manifest."""

    number: int
    path: Path
    manifest: Manifest

    @property
    def passed_quality_gate(self) -> bool:
        return self.manifest.quality_gate.passed


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
    """Committed versions in `folder`, oldest first. A `v<N>` without a readable, valid manifest
    is not a version (it cannot come from `commit_version`; a hand-made one is ignored, not
    trusted)."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = _VERSION.match(path.name)
        if not match:
            continue
        try:
            manifest = Manifest.model_validate_json((path / MANIFEST).read_bytes())
        except (OSError, ValidationError):
            continue
        found.append(AdapterVersion(int(match.group(1)), path, manifest))
    return sorted(found, key=lambda v: v.number)


def trained_hashes(folder: Path) -> set[str]:
    """Hashes of every tuple that some version in `folder` used: trained on or held out for its
    evaluation. The rest of a bucket is pending."""
    return {h for v in versions(folder) for h in v.manifest.trained_tuples + v.manifest.held_out_tuples}


def version_for_night(folder: Path, night: str) -> AdapterVersion | None:
    """The newest version trained for `night` (a partition key), if any."""
    matching = [v for v in versions(folder) if v.manifest.night == night]
    return matching[-1] if matching else None


def serving_version(folder: Path) -> AdapterVersion | None:
    """The newest version that passed its quality gate: the one to serve, if any."""
    passed = [v for v in versions(folder) if v.passed_quality_gate]
    return passed[-1] if passed else None


def folder_sha256(folder: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file under `folder`, in path order: the
    identity of a base model folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _locked(folder: Path) -> FileLock:
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / ".lock")


def staging_folder(folder: Path) -> Path:
    """A fresh, empty staging folder inside `folder` (same filesystem as the versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=folder))


def commit_version(folder: Path, staged: Path, manifest: Manifest) -> AdapterVersion:
    """Write `manifest` into `staged`, flush it to disk and rename it into the next `v<N>`.

    Raises:
        ValueError: `staged` is not a staging folder of `folder`.
    """
    if staged.parent != folder or not staged.name.startswith(_STAGING_PREFIX):
        raise ValueError(f"{staged} is not a staging folder of {folder}")
    with _locked(folder):
        number = max((v.number for v in versions(folder)), default=0) + 1
        manifest = manifest.model_copy(update={"version": number})
        (staged / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n",
                                       encoding="utf-8")
        flush_tree(staged)
        crash_point("registry.before_rename")
        target = folder / f"v{number}"
        os.rename(staged, target)
        crash_point("registry.after_rename")
        flush(folder)  # the new directory entry; the version's files were flushed above
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

