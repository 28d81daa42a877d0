"""``gs://`` paths moved with google-cloud-storage (``tf.io.gfile`` cannot reach the emulator)."""

from __future__ import annotations

import os
from pathlib import Path

from ci.errors import UsageError


def split(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → ``("bucket", "a/b")``; the bucket must be a valid name."""
    from ci.settings import BUCKET

    if not uri.startswith("gs://") or len(uri) <= len("gs://"):
        raise UsageError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket:
        raise UsageError(f"no bucket in {uri!r}")
    BUCKET.check(bucket, f"the bucket of {uri!r}")
    return bucket, name


def split_object(uri: str) -> tuple[str, str]:
    """:func:`split` of a URI that must name one object (not a bucket or a folder)."""
    bucket, name = split(uri)
    if not name or name.endswith("/"):
        raise UsageError(f"{uri!r} names no object (gs://BUCKET/PATH/FILE)")
    return bucket, name


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def download_prefix(client, uri: str, dest: Path) -> list[Path]:
    """Copy every object under ``uri`` into ``dest``, keeping relative paths."""
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    written = []
    for blob in client.list_blobs(bucket, prefix=prefix):
        rel = blob.name[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # A fresh blob by name: a listed one carries the mediaLink the server recorded at
        # upload, which names a storage emulator's old port after a restart.
        _download(client.bucket(bucket).blob(blob.name), target)
        written.append(target)
    return written


def download_file(client, uri: str, dest: Path) -> Path:
    bucket, name = split_object(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _download(client.bucket(bucket).blob(name), dest)
    return dest


def _download(blob, dest: Path) -> None:
    """Download to a temporary file beside ``dest``, renamed into place once complete: a
    download that fails half-way (a 503 beyond the retries, a dropped connection) leaves no
    partial ``dest`` (the library removes its partial file only on some errors)."""
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        blob.download_to_filename(os.fspath(partial))
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def read_text(client, uri: str) -> str | None:
    """The object's text, or None when it does not exist."""
    from google.api_core.exceptions import NotFound

    bucket, name = split_object(uri)
    try:
        return client.bucket(bucket).blob(name).download_as_text()
    except NotFound:
        return None


def upload_file(client, path: Path, uri: str) -> None:
    bucket, name = split_object(uri)
    client.bucket(bucket).blob(name).upload_from_filename(os.fspath(path))
