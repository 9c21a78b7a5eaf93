"""Adapter versions on disk: strictly increasing v<N>, atomic rename (a SIGKILL before it leaves
no version), unsafe names refused, hand-made folders not trusted."""

import json
import os
import subprocess
import sys

import pytest

from yoyo_assets.adapters.manifest import BaseModelRef, Manifest, QualityGate
from yoyo_assets.adapters.registry import (adapter_folder, commit_version, remove_stale_staging,
                                           staging_folder, trained_hashes, version_for_night,
                                           versions)


def manifest(night: str, trained: list[str] = (), held_out: list[str] = ()) -> Manifest:
    """A manifest with what the registry reads: the night and the tuples used."""
    return Manifest(tenant="pointsav", role="engineering", kind="sft",
                    bucket="engineering-pointsav", night=night,
                    base_model=BaseModelRef(path="/base", sha256="0" * 64),
                    trained_tuples=list(trained), held_out_tuples=list(held_out),
                    hyperparameters={}, base_eval_loss=2.0, eval_loss=1.5,
                    quality_gate=QualityGate(passed=True, checks=[], rule=""))

COMMIT_SCRIPT = """
import sys
from pathlib import Path
from yoyo_assets.adapters.registry import commit_version, staging_folder
from yoyo_assets_tests.test_registry import manifest
folder = Path(sys.argv[1])
staged = staging_folder(folder)
(staged / "adapter_model.safetensors").write_bytes(b"weights" * 1000)
commit_version(folder, staged, manifest("2026-11-21", ["c"]))
"""


def stage(folder, payload: bytes):
    staged = staging_folder(folder)
    (staged / "adapter_model.safetensors").write_bytes(payload)
    return staged


def test_versions_increase_and_record_what_they_used(tmp_path):
    folder = adapter_folder(tmp_path, "pointsav", "engineering")
    first = commit_version(folder, stage(folder, b"one"), manifest("2026-11-20", ["a"], ["b"]))
    second = commit_version(folder, stage(folder, b"two"), manifest("2026-11-21", ["c"]))
    assert (first.number, second.number) == (1, 2)
    assert second.path == folder / "v2"
    assert json.loads((folder / "v2" / "manifest.json").read_text())["version"] == 2
    assert trained_hashes(folder) == {"a", "b", "c"}
    assert version_for_night(folder, "2026-11-20").number == 1
    assert version_for_night(folder, "2026-11-19") is None
    assert not list(folder.glob(".staging-*"))


def test_sigkill_before_the_rename_leaves_no_version(tmp_path):
    folder = adapter_folder(tmp_path, "pointsav", "engineering")
    commit_version(folder, stage(folder, b"one"), manifest("2026-11-20"))
    env = {**os.environ, "YOYO_CRASH_POINTS": "registry.before_rename"}
    killed = subprocess.run([sys.executable, "-c", COMMIT_SCRIPT, str(folder)], env=env)
    assert killed.returncode == -9
    assert [v.number for v in versions(folder)] == [1]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("v")) == ["v1"]
    assert remove_stale_staging(folder) == 1
    done = subprocess.run([sys.executable, "-c", COMMIT_SCRIPT, str(folder)])
    assert done.returncode == 0
    assert [v.number for v in versions(folder)] == [1, 2]


def test_a_version_folder_without_manifest_is_not_a_version(tmp_path):
    folder = adapter_folder(tmp_path, "pointsav", "apprenticeship")
    (folder / "v7").mkdir(parents=True)
    assert versions(folder) == []
    assert commit_version(folder, stage(folder, b"x"), manifest("2026-11-20")).number == 1


@pytest.mark.parametrize("tenant,role", [("../etc", "engineering"), ("pointsav", "../x"),
                                         ("Point Sav", "engineering"), ("", "engineering"),
                                         ("pointsav/..", "engineering")])
def test_unsafe_names_are_refused(tmp_path, tenant, role):
    with pytest.raises(ValueError):
        adapter_folder(tmp_path, tenant, role)


def test_commit_refuses_a_foreign_folder(tmp_path):
    folder = adapter_folder(tmp_path, "pointsav", "engineering")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match="not a staging folder"):
        commit_version(folder, elsewhere, manifest("2026-11-20"))
