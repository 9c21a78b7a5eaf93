"""The corpus through GCS (corpus_sync.py) with a real emulator and a real Dagster instance: each
corpus_bucket materialization copies the night's files and then its manifest; an upload
interrupted mid-way writes no manifest and the next one sends only what is missing; a mirror
made in an empty folder holds the same tuples with the same arrival times. (Training from the
copy: test_adapter_assets, whose adapter runs read it.)"""

import json

from dagster import DagsterInstance
from dagster_gcp import GCSResource
from google.cloud.storage.retry import DEFAULT_RETRY

from yoyo_assets.adapters.corpus import scan_bucket
from yoyo_assets.adapters.corpus_sync import mirror_corpus
from yoyo_assets.shared.faults import on_crash_point

from .helpers import NIGHT, arrived_during, make_defs, write_bucket_file

PREFIX = "adapters/corpus/engineering-pointsav"
LINES = [json.dumps({"prompt": f"Say {word}.", "completion": word})
         for word in ("harbour", "tide", "gull", "pier", "buoy", "keel")]


def corpus_night(defs, instance):
    return defs.resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=NIGHT, instance=instance, raise_on_error=False)


def test_corpus_copy_survives_an_interrupted_upload_and_mirrors_elsewhere(
        model_dir, dagster_home, tmp_path, emulator):
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    producer = tmp_path / "producer"
    for index in range(3):
        write_bucket_file(producer, f"part-{index}.jsonl", LINES[2 * index:2 * index + 2], NIGHT)
    defs = make_defs(producer, model_dir, gcs_bucket="adapters")
    instance = DagsterInstance.get()

    def interrupt():
        raise ConnectionError("network gone after the first object")

    on_crash_point("publication.after_first_object", interrupt)
    try:
        assert not corpus_night(defs, instance).success
    finally:
        on_crash_point("publication.after_first_object", None)
    names = {b.name for b in client.list_blobs("adapters", prefix=PREFIX)}
    assert names == {f"{PREFIX}/part-0.jsonl"}  # one object sent, no manifest: nothing to read

    done = corpus_night(defs, instance)
    assert done.success
    meta = done.asset_materializations_for_node("pointsav__engineering__corpus_bucket")[0] \
        .metadata
    assert (meta["gcs_files_uploaded"].value, meta["gcs_files_already_present"].value) == (2, 1)
    local_folder = producer / "corpus" / "engineering-pointsav"
    local = scan_bucket(local_folder, "sft", arrived_during(NIGHT) + 3600)
    assert len(local.tuples) == 6

    mirror = tmp_path / "elsewhere" / "engineering-pointsav"
    promised = mirror_corpus(client, "adapters", PREFIX, NIGHT, mirror, DEFAULT_RETRY)
    assert promised == sorted(t.sha256 for t in local.tuples)
    copied = scan_bucket(mirror, "sft", arrived_during(NIGHT) + 3600)
    assert sorted(t.sha256 for t in copied.tuples) == promised
    for path in mirror.iterdir():  # arrival times travel with the manifest
        assert path.stat().st_mtime == (local_folder / path.name).stat().st_mtime
