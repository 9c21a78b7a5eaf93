"""The pipeline as users operate it: the production instance (dagster.postgres.yaml) on a real
PostgreSQL server started here, `dagster dev` started and stopped by scripts/dagster-dev.sh,
GPU runs launched through the GraphQL API the way the UI sends them (a backfill of three nights,
a Phase 1 run and a Phase 2 run at once), and the asset lineage page in headless Chromium."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from yoyo_assets.datagraph.graph.store import open_graph
from yoyo_assets.shared.processes import group_members
from yoyo_assets.shared.settings import GPU_TAG_KEY

from .helpers import (DEMO, QUICK_OVERLAY_CHECK, REPO_ROOT, WHOLE_DOCUMENTS, arrived_during,
                      copy_documents, free_port, timeout)

pytestmark = [pytest.mark.slow, pytest.mark.ops]

BACKFILL_NIGHTS = ["2026-11-17", "2026-11-18", "2026-11-19"]
SINGLE_NIGHT = "2026-11-20"
#: Run config of the launches below, as the UI's launchpad sends it: steps in the run's own
#: process (a process per step costs ~5 s each on a CPU; the multiprocess executor's own test:
#: test_fan_out), and Phase 1 reading whole documents.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
QUICK_NIGHT = {**IN_PROCESS, "ops": {"extracted_entities": {"config": WHOLE_DOCUMENTS}}}
PG_PASSWORD = "pg-secret-6f1d2c9a"  # must never show up in a log, the UI or metadata
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"


class PostgresServer:
    """A PostgreSQL cluster from Debian's packages in a temporary folder, on a loopback port,
    with password (SCRAM) authentication. Run as the `postgres` user when the tests run as root
    (PostgreSQL refuses root)."""

    def __init__(self):
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not versions:
            pytest.fail("PostgreSQL server binaries not found (Debian package postgresql)")
        self.bin = versions[-1].parent
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="yoyo-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True,
                       timeout=timeout(120))

    def start(self) -> None:
        (self.data / "pw").write_text(PG_PASSWORD)
        if self.as_user:
            user = pwd.getpwnam("postgres")
            for path in (self.data, self.data / "pw"):
                os.chown(path, user.pw_uid, user.pw_gid)
        cluster = self.data / "cluster"
        self._run(str(self.bin / "initdb"), "-D", str(cluster), "-U", "yoyo", "-E", "UTF8",
                  "--auth=scram-sha-256", f"--pwfile={self.data / 'pw'}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(cluster), "-l", str(self.data / "log"),
                  "-w", "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                  "start")

    def create_database(self, name: str) -> str:
        with self.connect("postgres") as connection:
            connection.autocommit = True
            connection.cursor().execute(f"CREATE DATABASE {name}")
        return name

    @contextmanager
    def connect(self, db: str):
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="yoyo",
                                      password=PG_PASSWORD, dbname=db)
        try:
            yield connection
        finally:
            connection.close()

    def stop(self) -> None:
        """Fast shutdown; if that fails or hangs, SIGKILL the postmaster (its first pid line)."""
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data / "cluster"), "-m", "fast",
                      "-w", "stop")
        except (subprocess.SubprocessError, OSError):
            pid_file = self.data / "cluster" / "postmaster.pid"
            if pid_file.is_file():
                postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
                for process in [postmaster, *postmaster.children(recursive=True)]:
                    process.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def env(self, db: str) -> dict[str, str]:
        """The DAGSTER_PG_* variables of dagster.postgres.yaml for database `db`."""
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_DB": db, "DAGSTER_PG_USER": "yoyo",
                "DAGSTER_PG_PASSWORD": PG_PASSWORD}


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def test_production_instance_keeps_the_limits_and_stores_in_postgres(postgres, tmp_path,
                                                                     monkeypatch):
    production = yaml.safe_load((REPO_ROOT / "dagster.postgres.yaml").read_text())
    embedded = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert production.pop("storage")["postgres"]["postgres_db"]["scheme"] == \
        "postgresql+psycopg2"
    assert production == embedded  # the same run limits, pool, monitoring and retries

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.postgres.yaml", home / "dagster.yaml")
    root = tmp_path / "data"
    bucket = root / "corpus" / "engineering-pointsav"
    bucket.mkdir(parents=True)
    demo = DEMO / "corpus" / "engineering-pointsav"
    (bucket / "t.jsonl").write_text(next(demo.iterdir()).read_text())
    os.utime(bucket / "t.jsonl", (arrived_during(SINGLE_NIGHT),) * 2)
    db = postgres.create_database("production_instance")
    for key, value in {**postgres.env(db), "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    from yoyo_assets.definitions import build_definitions

    instance = DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    result = build_definitions(root).resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=SINGLE_NIGHT, instance=instance)
    assert result.success
    # What the run wrote is in the database, read back by a fresh connection.
    with postgres.connect(db) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone() == ("SUCCESS",)
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND "
                       "dagster_event_type = 'ASSET_MATERIALIZATION'", (result.run_id,))
        assert cursor.fetchone()[0] == 4  # three corpus buckets and the git harvest


# --- the UI stack: dagster dev on the production instance --------------------------------------


class DevStack:
    def __init__(self, env: dict[str, str], url: str, root: Path, home: Path):
        self.env, self.url, self.root, self.home = env, url, root, home

    def script(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "scripts/dagster-dev.sh", command], cwd=REPO_ROOT,
                              env=self.env, capture_output=True, text=True,
                              timeout=timeout(240))

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query,
                                                           "variables": variables or {}},
                              timeout=120)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def dev_stack(postgres, vllm_server, model_dir, tmp_path_factory):
    """`dagster dev` (webserver, daemon, code server) started by scripts/dagster-dev.sh on the
    Postgres instance, with one shipped demo contact on each of four nights (the launches and
    the queue are under test, not the extraction) and a small engineering bucket; stopped (and
    checked stopped) at the end."""
    base = tmp_path_factory.mktemp("stack")
    root, home = base / "data", base / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.postgres.yaml", home / "dagster.yaml")
    contacts = sorted((DEMO / "contacts").glob("*.json"))
    for i, night in enumerate([*BACKFILL_NIGHTS, SINGLE_NIGHT]):
        copy_documents(contacts[i:i + 1], root, "contacts", arrived_during(night))
    bucket = root / "corpus" / "engineering-pointsav"
    bucket.mkdir(parents=True)
    demo = DEMO / "corpus" / "engineering-pointsav"
    lines = next(demo.iterdir()).read_text().splitlines()[:6]
    (bucket / "t.jsonl").write_text("\n".join(lines) + "\n")
    os.utime(bucket / "t.jsonl", (arrived_during(SINGLE_NIGHT),) * 2)
    port = free_port()
    env = {**os.environ, **postgres.env(postgres.create_database("ui_stack")),
           "DAGSTER_HOME": str(home),
           "YOYO_DATA_ROOT": str(root), "YOYO_WEBSERVER_PORT": str(port),
           "YOYO_INFERENCE_MODE": "external", "YOYO_INFERENCE_URL": vllm_server.base_url,
           "YOYO_EXTRACTION_TOKENIZER": str(model_dir / "tokenizer.json"),
           "YOYO_BASE_MODEL_DIR": str(model_dir), "YOYO_ADAPTER_THRESHOLD": "4",
           "YOYO_DEV_STOP_GRACE_S": str(int(timeout(60)))}
    env.pop("YOYO_WEBSERVER_HOST", None)
    stack = DevStack(env, f"http://127.0.0.1:{port}", root, home)
    started = stack.script("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pgid = int((home / "dagster-dev.pid").read_text())
    yield stack
    started_stop = time.monotonic()
    stopped = stack.script("stop")
    print(f"dagster-dev.sh stop: {time.monotonic() - started_stop:.1f} s")
    assert stopped.stdout.strip() == "stopped", stopped.stdout + stopped.stderr  # no SIGKILL
    assert group_members(pgid) == []  # webserver, daemon, code server and runs all gone


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add("127.0.0.1" if address == "0100007F" else address)
    return found


def test_webserver_listens_on_loopback_only(dev_stack):
    assert listening_addresses(int(dev_stack.env["YOYO_WEBSERVER_PORT"])) == {"127.0.0.1"}


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
REPOSITORY = {"repositoryLocationName": "yoyo_assets", "repositoryName": "__repository__"}


def test_graphql_backfill_and_gpu_runs_launched_together_never_overlap(dev_stack, monkeypatch):
    stack = dev_stack
    backfill = stack.graphql(LAUNCH_BACKFILL, {"params": {
        "selector": {"partitionSetName": "datagraph_nightly_partition_set",
                     "repositorySelector": REPOSITORY},
        "partitionNames": BACKFILL_NIGHTS, "runConfigData": QUICK_NIGHT}})[
        "launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    launched = []
    for job, night, config in (
            ("datagraph_nightly", SINGLE_NIGHT, QUICK_NIGHT),
            ("adapter_pointsav_engineering", SINGLE_NIGHT, {**IN_PROCESS, "ops": {
                "pointsav__engineering__adapter": {"config": {
                    "max_length": 64, "num_train_epochs": 1, "per_device_train_batch_size": 8,
                    "gradient_checkpointing": False, "sft_learning_rate": 1e-3,
                    **QUICK_OVERLAY_CHECK}}}})):
        result = stack.graphql(LAUNCH_RUN, {"params": {
            "selector": {**REPOSITORY, "jobName": job}, "runConfigData": config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": night}]}}})
        assert result["launchRun"]["__typename"] == "LaunchRunSuccess", result
        launched.append(result["launchRun"]["run"]["runId"])

    for key in [k for k in stack.env if k.startswith("DAGSTER_PG_")] + ["DAGSTER_HOME"]:
        monkeypatch.setenv(key, stack.env[key])
    instance = DagsterInstance.get()
    deadline = time.monotonic() + timeout(540)
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if len(runs) >= 5 and all(r.is_finished for r in runs):
            break
        time.sleep(3)
    runs = instance.get_runs()
    summary = [(r.job_name, r.status.value, r.tags) for r in runs]
    assert len(runs) == 5 and all(r.status == DagsterRunStatus.SUCCESS for r in runs), summary
    assert all(r.tags[GPU_TAG_KEY] == "exclusive" for r in runs)
    intervals = sorted((instance.get_run_stats(r.run_id).start_time,
                        instance.get_run_stats(r.run_id).end_time) for r in runs)
    for r in runs:  # the timeline, for a reader of the log (CI time: docs/benchmarks.md)
        stats = instance.get_run_stats(r.run_id)
        print(f"{r.job_name} {r.tags['dagster/partition']}: started {stats.start_time:.0f}, "
              f"{stats.end_time - stats.start_time:.0f} s")
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert end <= start  # never two GPU runs at once
    nights = {r.tags["dagster/partition"] for r in instance.get_runs(
        RunsFilter(job_name="datagraph_nightly"))}
    assert nights == {*BACKFILL_NIGHTS, SINGLE_NIGHT}
    records = instance.fetch_materializations(AssetKey("datagraph"), limit=10).records
    recorded = {r.partition_key: r.asset_materialization.metadata["night_documents"].value
                for r in records}
    assert sorted(recorded) == sorted(nights)
    adapter = instance.fetch_materializations(
        AssetKey(["pointsav", "engineering", "adapter"]), limit=1).records
    assert adapter and adapter[0].asset_materialization.metadata["version"].value == 1
    # The backfill daemon marks the backfill done on its next pass (every ~30 s).
    for _ in range(60):
        status = stack.graphql(BACKFILL_STATUS, {"id": backfill["backfillId"]})
        if status["partitionBackfillOrError"]["status"] != "REQUESTED":
            break
        time.sleep(2)
    assert status["partitionBackfillOrError"]["status"] == "COMPLETED_SUCCESS"
    with open_graph(stack.root / "graph" / "datagraph.lbug") as graph:
        counts = graph.counts()
    # One contact a night, all in the ledger but a model failure at most.
    assert counts["documents"] == sum(recorded.values()) >= 3

    # No credential anywhere a user or a log reader sees: instance info in the UI, the services'
    # log, the runs' compute logs, the event log in Postgres.
    info = stack.graphql("{ instance { info } }")["instance"]["info"]
    assert "postgres" in info.lower() and PG_PASSWORD not in info
    assert PG_PASSWORD not in (stack.home / "dagster-dev.log").read_text()
    for path in (stack.home / "storage").rglob("*"):
        if path.is_file():
            assert PG_PASSWORD.encode() not in path.read_bytes(), path


def expand_all_groups(page, node_inside) -> None:
    """Press the lineage page's Alt+E until `node_inside` (a node in a collapsed group) shows.

    Alt+E toggles (all groups open when none is, else all close), and a first visit's dialog that
    opens just before the press swallows it; so press again only while the node is still hidden.
    A press through `locator.press` is an action, so the page's dialog handler runs first.

    Raises:
        playwright TimeoutError: the node did not show after three presses (15 s each).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.locator("body").press("Alt+e")
        try:
            node_inside.wait_for(timeout=timeout(15_000))
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_asset_lineage_page_in_chromium_shows_every_group(dev_stack):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found (Debian package chromium)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1800})
            skip = page.get_by_role("button", name="Skip")
            # A first visit's dialogs (the newsletter one, with Skip) open at any moment after
            # the page loads and block clicks; Playwright dismisses them before each action.
            page.add_locator_handler(page.locator(".bp5-overlay-backdrop"),
                                     lambda: skip.click() if skip.is_visible()
                                     else page.keyboard.press("Escape"))
            page.goto(f"{dev_stack.url}/asset-groups", wait_until="networkidle")
            # An auto-waiting assertion: the page draws after the network goes quiet.
            expect(page.get_by_text("Global asset lineage")).to_be_visible(
                timeout=timeout(30_000))
            # The groups are drawn collapsed; the UI's shortcut (Alt+E) expands them all. Each
            # bucket's assets are a group named by tenant and role, so each `adapter` node sits
            # under the name of the adapter it is.
            expand_all_groups(page, page.get_by_text("documents", exact=True).last)
            groups = ("datagraph", "pointsav_extraction", "pointsav_engineering",
                      "pointsav_apprenticeship")
            for name in (*groups, "corrections", "extracted_entities",
                         "resolved_mentions", "correction_tuples", "commit_tuples"):
                page.get_by_text(name, exact=True).last.wait_for(timeout=timeout(30_000))
            for name in ("corpus_bucket", "adapter", "published_adapter"):
                expect(page.get_by_text(name, exact=True)).to_have_count(3)
            # Drawn in the graph's pane: right of the sidebar (which lists the groups too, its
            # entries at x 312 and at most 208 wide in this viewport).
            pane = 530
            in_graph = [g for g in groups if any(
                (box := node.bounding_box()) and box["x"] > pane and box["height"] > 0
                for node in page.get_by_text(g, exact=True).all())]
            assert in_graph == list(groups)
            page.screenshot(path=str(ARTIFACTS / "asset-lineage.png"))
            # The nights the backfill test materialized, plotted on the identity asset's page.
            page.goto(f"{dev_stack.url}/assets/resolved_mentions", wait_until="networkidle")
            page.get_by_text("Plots", exact=True).first.click()
            page.get_by_text("mentions_resolved").first.wait_for(timeout=timeout(30_000))
            page.screenshot(path=str(ARTIFACTS / "resolved-mentions-plots.png"), full_page=True)
        finally:
            browser.close()
    for name in ("asset-lineage.png", "resolved-mentions-plots.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
