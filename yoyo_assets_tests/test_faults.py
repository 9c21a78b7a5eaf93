"""Faults with real parts: SIGKILL of a night's process at each Phase 2 crash point, the
inference server killed mid-night, the GCS emulator stopped in the middle of a publication.
(Phase 1's crash points: test_pipeline; GPU runs launched together: test_operation.)"""

import json
import os
import signal
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster_gcp import GCSResource

from yoyo_assets.adapters.publication import md5_base64
from yoyo_assets.adapters.registry import versions
from yoyo_assets.definitions import build_definitions
from yoyo_assets.shared.faults import on_crash_point
from yoyo_assets.shared.inference_server import InferenceServer, ServerLaunch

from .helpers import (JOB, NIGHT, PUBLISHED, QUICK_OVERLAY_CHECK, TINY, WHOLE_DOCUMENTS, Emulator,
                      check_graph_invariants, demo_night, free_port, make_defs,
                      run_night_process, sft_lines, write_bucket_file)

pytestmark = pytest.mark.slow

#: Two epochs of a few steps each, so that there is a step, a checkpoint and a resume to hit.
SMALL = {"max_length": 64, "num_train_epochs": 2, "per_device_train_batch_size": 2,
         "gradient_checkpointing": False, **QUICK_OVERLAY_CHECK}
ADAPTER = AssetKey(["pointsav", "engineering", "adapter"])


def materializations(instance: DagsterInstance, key: AssetKey) -> list:
    return instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[NIGHT]), limit=100).records


def checkpoints(folder: Path) -> dict[str, bool]:
    """checkpoint name -> complete (has trainer_state.json), over every work dir."""
    return {p.name: (p / "trainer_state.json").is_file()
            for p in folder.glob(".work/*/checkpoint-*")}


def bucket_objects(client, prefix: str) -> dict[str, str]:
    return {b.name.removeprefix(prefix): b.md5_hash for b in client.list_blobs("adapters",
                                                                                prefix=prefix)}


def test_sigkill_at_each_phase2_crash_point_then_the_night_completes(
        corpora, model_dir, dagster_home, tmp_path, monkeypatch, external_server):
    root = tmp_path / "data"
    write_bucket_file(root, "tuples.jsonl", sft_lines(corpora)[:12], NIGHT)
    emulator = Emulator(free_port(), data_dir=tmp_path / "gcs")
    emulator.start()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_BASE_MODEL_DIR": str(model_dir), "YOYO_ADAPTER_THRESHOLD": "8", "YOYO_GCS_BUCKET": "adapters",
           "YOYO_GCS_PROJECT": "yoyo-test", "STORAGE_EMULATOR_HOST": emulator.url}
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    folder = root / "adapters" / "pointsav" / "engineering"
    prefix = "adapters/pointsav/engineering/v1/"
    log = tmp_path / "nights.log"
    extra = ["--training-config", json.dumps(SMALL)]
    instance = DagsterInstance.get()

    def killed_at(point: str) -> None:
        status = run_night_process(env, log, point, extra)
        assert status == -signal.SIGKILL, (point, log.read_text()[-3000:])
        # Never a half version: every v<N> has its manifest, and none is visible in the bucket
        # without one.
        assert all((v / "manifest.json").is_file() for v in folder.glob("v*"))
        assert "manifest.json" not in bucket_objects(client, prefix)

    try:
        killed_at("training.after_step")
        assert versions(folder) == [] and checkpoints(folder) == {}
        killed_at("training.after_checkpoint")
        [(first, complete)] = checkpoints(folder).items()
        assert complete
        killed_at("training.during_checkpoint_save")  # resumed from `first`, killed saving the next
        saved = checkpoints(folder)
        assert saved[first] and len(saved) == 2
        [last] = [name for name, complete in saved.items() if not complete]
        killed_at("registry.before_rename")  # the partial checkpoint removed, `last` redone
        assert versions(folder) == [] and list(folder.glob(".staging-*"))
        assert checkpoints(folder) == {first: True, last: True}
        killed_at("registry.after_rename")  # v1 in place, resumed from `last`: no step retrained
        [v1] = versions(folder)
        assert v1.manifest.training.resumed_from_checkpoint == last
        assert materializations(instance, ADAPTER) == []
        killed_at("publication.after_first_object")  # v1 recorded without retraining
        assert [r.asset_materialization.metadata["recovered"].value
                for r in materializations(instance, ADAPTER)] == [True]
        assert len(bucket_objects(client, prefix)) == 1

        assert run_night_process(env, log, "", extra) == 0, log.read_text()[-3000:]
        # The command's own output: one screen, ending with its summary.
        last_run = log.read_text().rsplit("datagraph_nightly night", 1)[1].splitlines()
        assert len(last_run) <= 40 and last_run[-1].startswith("UI "), last_run
        assert any("every run succeeded" in line for line in last_run), last_run
    finally:
        emulator.stop()
    emulator.start()  # on disk: the objects outlive the process
    try:
        [v1_again] = versions(folder)
        assert v1_again.path == v1.path and v1_again.manifest == v1.manifest
        assert not list(folder.glob(".staging-*")) and not list(folder.glob(".work/*"))
        # Every tuple counted once: the version covers the 12, and nothing is pending.
        assert len(v1.manifest.trained_tuples) + len(v1.manifest.held_out_tuples) == 12
        local = {p.relative_to(v1.path).as_posix(): md5_base64(p)
                 for p in v1.path.rglob("*") if p.is_file()}
        assert bucket_objects(GCSResource(project="yoyo-test").get_client(), prefix) == local
        [published] = materializations(instance, PUBLISHED)
        assert published.asset_materialization.metadata["published"].value is True
    finally:
        emulator.stop()


def test_inference_server_killed_mid_night_defers_documents_to_the_next_run(
        external_server, model_dir, dagster_home, tmp_path):
    root = tmp_path / "data"
    total = demo_night(root, research=0)
    managed = InferenceServer(mode="managed", model_dir=str(model_dir), launch=ServerLaunch(
        health_timeout_s=600, log_dir=str(root / "logs")))
    defs = build_definitions(root, managed)
    instance = DagsterInstance.get()
    killed = []

    def kill_server() -> None:  # the first document has its answer: the rest are not done
        if not killed:
            pgid = int((root / "logs" / "inference-server.pid").read_text().split()[0])
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)

    on_crash_point("extraction.after_first_document", kill_server)
    try:
        first = defs.resolve_job_def("datagraph_nightly").execute_in_process(
            partition_key=NIGHT, instance=instance, run_config={"ops": {
                "extracted_entities": {"config": {"concurrency": 2, "attempts": 2,
                                                  **WHOLE_DOCUMENTS}}}})
    finally:
        on_crash_point("extraction.after_first_document", None)
    assert killed and first.success  # the night ends
    meta = {k: v.value for k, v in
            first.asset_materializations_for_node("extracted_entities")[0].metadata.items()}
    assert meta["documents_deferred"] >= 1
    assert meta["documents_ok"] + meta["documents_failed"] + meta["documents_deferred"] == total
    assert all(d["reason"].startswith("inference server unreachable")
               for d in meta["deferrals"])
    assert not (root / "logs" / "inference-server.pid").exists()

    # The next run (the server back) processes exactly what was not recorded.
    second = build_definitions(root, external_server).resolve_job_def(
        "datagraph_nightly").execute_in_process(partition_key=NIGHT, instance=instance,
                                                run_config={"ops": {"extracted_entities": {
                                                    "config": WHOLE_DOCUMENTS}}})
    assert second.success
    found = second.asset_materializations_for_node("documents")[0].metadata
    assert found["documents"].value == meta["documents_deferred"] + meta["documents_failed"]
    assert found["skipped_already_processed"].value == meta["documents_ok"]
    counts = check_graph_invariants(root / "graph" / "datagraph.lbug")
    assert counts["documents"] >= total - 1  # all in the ledger but a model failure at most


def test_store_stopped_during_publication_fails_cleanly_then_publication_alone_completes(
        corpora, model_dir, dagster_home, tmp_path, monkeypatch, external_server):
    emulator = Emulator(free_port(), data_dir=tmp_path / "gcs")
    emulator.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    root = tmp_path / "data"
    write_bucket_file(root, "tuples.jsonl", sft_lines(corpora)[:6], NIGHT)
    defs = make_defs(root, model_dir, {"inference_server": external_server},
                     gcs_bucket="adapters", gcs_retry_timeout_s=3, adapter_threshold=4)
    instance = DagsterInstance.get()

    on_crash_point("publication.after_first_object", emulator.stop)
    try:
        first = defs.resolve_job_def(JOB).execute_in_process(
            partition_key=NIGHT, instance=instance, run_config=TINY, raise_on_error=False)
    finally:
        on_crash_point("publication.after_first_object", None)
    assert not first.success
    [v1] = versions(root / "adapters" / "pointsav" / "engineering")
    assert first.asset_materializations_for_node("pointsav__engineering__adapter")
    error = first.failure_data_for_node("pointsav__engineering__published_adapter").error
    assert "Its manifest was not uploaded" in error.message and str(v1.path) in error.message

    emulator.start()  # same data directory: the first object is still there
    prefix = "adapters/pointsav/engineering/v1/"
    assert len(bucket_objects(client, prefix)) == 1
    retry = defs.resolve_job_def(JOB).execute_in_process(
        partition_key=NIGHT, instance=instance, asset_selection=[PUBLISHED])
    assert retry.success
    meta = retry.asset_materializations_for_node("pointsav__engineering__published_adapter")[0] \
        .metadata
    assert meta["objects_already_present"].value == 1
    local = {p.relative_to(v1.path).as_posix(): md5_base64(p)
             for p in v1.path.rglob("*") if p.is_file()}
    assert bucket_objects(client, prefix) == local
    assert len(versions(root / "adapters" / "pointsav" / "engineering")) == 1  # no retraining
    emulator.stop()
