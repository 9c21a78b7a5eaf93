"""A backfill of three nights from the CLI, run by a real Dagster daemon: each night its own
run, queued behind the GPU run limit, so no two runs overlap, and each night materialized; and a
Phase 1 run and a Phase 2 run launched together run one after the other."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from yoyo_assets.settings import GPU_TAG_KEY

from .conftest import REPO_ROOT, copy_documents
from .test_pipeline import arrived_during

NIGHTS = ["2026-11-17", "2026-11-18", "2026-11-19"]


def run_daemon_until(env: dict, log_path: Path, timeout_s: float, runs: RunsFilter,
                     count: int) -> DagsterInstance:
    """Run a real `dagster-daemon` until `count` runs matching `runs` have finished (or
    `timeout_s` seconds pass), then stop its process group; returns the instance."""
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        instance = DagsterInstance.get()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                found = instance.get_runs(runs)
                if len(found) == count and all(r.is_finished for r in found):
                    break
                time.sleep(2)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
    return instance


def test_cli_backfill_runs_one_night_at_a_time(corpora, external_server, dagster_home, tmp_path):
    root = tmp_path / "data"
    contacts = sorted((corpora / "contacts").glob("*.json"))
    copy_documents(contacts[:1], root, "contacts", arrived_during(NIGHTS[0]))
    copy_documents(contacts[1:2], root, "contacts", arrived_during(NIGHTS[2]))
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file())}
    bin_dir = Path(sys.executable).parent
    backfill = subprocess.run(
        [str(bin_dir / "dagster"), "job", "backfill", "-w", "workspace.yaml",
         "-j", "datagraph_nightly", "--from", NIGHTS[0], "--to", NIGHTS[-1], "--noprompt"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert backfill.returncode == 0, backfill.stderr[-2000:]

    instance = run_daemon_until(env, tmp_path / "daemon.log", 480, RunsFilter(
        job_name="datagraph_nightly"), 3)
    runs = instance.get_runs(RunsFilter(job_name="datagraph_nightly"))
    assert sorted(r.tags["dagster/partition"] for r in runs) == NIGHTS, \
        (tmp_path / "daemon.log").read_text()[-3000:]
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.tags[GPU_TAG_KEY] == "exclusive" for r in runs)
    stats = sorted((instance.get_run_stats(r.run_id) for r in runs), key=lambda s: s.start_time)
    for earlier, later in zip(stats, stats[1:]):
        assert earlier.end_time <= later.start_time  # never two GPU runs at once
    records = instance.fetch_materializations(AssetKey("graph_mutations"), limit=10).records
    assert sorted(r.partition_key for r in records) == NIGHTS
    by_night = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert by_night[NIGHTS[0]]["documents_recorded"].value + \
        by_night[NIGHTS[2]]["documents_recorded"].value >= 1
    assert by_night[NIGHTS[1]]["documents_recorded"].value == 0


def test_phase1_and_phase2_runs_launched_together_never_overlap(
        corpora, external_server, dagster_home, model_dir, tmp_path):
    from importlib import resources

    night = NIGHTS[1]
    root = tmp_path / "data"
    copy_documents(sorted((corpora / "contacts").glob("*.json"))[:1], root, "contacts",
                   arrived_during(night))
    bucket = root / "corpus" / "engineering-pointsav"
    bucket.mkdir(parents=True)
    demo = resources.files("yoyo_assets") / "demo_data" / "corpus" / "engineering-pointsav"
    lines = [line for f in demo.iterdir() for line in f.read_text().splitlines()][:6]
    (bucket / "tuples.jsonl").write_text("\n".join(lines) + "\n")
    os.utime(bucket / "tuples.jsonl", (arrived_during(night), arrived_during(night)))
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "YOYO_DATA_ROOT": str(root),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": external_server.url,
           "YOYO_EXTRACTION_TOKENIZER": str(external_server.tokenizer_file()),
           "YOYO_BASE_MODEL_DIR": str(model_dir), "YOYO_ADAPTER_THRESHOLD": "4"}
    bin_dir = Path(sys.executable).parent
    tiny = ('{"ops": {"pointsav__engineering__adapter": {"config": '
            '{"max_length": 96, "epochs": 1, "batch_size": 8}}}}')
    for command in (
            ["job", "launch", "-j", "adapter_pointsav_engineering", "--config-json", tiny,
             "--tags", '{"dagster/partition": "%s"}' % night],
            ["job", "backfill", "-j", "datagraph_nightly", "--from", night, "--to", night,
             "--noprompt"]):
        launched = subprocess.run([str(bin_dir / "dagster"), *command, "-w", "workspace.yaml"],
                                  cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  timeout=120)
        assert launched.returncode == 0, launched.stderr[-2000:]

    instance = run_daemon_until(env, tmp_path / "daemon.log", 540, RunsFilter(), 2)
    runs = instance.get_runs()
    assert sorted(r.job_name for r in runs) == ["adapter_pointsav_engineering",
                                                "datagraph_nightly"]
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), \
        (tmp_path / "daemon.log").read_text()[-3000:]
    first, second = sorted((instance.get_run_stats(r.run_id) for r in runs),
                           key=lambda s: s.start_time)
    assert first.end_time <= second.start_time  # never two GPU runs at once
    assert (root / "adapters" / "pointsav" / "engineering" / "v1" / "manifest.json").is_file()
