"""Publication of an adapter version folder to a GCS bucket.

Objects go to `gs://<bucket>/<prefix>/<tenant>/<role>/v<N>/<relative path>`, the manifest last,
so a reader that finds the manifest finds a complete version. After each upload the object's
MD5 as GCS reports it is compared with the local file's; an object already there with the same
MD5 is not sent again, so a retry after a failed upload sends only what is missing.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from google.api_core.retry import Retry
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from ..shared.faults import crash_point
from .registry import MANIFEST


class ChecksumMismatch(RuntimeError):
    """An uploaded object's MD5 differs from the local file's."""


@dataclass
class PublishReport:
    """Objects of one publication: uploaded, already present (same MD5), total bytes."""

    uri: str
    uploaded: list[str]
    already_present: list[str]
    bytes: int


def md5_base64(path: Path) -> str:
    """Base64 of the file's MD5 digest, the form of GCS's `md5Hash` field."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False))
    return base64.b64encode(digest.digest()).decode()


def upload_checked(target: storage.Bucket, name: str, path: Path, retry: Retry) -> bool:
    """Upload `path` as object `name` unless an object with the same MD5 is there; verify the
    MD5 after upload. Returns whether it was sent.

    Raises:
        ChecksumMismatch: the object's MD5 after upload differs from the file's.
        google.api_core.exceptions.GoogleAPIError: a request failed and `retry` gave up.
    """
    local_md5 = md5_base64(path)
    blob = target.get_blob(name, retry=retry)
    if blob is not None and blob.md5_hash == local_md5:
        return False
    blob = target.blob(name)
    blob.upload_from_filename(str(path), retry=retry)
    crash_point("publication.after_first_object")
    blob.reload(retry=retry)
    if blob.md5_hash != local_md5:
        raise ChecksumMismatch(f"gs://{target.name}/{name}: MD5 {blob.md5_hash} after upload, "
                               f"local {path} has {local_md5}")
    return True


def publish_folder(client: storage.Client, bucket: str, prefix: str, folder: Path,
                   retry: Retry = DEFAULT_RETRY) -> PublishReport:
    """Upload every file under `folder` to `gs://bucket/prefix/...`, manifest last, each verified
    by MD5 after upload. `retry` is the client library's retry policy for each request (default:
    exponential backoff for up to 120 s); uploads are retried too, which is safe because an object
    is only ever written with the same bytes.

    Raises:
        ChecksumMismatch: an object's MD5 after upload differs from the local file's.
        google.api_core.exceptions.GoogleAPIError: a request failed and `retry` gave up
            (RetryError when the store was unreachable); publishing again resumes.
    """
    files = sorted((p for p in folder.rglob("*") if p.is_file()),
                   key=lambda p: (p.name == MANIFEST, str(p)))
    target = client.bucket(bucket)
    report = PublishReport(f"gs://{bucket}/{prefix}/", [], [], 0)
    for path in files:
        name = f"{prefix}/{path.relative_to(folder).as_posix()}"
        if not upload_checked(target, name, path, retry):
            report.already_present.append(name)
            continue
        report.uploaded.append(name)
        report.bytes += path.stat().st_size
    return report
