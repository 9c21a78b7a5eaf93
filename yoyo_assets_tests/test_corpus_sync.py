"""The corpus through GCS (corpus_sync.py) with a real emulator and a real Dagster instance: each
corpus_bucket materialization copies the night's files and manifest; an upload interrupted
mid-way writes no manifest and the next one sends only what is missing; an adapter run with
`corpus_source = gcs` on an empty data root trains on the same tuple set."""

import json

import pytest
from dagster import DagsterInstance
from dagster_gcp import GCSResource

from yoyo_assets.adapters.corpus import scan_bucket
from yoyo_assets.adapters.registry import versions
from yoyo_assets.shared.faults import on_crash_point

from .helpers import JOB, NIGHT, TINY, arrived_during, make_defs, sft_lines, write_bucket_file

pytestmark = pytest.mark.slow

PREFIX = "adapters/corpus/engineering-pointsav/"


def corpus_night(defs, instance):
    return defs.resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=NIGHT, instance=instance, raise_on_error=False)


def test_corpus_copy_survives_an_interrupted_upload_and_trains_elsewhere(
        corpora, model_dir, dagster_home, tmp_path, emulator):
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    producer = tmp_path / "producer"
    lines = sft_lines(corpora)[:50]
    for index, part in enumerate((lines[:20], lines[20:35], lines[35:])):
        write_bucket_file(producer, f"part-{index}.jsonl", part, NIGHT)
    defs = make_defs(producer, model_dir, gcs_bucket="adapters")
    instance = DagsterInstance.get()

    def interrupt():
        raise ConnectionError("network gone after the first object")

    on_crash_point("publication.after_first_object", interrupt)
    try:
        failed = corpus_night(defs, instance)
    finally:
        on_crash_point("publication.after_first_object", None)
    assert not failed.success
    names = {b.name for b in client.list_blobs("adapters", prefix=PREFIX)}
    assert names == {PREFIX + "part-0.jsonl"}  # one object sent, no manifest: nothing to read

    done = corpus_night(defs, instance)
    assert done.success
    meta = done.asset_materializations_for_node("pointsav__engineering__corpus_bucket")[0] \
        .metadata
    assert (meta["gcs_files_uploaded"].value, meta["gcs_files_already_present"].value) == (2, 1)
    manifest = json.loads(client.bucket("adapters").blob(f"{PREFIX}manifests/{NIGHT}.json")
                          .download_as_bytes())
    local = scan_bucket(producer / "corpus" / "engineering-pointsav", "sft",
                        arrived_during(NIGHT) + 3600)
    assert manifest["tuples"] == sorted(t.sha256 for t in local.tuples)
    assert [f["name"] for f in manifest["files"]] == ["part-0.jsonl", "part-1.jsonl",
                                                      "part-2.jsonl"]

    # Phase 2 on a machine that never saw the local folder: an empty data root, corpus from GCS.
    trainer = tmp_path / "trainer"
    elsewhere = make_defs(trainer, model_dir, gcs_bucket="adapters", corpus_source="gcs")
    trained = elsewhere.resolve_job_def(JOB).execute_in_process(
        partition_key=NIGHT, instance=instance, run_config=TINY)
    assert trained.success
    assert not (trainer / "corpus").exists()
    [version] = versions(trainer / "adapters" / "pointsav" / "engineering")
    m = version.manifest
    assert sorted(m.trained_tuples + m.eval_tuples) == manifest["tuples"]
