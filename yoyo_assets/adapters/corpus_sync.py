"""A corpus bucket's copy in GCS, so that Phase 2 can train on a machine that never saw the local
folder.

Layout: `gs://<bucket>/<prefix>/corpus/<role>-<tenant>/<file>.jsonl`, and per night
`.../manifests/<night>.json` listing the files that had arrived by the night's end (name, MD5,
modification time, size) and the hashes of their valid tuples. Files go first, each checked by
MD5 and skipped when unchanged; the manifest goes last, so a reader that finds a night's
manifest finds every file it names. A reader mirrors a night's files into a local folder with
their modification times, and scans the mirror as it would scan the bucket.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from google.api_core.retry import Retry
from google.cloud import storage

from .publication import md5_base64, upload_checked


class CorpusNotSynced(RuntimeError):
    """The night's corpus manifest is not in the bucket, or a file differs from it."""


@dataclass
class CorpusUpload:
    """One night's upload: the manifest's URI, files sent, files already there (same MD5)."""

    manifest_uri: str
    uploaded: list[str]
    already_present: list[str]


def corpus_prefix(gcs_prefix: str, bucket_name: str) -> str:
    """Object prefix of a corpus bucket's copy: `<gcs_prefix>/corpus/<role>-<tenant>`."""
    return f"{gcs_prefix}/corpus/{bucket_name}"


def upload_corpus(client: storage.Client, gcs_bucket: str, prefix: str, files: list[Path],
                  tuple_hashes: list[str], night: str, retry: Retry) -> CorpusUpload:
    """Upload `files` (the bucket's files that arrived by the night's end) under `prefix`, then
    the night's manifest listing them and `tuple_hashes`.

    Raises:
        publication.ChecksumMismatch: an object's MD5 after upload differs from its file's.
        google.api_core.exceptions.GoogleAPIError: a request failed and `retry` gave up;
            uploading again sends only what is missing.
    """
    target = client.bucket(gcs_bucket)
    report = CorpusUpload(f"gs://{gcs_bucket}/{prefix}/manifests/{night}.json", [], [])
    for path in sorted(files):
        sent = upload_checked(target, f"{prefix}/{path.name}", path, retry)
        (report.uploaded if sent else report.already_present).append(path.name)
    manifest = {"night": night, "tuples": sorted(tuple_hashes), "files": [
        {"name": p.name, "md5": md5_base64(p), "mtime": p.stat().st_mtime,
         "size": p.stat().st_size} for p in sorted(files)]}
    target.blob(f"{prefix}/manifests/{night}.json").upload_from_string(
        json.dumps(manifest, indent=1), content_type="application/json", retry=retry)
    return report


def mirror_corpus(client: storage.Client, gcs_bucket: str, prefix: str, night: str,
                  mirror: Path, retry: Retry) -> list[str]:
    """Make `mirror` hold exactly the files of the night's manifest, with their modification
    times (files already there with the right MD5 are kept). Returns the manifest's tuple
    hashes, which a scan of the mirror must reproduce.

    Raises:
        CorpusNotSynced: no manifest for the night, or a downloaded file's MD5 differs.
        google.api_core.exceptions.GoogleAPIError: a request failed and `retry` gave up.
    """
    source = client.bucket(gcs_bucket)
    blob = source.get_blob(f"{prefix}/manifests/{night}.json", retry=retry)
    if blob is None:
        raise CorpusNotSynced(f"gs://{gcs_bucket}/{prefix}/manifests/{night}.json does not "
                              "exist: the night's corpus_bucket has not uploaded it")
    manifest = json.loads(blob.download_as_bytes(retry=retry))
    mirror.mkdir(parents=True, exist_ok=True)
    wanted = {entry["name"] for entry in manifest["files"]}
    for stale in mirror.glob("*.jsonl"):
        if stale.name not in wanted:
            stale.unlink()
    for entry in manifest["files"]:
        local = mirror / entry["name"]
        if not (local.is_file() and md5_base64(local) == entry["md5"]):
            source.blob(f"{prefix}/{entry['name']}").download_to_filename(str(local),
                                                                          retry=retry)
            if md5_base64(local) != entry["md5"]:
                raise CorpusNotSynced(f"gs://{gcs_bucket}/{prefix}/{entry['name']} differs "
                                      f"from the night's manifest (MD5)")
        os.utime(local, (entry["mtime"], entry["mtime"]))
    return manifest["tuples"]
