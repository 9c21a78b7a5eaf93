"""Definitions load; the schedule asks for the night that just ended; the GPU limits are set."""

import re
from datetime import datetime, timezone

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, build_schedule_context

from yoyo_assets.definitions import build_definitions, defs
from yoyo_assets.shared.settings import GPU_POOL, GPU_TAG_KEY, Settings, SettingsError

from .helpers import timeout


def test_all_definitions_load():
    Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    phase2 = {f"pointsav/{role}/{name}" for role in ("engineering", "apprenticeship", "extraction")
              for name in ("corpus_bucket", "adapter", "published_adapter")}
    phase2.add("pointsav/engineering/commit_tuples")  # upstream of the engineering bucket
    assert keys == {"documents", "corrections", "extracted_entities", "datagraph",
                    "resolved_mentions", "correction_tuples"} | phase2
    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()
              if k.to_user_string() in phase2}
    assert groups == {"pointsav_engineering", "pointsav_apprenticeship", "pointsav_extraction"}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"datagraph_nightly", "corpus_nightly", "adapter_pointsav_engineering",
            "adapter_pointsav_apprenticeship", "adapter_pointsav_extraction"} <= jobs
    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {"datagraph_nightly_schedule",
                                                          "corpus_nightly_schedule"}
    assert {f"pointsav_{role}_corpus_threshold" for role in ("engineering", "apprenticeship",
                                                             "extraction")} <= \
        {s.name for s in repository.sensor_defs}
    checks = {k.to_user_string() for k in graph.asset_check_keys}
    assert checks == {"extracted_entities:extraction_quality"} | {
        f"pointsav/{role}/adapter:{check}" for role in ("engineering", "apprenticeship",
                                                         "extraction")
        for check in ("beats_base_model", "serves_as_overlay")}


def test_the_lineage_shows_phase_2_feeding_phase_1(tmp_path):
    """extracted_entities of a night is downstream of the previous night's extraction adapter of
    the tenant Phase 1 serves (none other's); corrections upstream of the graph and, through
    correction_tuples, of that tenant's extraction bucket (its SFT tuples and DPO pairs)."""
    for tenants, serving in (("pointsav", "pointsav"), ("pointsav,acme", "acme")):
        built = build_definitions(tmp_path, tenants=tenants, extraction_tenant=serving)
        extraction = built.resolve_assets_def("extracted_entities")
        adapters = {k for k in built.resolve_asset_graph().get(
            AssetKey("extracted_entities")).parent_keys if k.path[-1] == "adapter"}
        assert adapters == {AssetKey([serving, "extraction", "adapter"])}
        mapping = extraction.get_partition_mapping(AssetKey([serving, "extraction", "adapter"]))
        assert (mapping.start_offset, mapping.end_offset) == (-1, -1)  # the night before
        # Operators' corrections feed the graph and the serving tenant's buckets.
        graph = built.resolve_asset_graph()
        assert AssetKey("corrections") in graph.get(AssetKey("datagraph")).parent_keys
        fed = {k for k in graph.get(AssetKey("correction_tuples")).child_keys}
        assert fed == {AssetKey([serving, "extraction", "corpus_bucket"])}


def test_schedule_requests_the_night_that_just_ended(dagster_home):
    instance = DagsterInstance.get()
    context = build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(),
        scheduled_execution_time=datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc))
    schedule = defs.resolve_schedule_def("datagraph_nightly_schedule")
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-21"]
    assert schedule.cron_schedule == "0 2 * * *"


def test_gpu_runs_carry_gpu_tag_and_budget_and_gpu_assets_sit_in_gpu_pool(dagster_home):
    for job in ("datagraph_nightly", "adapter_pointsav_engineering",
                "adapter_pointsav_apprenticeship"):
        tags = defs.resolve_job_def(job).tags
        assert tags[GPU_TAG_KEY] == "exclusive"
        assert tags["dagster/max_runtime"] == "7200"
    assert GPU_TAG_KEY not in defs.resolve_job_def("corpus_nightly").tags  # CPU only
    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert pools["extracted_entities"] == {GPU_POOL}
    assert pools["pointsav/engineering/adapter"] == {GPU_POOL}
    assert pools["pointsav/apprenticeship/adapter"] == {GPU_POOL}
    # The instance built from the project's dagster.yaml limits tagged runs to one at a time.
    settings = DagsterInstance.get().get_concurrency_config()
    limits = settings.run_queue_config.tag_concurrency_limits
    assert {"key": GPU_TAG_KEY, "limit": 1} in limits
    assert settings.pool_config.default_pool_limit == 1


def test_workspace_validates_with_the_dagster_cli(dagster_home):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=repo, capture_output=True, text=True, timeout=timeout(120))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_with_automation_off_the_ui_starts_no_schedule_or_threshold_sensor(dagster_home):
    """`YOYO_AUTOMATION=false` (the README's way to open the demo's instance in the UI): the
    daemon would tick nothing that launches runs; as the Dagster CLI lists them. By default
    they are on, as the deployment needs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dagster = Path(sys.executable).parent / "dagster"
    listed = ""
    for kind in ("schedule", "sensor"):
        listed += subprocess.run(
            [str(dagster), kind, "list", "-w", "workspace.yaml"], capture_output=True,
            text=True, timeout=timeout(120), cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "YOYO_AUTOMATION": "false"}).stdout
    states = dict(re.findall(r"(?:Schedule|Sensor): (\S+) \[(\w+)\]", listed))
    assert states.pop("dead_run_reaper") == "RUNNING"  # fails dead runs; launches nothing
    assert len(states) == 5 and set(states.values()) == {"STOPPED"}, listed
    repository = defs.get_repository_def()
    assert {s.default_status.value for s in [*repository.schedule_defs,
                                             *repository.sensor_defs]} == {"RUNNING"}


def test_the_graph_service_token_stays_in_the_environment(monkeypatch):
    """The token reaches the run through dg.EnvVar: the definitions (and so the UI's resource
    page) hold the variable's name, the initialized resource the value."""
    from dagster import build_resources

    token = "t" * 64
    monkeypatch.setenv("YOYO_GRAPH_SERVICE_TOKEN", token)
    graph_store = build_definitions().resources["graph_store"]
    assert token not in repr(graph_store) and "YOYO_GRAPH_SERVICE_TOKEN" in repr(graph_store)
    with build_resources({"graph_store": graph_store}) as resources:
        assert resources.graph_store.service_token == token


@pytest.mark.parametrize("value, message", [
    (",,", "at least one server URL"), ("gateway:9080", "is not an http(s) URL")])
def test_a_bad_inference_url_list_is_refused_naming_the_variable(value, message, monkeypatch):
    monkeypatch.setenv("YOYO_INFERENCE_URL", value)
    with pytest.raises(SettingsError, match=f"YOYO_INFERENCE_URL: .*{re.escape(message)}"):
        Settings.from_env()
    monkeypatch.setenv("YOYO_INFERENCE_MODE", "external")
    monkeypatch.setenv("YOYO_INFERENCE_URL", "http://a:8000, http://b:8000")
    server = build_definitions().resources["inference_server"]
    assert [e.url for e in server.endpoints()] == ["http://a:8000", "http://b:8000"]
