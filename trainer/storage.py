"""Local paths and ``gs://`` URIs, the latter through google-cloud-storage.

``tf.io.gfile`` cannot reach the storage emulator, so nothing here uses it. Writes are
made complete-or-absent: locally by renaming a finished directory into place; on Cloud
Storage by uploading ``saved_model.pb`` (what loaders look for) after everything else.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

_MODEL_MARKER = "saved_model.pb"


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def _client():
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="local", credentials=AnonymousCredentials())
    return storage.Client()


def _blob(uri: str):
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket or not name:
        raise ValueError(f"not a gs://BUCKET/OBJECT URI: {uri!r}")
    return _client().bucket(bucket).blob(name)


def join(root: str, *parts: str) -> str:
    if is_gcs(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def expand(spec: str) -> list[str]:
    """The files ``spec`` names: one path or URI, a glob, or a comma-separated list of them.

    Globs are expanded and sorted (Cloud Storage ones by listing the bucket under the part
    before the first wildcard); a glob that matches nothing is an error. Plain paths are
    returned as given, so a missing one is reported by whoever opens it.
    """
    found: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if not _has_magic(part):
            found.append(part)
            continue
        if is_gcs(part):
            bucket, _, pattern = part[len("gs://") :].partition("/")
            prefix = re.split(r"[*?[]", pattern, maxsplit=1)[0]
            from google.api_core.exceptions import NotFound

            try:
                names = [b.name for b in _client().list_blobs(bucket, prefix=prefix)]
            except NotFound:
                raise FileNotFoundError(f"{part}: no such bucket") from None
            matches = [f"gs://{bucket}/{n}" for n in names if fnmatch.fnmatchcase(n, pattern)]
        else:
            matches = [p for p in glob.glob(part) if os.path.isfile(p)]
        if not matches:
            raise FileNotFoundError(f"{part}: no file matches")
        found += sorted(matches)
    if not found:
        raise FileNotFoundError(f"{spec!r}: names no file")
    return found


def localize(path: str, workdir: str) -> str:
    """A local copy of ``path`` (downloaded when it is on Cloud Storage)."""
    if not is_gcs(path):
        return path
    from google.api_core.exceptions import NotFound

    # Shards in different folders may share a base name: keep each download apart.
    folder = tempfile.mkdtemp(prefix="download-", dir=workdir)
    local = os.path.join(folder, path.rsplit("/", 1)[-1])
    try:
        _blob(path).download_to_filename(local)
    except NotFound:
        os.remove(local) if os.path.exists(local) else None
        raise FileNotFoundError(f"{path}: no such object") from None
    return local


def publish_dir(local_dir: str, dest: str) -> None:
    """Put a finished directory at ``dest`` so that no reader sees part of it."""
    if is_gcs(dest):
        files = sorted(Path(local_dir).rglob("*"), key=lambda p: p.name == _MODEL_MARKER)
        for path in files:
            if path.is_file():
                _blob(join(dest, path.relative_to(local_dir).as_posix())).upload_from_filename(
                    os.fspath(path)
                )
        return
    dest = os.path.normpath(dest)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".incoming-", dir=os.path.dirname(dest) or ".")
    shutil.copytree(local_dir, staging, dirs_exist_ok=True)
    if os.path.exists(dest):
        old = dest + f".old-{os.getpid()}"
        os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old)
    else:
        os.replace(staging, dest)


def upload_tree(local_dir: str, dest: str) -> None:
    """Copy every file under ``local_dir`` to ``dest``, keeping what is already there."""
    for path in sorted(Path(local_dir).rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(local_dir).as_posix()
        if is_gcs(dest):
            _blob(join(dest, relative)).upload_from_filename(os.fspath(path))
        else:
            target = os.path.join(dest, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)


def publish_text(text: str, dest: str) -> None:
    """Write a small text file atomically (temp file + rename, or one object upload)."""
    if is_gcs(dest):
        _blob(dest).upload_from_string(text, content_type="application/json")
        return
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=os.path.dirname(os.path.abspath(dest)))
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, dest)
