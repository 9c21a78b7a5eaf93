"""Publication to a real gcp-storage-emulator on loopback: every object listed, downloaded back
with equal checksums, manifest last; a retry sends only what is missing; an emulator that is down
fails the upload, and publishing again after it is back completes the version."""

import hashlib
import os
from pathlib import Path

import pytest
from google.api_core.exceptions import RetryError
from google.cloud.storage.retry import DEFAULT_RETRY
from dagster_gcp import GCSResource

from yoyo_assets.adapters.publication import publish_folder


@pytest.fixture
def version_folder(tmp_path) -> Path:
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(300_000))
    (folder / "adapter_config.json").write_text('{"r": 16}')
    (folder / "tokenizer.json").write_text('{"model": {}}')
    (folder / "manifest.json").write_text('{"version": 1}')
    return folder


def test_published_objects_download_back_identical(emulator, version_folder, tmp_path):
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    report = publish_folder(client, "adapters", "adapters/pointsav/engineering/v1",
                            version_folder)
    assert report.uploaded[-1].endswith("/manifest.json")  # manifest last
    names = sorted(b.name for b in client.list_blobs("adapters", prefix="adapters/pointsav/"))
    assert names == sorted(f"adapters/pointsav/engineering/v1/{p.name}"
                           for p in version_folder.iterdir())
    for path in version_folder.iterdir():
        blob = client.bucket("adapters").blob(f"adapters/pointsav/engineering/v1/{path.name}")
        copy = tmp_path / f"download-{path.name}"
        blob.download_to_filename(str(copy))
        assert hashlib.sha256(copy.read_bytes()).digest() == \
            hashlib.sha256(path.read_bytes()).digest()
    again = publish_folder(client, "adapters", "adapters/pointsav/engineering/v1", version_folder)
    assert again.uploaded == [] and len(again.already_present) == 4


def test_publication_fails_while_the_store_is_down_and_completes_after(emulator, version_folder):
    client = GCSResource(project="yoyo-test").get_client()
    client.create_bucket("adapters")
    emulator.stop()
    with pytest.raises(RetryError, match="Connection refused"):
        # The default policy retries a dead endpoint for 120 s; 3 s shows the same failure.
        publish_folder(client, "adapters", "adapters/pointsav/engineering/v1", version_folder,
                       retry=DEFAULT_RETRY.with_timeout(3))
    emulator.start()  # in memory: the bucket is gone with the old process
    client.create_bucket("adapters")
    report = publish_folder(client, "adapters", "adapters/pointsav/engineering/v1", version_folder)
    assert len(report.uploaded) == 4
