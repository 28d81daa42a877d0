"""``python -m ci stage``: upload the sdist and data files, content-addressed.

Objects go to ``gs://BUCKET/staging/<digest>/<file name>``: the digest is a hash of the
file's content, so an object that exists is the same content and is skipped. The file name
is kept because pip needs a proper sdist name. An sdist's digest covers its members' names
and bytes, not the tarball's bytes, since builds stamp fresh timestamps into the tarball.

Digests are remembered per file with its size, inode and change times (as git's index
does), so restaging unchanged inputs hashes nothing and costs one existence check a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ci import flags, gcs, outputs
from ci.cloud import Cloud, connect, guard
from ci.errors import BadData
from ci.inputs import optional_file
from ci.settings import resolve

DIGEST_LEN = 16
# Files whose digests are remembered (the most recently hashed).
MAX_CACHED_DIGESTS = 256
GZIP_MAGIC = b"\x1f\x8b"
# What pip installs a trainer from: an sdist (gzipped tar or zip) or a wheel.
PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".whl")
_STAGED = re.compile(rf"/staging/([0-9a-f]{{{DIGEST_LEN}}})/[^/]+$")


@dataclass(frozen=True)
class Staged:
    """One staged file: where it went and whether this run uploaded it."""

    name: str
    uri: str
    digest: str
    uploaded: bool


def content_hash(path: Path) -> str:
    """Digest of the file's content (for ``.tar.gz``: its members, without timestamps)."""
    sha = hashlib.sha256()
    if is_tarball(path):
        try:
            with tarfile.open(path, "r:gz") as tar:
                for member in sorted(tar.getmembers(), key=lambda m: m.name):
                    sha.update(f"{member.name}\0{member.type!r}\0{member.mode}\0".encode())
                    if member.isfile():
                        sha.update(tar.extractfile(member).read())
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BadData(f"{str(path)!r} is not a readable .tar.gz ({exc})") from None
    else:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:DIGEST_LEN]


def is_tarball(path: Path) -> bool:
    """Whether ``path`` is named as a gzipped tar (an sdist)."""
    return path.name.endswith((".tar.gz", ".tgz"))


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tf-vertex-ci" / "digests.json"


def cached_hash(path: Path) -> str:
    """``content_hash(path)``, reused while the file's size, inode and times are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    stamp = [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    cache_file = _cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stat") == stamp:
        return entry["digest"]
    digest = content_hash(path)
    cache.pop(key, None)
    cache[key] = {"stat": stamp, "digest": digest}  # the newest last
    # Every staging reads the whole cache: keep it small. Files that are gone (a build's
    # temporary sdist) are dropped, then the oldest beyond the cap.
    kept = [(k, v) for k, v in cache.items() if k == key or os.path.isfile(k)]
    cache = dict(kept[-MAX_CACHED_DIGESTS:])
    try:  # a cache that cannot be written only costs a rehash next time
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".digests-")
        with os.fdopen(fd, "w") as fh:
            json.dump(cache, fh)
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return digest


def _object_name(path: Path) -> str:
    return f"staging/{cached_hash(path)}/{path.name}"


def already_staged(cloud: Cloud, paths: list[Path]) -> set[str]:
    """The object names of ``paths`` that exist: one listing, whatever the bucket holds.

    ``matchGlob`` with ``{a,b,...}`` asks for exactly these names; a name the glob cannot
    spell (a glob metacharacter in a file name) is checked on its own.
    """
    bucket = cloud.settings.bucket_name
    names = sorted({_object_name(p) for p in paths})
    plain = [n for n in names if not set(n) & set("*?[]{},\\")]
    found = {n for n in names if n not in plain and _exists(cloud, n)}
    if plain:
        pattern = plain[0] if len(plain) == 1 else "{" + ",".join(plain) + "}"
        listing = lambda: [  # noqa: E731
            b.name for b in cloud.storage.list_blobs(bucket, prefix="staging/", match_glob=pattern)
        ]
        found |= set(guard(listing, f"list gs://{bucket}/staging/")) & set(plain)
    return found


def _exists(cloud: Cloud, name: str) -> bool:
    bucket = cloud.settings.bucket_name
    blob = cloud.storage.bucket(bucket).blob(name)
    return guard(blob.exists, f"check gs://{bucket}/{name}")


def stage_file(cloud: Cloud, path: Path, existing: set[str] | None = None) -> Staged:
    """Upload ``path`` unless an object with the same content is already staged.

    ``existing``: object names known to exist (from :func:`already_staged`); without it,
    the object is looked up.
    """
    check_local([str(path)])
    digest = cached_hash(path)
    bucket = cloud.settings.bucket_name
    name = _object_name(path)
    uri = f"gs://{bucket}/{name}"
    known = name in existing if existing is not None else _exists(cloud, name)
    if known:
        return Staged(path.name, uri, digest, uploaded=False)
    blob = cloud.storage.bucket(bucket).blob(name)
    # if_generation_match=0: create only; a concurrent stager's copy is the same content.
    uploaded = guard(lambda: _create(blob, path), f"upload {uri}")
    return Staged(path.name, uri, digest, uploaded=uploaded)


def _create(blob, path: Path) -> bool:
    from google.api_core.exceptions import PreconditionFailed

    try:
        blob.upload_from_filename(str(path), if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def check_local(locations: list[str]) -> None:
    """Fail early, before any emulator starts, on a local file that cannot be staged."""
    for location in locations:
        if location.startswith("gs://"):
            gcs.split_object(location)
            continue
        path = Path(location)
        if path.is_dir():
            raise BadData(f"file to stage is a directory: {location!r}")
        if not path.is_file():
            if os.path.lexists(path):  # a symlink loop, or to nothing
                optional_file(path, "file to stage")
            raise BadData(f"file to stage not found: {location!r}")
        if path.stat().st_size == 0:
            raise BadData(f"file to stage is empty: {location!r}")
        try:
            with path.open("rb") as fh:
                head = fh.read(2)
        except OSError as exc:
            raise BadData(f"cannot read file to stage {location!r}: {exc.strerror}") from None
        if is_tarball(path) and head != GZIP_MAGIC:
            raise BadData(f"{location!r} is named .tar.gz but is not gzip data")


def check_sdist(location: str) -> None:
    """Fail early on a package pip could not install: it must open as an sdist or wheel."""
    check_local([location])
    if not location.endswith(PACKAGE_SUFFIXES):
        raise BadData(f"package {location!r} is not an sdist or wheel (.tar.gz, .zip or .whl)")
    if location.startswith("gs://"):
        return
    path = Path(location)
    try:
        if is_tarball(path):
            with tarfile.open(path, "r:gz") as tar:
                names = tar.getnames()
        else:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise BadData(f"package {location!r} is not a readable archive ({exc})") from None
    if not names:
        raise BadData(f"package {location!r} is an empty archive")


def ensure_staged(cloud: Cloud, location: str, existing: set[str] | None = None) -> Staged:
    """A ``gs://`` URI as is, a local path staged (so commands accept either)."""
    if location.startswith("gs://"):
        gcs.split_object(location)
        match = _STAGED.search(location)
        digest = match.group(1) if match else _remote_digest(cloud, location)
        return Staged(location.rsplit("/", 1)[-1], location, digest, uploaded=False)
    staged = stage_file(cloud, Path(location), existing)
    cloud.log(f"{'uploaded' if staged.uploaded else 'skipped '} {staged.uri}")
    return staged


def _remote_digest(cloud: Cloud, uri: str) -> str:
    bucket, name = gcs.split_object(uri)
    blob = guard(lambda: cloud.storage.bucket(bucket).get_blob(name), f"read {uri}")
    if blob is None:
        raise BadData(f"object not found: {uri!r}")
    return hashlib.sha256((blob.md5_hash or blob.crc32c or uri).encode()).hexdigest()[:DIGEST_LEN]


def data_hash(staged: list[Staged]) -> str:
    """One digest for a set of data files (a label value: lowercase hex, 16 chars)."""
    lines = sorted(f"{s.name}:{s.digest}" for s in staged)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:DIGEST_LEN]


class Staging(NamedTuple):
    """What ``stage`` did: the package and the data files (unpacks as ``package, data``)."""

    package: Staged
    data: list[Staged]

    def outputs(self) -> dict:
        """The ``--outputs`` values: where the package and data went, and the data's hash."""
        return {
            "package_uri": self.package.uri,
            "data_uris": {s.name: s.uri for s in self.data},
            "data_hash": data_hash(self.data),
        }

    def summary(self) -> str:
        """The step summary: one row per object, uploaded or skipped."""
        rows = "".join(
            f"| `{s.uri}` | {'uploaded' if s.uploaded else 'skipped'} |\n"
            for s in [self.package, *self.data]
        )
        return f"### Staged\n\n| Object | |\n|---|---|\n{rows}"


def stage(cloud: Cloud, sdist: Path, data: list[str]) -> Staging:
    """Stage the sdist and the data files; print one line per file."""
    local = [Path(item) for item in [str(sdist), *data] if not item.startswith("gs://")]
    check_sdist(str(sdist))
    check_local([str(p) for p in local])
    existing = already_staged(cloud, local)
    package = ensure_staged(cloud, str(sdist), existing)
    return Staging(package, [ensure_staged(cloud, item, existing) for item in data])


def main(argv: list[str]) -> int:
    parser = flags.parser("stage", __doc__)
    parser.add_argument("--sdist", required=True, help="the trainer sdist (see `ci package`)")
    parser.add_argument(
        "--data", nargs="+", metavar="FILE", help="data files (default: train and eval files)"
    )
    args = parser.parse_args(argv)
    settings = resolve(args)
    data = args.data or [
        settings.data_path(f) for f in (settings.train_file, settings.eval_file) if f
    ]
    check_sdist(args.sdist)
    check_local(data)
    with connect(settings) as cloud:
        result = stage(cloud, Path(args.sdist), data)
    everything = [result.package, *result.data]
    uploaded = sum(s.uploaded for s in everything)
    print(f"{uploaded} uploaded, {len(everything) - uploaded} skipped")
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(args.summary, result.summary())
    return 0
