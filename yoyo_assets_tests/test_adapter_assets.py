"""Phase 2 through Dagster with a real instance: the corpus threshold sensor (threshold 20: 19
pending: skip; 20: one run request; same state: none; 20 new after v1: v2), the adapter run with its blocking
quality check, publication to a real GCS emulator and its retry alone, the published version
loaded back by a gateway-like reader, and a bad base model."""

import json
from pathlib import Path

import pytest
from dagster import (AssetCheckSeverity, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter,
                     build_sensor_context)
from dagster_gcp import GCSResource

from yoyo_assets.adapters.checks import KEPT_LOCAL, VERDICT_TAG
from yoyo_assets.adapters.registry import versions
from yoyo_assets.adapters.resources import CorpusBuckets
from yoyo_assets.adapters.sensors import PENDING_SET_TAG
from yoyo_assets.adapters.training import TrainingConfig, quantizes_base
from yoyo_assets.shared.embedded_model import HUB_NAME
from yoyo_assets.shared.settings import GPU_TAG_KEY

from .helpers import (JOB, PUBLISHED, TINY, TINY_TRAINING, make_defs, sft_lines,
                      write_bucket_file)

pytestmark = pytest.mark.slow

SENSOR = "pointsav_engineering_corpus_threshold"
#: A threshold of 20 leaves 12 tuples to train on after the 8 held out: batches of 4, so that
#: v1 takes a few steps.
SENSOR_RUN = {"ops": {"pointsav__engineering__adapter": {"config": {
    **TINY_TRAINING, "per_device_train_batch_size": 4}}}}
ADAPTER = AssetKey(["pointsav", "engineering", "adapter"])


def materialize_buckets(defs, instance, night: str) -> None:
    result = defs.resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=night, instance=instance)
    assert result.success


def load_published(client, prefix: str, model_dir: Path, folder: Path):
    """What a gateway elsewhere does: fetch a published version from the bucket into an empty
    folder and load it with peft on the base (here from this machine's copy of that model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    for blob in client.list_blobs("adapters", prefix=prefix):
        target = folder / blob.name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    config = json.loads((folder / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    return config, PeftModel.from_pretrained(base, folder)


def tick(defs, instance, cursor):
    with build_sensor_context(instance=instance, definitions=defs, cursor=cursor,
                              resources=defs.resources) as context:
        return defs.resolve_sensor_def(SENSOR).evaluate_tick(context)


def run_requested(defs, instance, request, run_config=TINY):
    """What the daemon does with a run request: launch the job for its partition and key."""
    return defs.resolve_job_def(JOB).execute_in_process(
        partition_key=request.partition_key, instance=instance, run_config=run_config,
        tags={**request.tags, "dagster/run_key": request.run_key}, raise_on_error=False)


def test_sensor_requests_each_pending_set_once(corpora, model_dir, dagster_home, tmp_path,
                                               emulator, monkeypatch, external_server):
    GCSResource(project="yoyo-test").get_client().create_bucket("adapters")
    root = tmp_path / "data"
    # Training reads the GCS copy of the corpus (mirrored elsewhere), never the local folder:
    # Phase 2 as it runs on a machine that did not see it.
    mirror = tmp_path / "trainer" / "corpus-gcs"
    buckets = CorpusBuckets(corpus_root=str(root / "corpus"), source="gcs",
                            mirror_root=str(mirror), threshold=20)
    defs = make_defs(root, model_dir, {"corpus_buckets": buckets,
                                       "inference_server": external_server},
                     gcs_bucket="adapters")
    instance = DagsterInstance.get()
    lines = sft_lines(corpora)

    # Night 1: 19 valid tuples, one duplicate, two bad lines.
    write_bucket_file(root, "n1.jsonl", lines[:19] + [lines[0], "not json", '{"messages": 1}'],
                      "2026-11-18")
    materialize_buckets(defs, instance, "2026-11-18")
    meta = instance.fetch_materializations(
        AssetKey(["pointsav", "engineering", "corpus_bucket"]), limit=1).records[0] \
        .asset_materialization.metadata
    assert (meta["tuple_count"].value, meta["pending_tuples"].value) == (19, 19)
    assert meta["duplicates_dropped"].value == 1 and meta["invalid_lines"].value == 2
    assert [i["line"] for i in meta["invalid"].value] == [21, 22]
    first = tick(defs, instance, None)
    assert first.run_requests == [] and "19 pending tuples, below the threshold 20" in \
        first.skip_message

    # Night 2: the 20th tuple arrives: one request; the next tick (same state) gives none.
    write_bucket_file(root, "n2.jsonl", lines[19:20], "2026-11-19")
    materialize_buckets(defs, instance, "2026-11-19")
    second = tick(defs, instance, first.cursor)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.partition_key == "2026-11-19"
    assert tick(defs, instance, second.cursor).run_requests == []

    result = run_requested(defs, instance, request, SENSOR_RUN)
    assert result.success
    assert defs.resolve_job_def(JOB).tags[GPU_TAG_KEY] == "exclusive"
    [v1] = versions(root / "adapters" / "pointsav" / "engineering")
    manifest = v1.manifest
    assert v1.path.name == "v1" and manifest.night == "2026-11-19"
    assert len(manifest.trained_tuples) + len(manifest.held_out_tuples) == 20
    copy = json.loads(GCSResource(project="yoyo-test").get_client().bucket("adapters").blob(
        "adapters/corpus/engineering-pointsav/manifests/2026-11-19.json").download_as_bytes())
    assert sorted(manifest.trained_tuples + manifest.held_out_tuples) == copy["tuples"]
    assert sorted(p.name for p in (mirror / "engineering-pointsav").iterdir()) == \
        ["n1.jsonl", "n2.jsonl"]
    # What training did, not the setting: a CPU trains on the unquantised base by default.
    assert manifest.lora_r == 16
    assert manifest.hyperparameters["load_in_4bit"] is quantizes_base(TrainingConfig())
    assert manifest.base_model.sha256 and manifest.libraries["trl"]
    assert [r for r in manifest.loss_history if "train_loss" in r]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    held_out = manifest.held_out
    assert len(held_out.tuples) == len(manifest.held_out_tuples) == 8  # max(8, 10% of 20)
    assert held_out.interval_low <= held_out.mean_difference <= held_out.interval_high
    assert held_out.passed == (held_out.interval_high < 0)
    assert checks["beats_base_model"].passed == held_out.passed is True
    assert checks["beats_base_model"].metadata["scored_held_out_tuples"].value == 8
    assert manifest.fitting.dropped == {}
    assert manifest.serving_check.answers.prompts == 4  # ROUGE-L of the held-out answers asked
    assert "reference" in manifest.serving_check.samples[0]
    assert checks["serves_as_overlay"].passed and manifest.serving_check.served
    adapter_meta = result.asset_materializations_for_node("pointsav__engineering__adapter")[0] \
        .metadata
    assert adapter_meta["version"].value == 1
    assert adapter_meta["loss_curve"].value.startswith("![loss curve](data:image/png;base64,")

    # Published: every file of v1 in the bucket, manifest included.
    client = GCSResource(project="yoyo-test").get_client()
    # (The bucket also holds the corpus copy, under adapters/corpus/.)
    published = {b.name for b in client.list_blobs("adapters", prefix="adapters/pointsav/")}
    assert published == {f"adapters/pointsav/engineering/v1/{p.name}"
                         for p in v1.path.iterdir()}
    config, loaded = load_published(client, "adapters/pointsav/engineering/v1/", model_dir,
                                    tmp_path / "gateway")
    assert config["base_model_name_or_path"] == HUB_NAME == manifest.base_model.name
    assert manifest.base_model.path == str(model_dir)  # the local copy, beside its public name
    assert loaded.peft_config["default"].r == 16

    # A failed upload is retried by re-materializing the publication alone: no retraining.
    for blob in client.list_blobs("adapters", prefix="adapters/pointsav/"):
        if blob.name.endswith(("manifest.json", ".safetensors")):
            blob.delete()
    retry = defs.resolve_job_def(JOB).execute_in_process(
        partition_key="2026-11-19", instance=instance, asset_selection=[PUBLISHED])
    assert retry.success
    assert {b.name for b in client.list_blobs("adapters", prefix="adapters/pointsav/")} == \
        published
    assert retry.asset_materializations_for_node("pointsav__engineering__published_adapter")[0] \
        .metadata["objects_uploaded"].value == 2
    assert len(versions(root / "adapters" / "pointsav" / "engineering")) == 1

    # Nothing new: pending 0, a skip that says so.
    materialize_buckets(defs, instance, "2026-11-19")
    third = tick(defs, instance, second.cursor)
    assert third.run_requests == [] and "0 pending tuples" in third.skip_message

    # 20 new tuples on night 3: version 2, trained on the whole bucket.
    write_bucket_file(root, "n3.jsonl", lines[20:40], "2026-11-20")
    materialize_buckets(defs, instance, "2026-11-20")
    fourth = tick(defs, instance, third.cursor)
    assert len(fourth.run_requests) == 1 and fourth.run_requests[0].partition_key == "2026-11-20"
    assert run_requested(defs, instance, fourth.run_requests[0], SENSOR_RUN).success
    v1_again, v2 = versions(root / "adapters" / "pointsav" / "engineering")
    assert v2.number == 2
    assert len(v2.manifest.trained_tuples) + len(v2.manifest.held_out_tuples) == 40
    runs = instance.get_runs(RunsFilter(job_name=JOB, statuses=[DagsterRunStatus.SUCCESS]))
    assert len({r.tags["dagster/run_key"] for r in runs if "dagster/run_key" in r.tags}) == 2


def test_a_request_for_an_already_trained_set_trains_nothing(corpora, model_dir, dagster_home,
                                                              tmp_path, external_server):
    """Two requests queued for one night (e.g. a manual one and the sensor's): the second run
    finds nothing pending and materializes nothing, so nothing is trained twice."""
    root = tmp_path / "data"
    defs = make_defs(root, model_dir, {"inference_server": external_server}, adapter_threshold=4)
    instance = DagsterInstance.get()
    write_bucket_file(root, "n1.jsonl", sft_lines(corpora)[:6], "2026-11-19")
    job = defs.resolve_job_def(JOB)
    first = job.execute_in_process(partition_key="2026-11-19", instance=instance,
                                   run_config=TINY)
    assert first.success and len(versions(root / "adapters" / "pointsav" / "engineering")) == 1
    published = first.asset_materializations_for_node("pointsav__engineering__published_adapter")
    assert published[0].metadata["published"].value is False  # no bucket configured
    second = job.execute_in_process(partition_key="2026-11-19", instance=instance,
                                    run_config=TINY)
    assert second.success
    assert second.asset_materializations_for_node("pointsav__engineering__adapter") == []
    assert len(versions(root / "adapters" / "pointsav" / "engineering")) == 1


def test_missing_base_model_fails_the_run_clearly_and_the_set_is_requested_again(
        corpora, model_dir, dagster_home, tmp_path, monkeypatch):
    root = tmp_path / "data"
    defs = make_defs(root, model_dir, adapter_threshold=4)
    instance = DagsterInstance.get()
    write_bucket_file(root, "n1.jsonl", sft_lines(corpora)[:6], "2026-11-19")
    materialize_buckets(defs, instance, "2026-11-19")
    [request] = tick(defs, instance, None).run_requests
    config = {"ops": {"pointsav__engineering__adapter": {"config": {
        "base_model_dir": str(tmp_path / "no-such-model")}}}}
    result = run_requested(defs, instance, request, run_config=config)
    assert not result.success
    failure = result.failure_data_for_node("pointsav__engineering__adapter")
    assert "no-such-model does not exist" in failure.error.message
    folder = root / "adapters" / "pointsav" / "engineering"
    assert versions(folder) == [] and not list(folder.glob(".staging-*"))
    # The next materialization of the bucket requests the same set again, under a new key.
    materialize_buckets(defs, instance, "2026-11-19")
    [again] = tick(defs, instance, None).run_requests
    assert again.run_key == request.run_key + ":attempt-2"


def test_a_set_its_gate_rejected_is_not_requested_again_until_new_tuples_arrive(
        corpora, model_dir, dagster_home, tmp_path, external_server):
    """A gate's verdict is not a failure to retry (issue 48): the run whose version its
    checks kept local succeeds, is tagged with the verdict, the same pending set is not
    requested again, and new tuples up to the threshold make a new set that is. (A run that
    really failed is requested again: the missing-base-model test above.)"""
    root = tmp_path / "data"
    defs = make_defs(root, model_dir, {"inference_server": external_server},
                     adapter_threshold=4)
    instance = DagsterInstance.get()
    lines = sft_lines(corpora)
    write_bucket_file(root, "n1.jsonl", lines[:6], "2026-11-19")
    materialize_buckets(defs, instance, "2026-11-19")
    [request] = tick(defs, instance, None).run_requests
    # A learning rate that changes nothing: the adapter cannot beat its base.
    unchanged = {"ops": {"pointsav__engineering__adapter": {"config": {
        **TINY_TRAINING, "sft_learning_rate": 1e-12}}}}
    result = run_requested(defs, instance, request, run_config=unchanged)
    [v1] = versions(root / "adapters" / "pointsav" / "engineering")
    assert not v1.manifest.beats_base
    # A verdict, not a failure: the run succeeds, the check says what it compared, and
    # publication records why it uploaded nothing.
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[VERDICT_TAG] == KEPT_LOCAL
    [verdict] = [e for e in result.get_asset_check_evaluations()
                 if e.check_name == "beats_base_model"]
    assert not verdict.passed and verdict.severity == AssetCheckSeverity.ERROR
    assert "interval" in verdict.description and "kept local" in verdict.description
    [published] = result.asset_materializations_for_node(
        "pointsav__engineering__published_adapter")
    assert published.metadata["published"].value is False
    assert published.metadata["reason"].value.startswith("kept local by its gate: held-out")
    # The sensor sees the same materialization again (a fresh cursor, as when `dagster dev`
    # starts on the instance): before, the failed run's set was requested as attempt-2.
    again = tick(defs, instance, None)
    assert again.run_requests == [] and "its gate kept the version local" in again.skip_message
    write_bucket_file(root, "n2.jsonl", lines[6:10], "2026-11-20")  # the threshold again
    materialize_buckets(defs, instance, "2026-11-20")
    [new] = tick(defs, instance, None).run_requests
    assert new.tags[PENDING_SET_TAG] != request.tags[PENDING_SET_TAG]
