"""A job's Python packages: fetched from the storage emulator and unpacked onto a path.

Vertex ``pip install``s the packages into its container. Unpacking the sdist (or wheel)
and putting it on ``PYTHONPATH`` gives the module the same code in milliseconds instead
of a pip run; the trainer's dependencies are those of the local environment, standing in
for ``executorImageUri``.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

# (bucket, object name) -> the object's bytes; KeyError when there is no such object.
ReadObject = Callable[[str, str], bytes]


class PackageError(Exception):
    """A package that cannot be fetched or unpacked."""


def fetch(pool_specs: list[dict], job_dir: Path, read: ReadObject) -> dict[int, list[Path]]:
    """Copy and unpack every pool's ``packageUris`` under ``job_dir`` (each URI once);
    ``read`` gets an object from the emulator's Cloud Storage (Vertex reads the bucket as
    its service agent; here the emulator reads its own storage, no client needed).

    Returns the directories to import from, by worker pool index. Raises PackageError
    naming the URI that could not be used.
    """
    unpacked: dict[str, list[Path]] = {}
    by_pool: dict[int, list[Path]] = {}
    for pool, spec in enumerate(pool_specs):
        if not spec:
            continue
        by_pool[pool] = []
        for uri in spec["pythonPackageSpec"]["packageUris"]:
            if uri not in unpacked:
                n = str(len(unpacked))
                try:
                    archive = job_dir / "packages" / n / uri.rsplit("/", 1)[-1]
                    _download(read, uri, archive)
                    unpacked[uri] = unpack(archive, job_dir / "src" / n)
                except PackageError as exc:
                    raise PackageError(f"Cannot use package {uri}: {exc}") from None
            by_pool[pool] += unpacked[uri]
    return by_pool


def _download(read: ReadObject, uri: str, dest: Path) -> None:
    from ci import gcs
    from ci.errors import UsageError

    try:
        bucket, name = gcs.split(uri)
    except UsageError:
        raise PackageError("packageUris must be gs:// URIs") from None
    try:
        content = read(bucket, name)
    except KeyError:
        raise PackageError("no such object in Cloud Storage") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(content)


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Unpack an sdist (``.tar.gz``, ``.zip``) or a wheel; return the import roots."""
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
        elif name.endswith((".zip", ".whl")):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)
        else:
            raise PackageError("expected an sdist (.tar.gz, .zip) or a wheel (.whl)")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"cannot unpack: {exc}") from None
    if name.endswith(".whl"):
        return [dest]
    # An sdist holds one top directory, name-version/, with the packages in it or in src/.
    entries = [p for p in dest.iterdir() if p.is_dir()]
    root = entries[0] if len(entries) == 1 else dest
    return [root / "src", root] if (root / "src").is_dir() else [root]


def unmet_requirements(roots: Iterable[Path]) -> list[str]:
    """One note per requirement the unpacked packages declare (``Requires-Dist`` in an
    sdist's ``PKG-INFO`` or a wheel's ``METADATA``) that this environment does not satisfy.

    Vertex pip-installs a package with its requirements; here the job runs with what is
    installed, so a missing or other version is said up front rather than left to an
    ImportError (or to a job that passes here on versions Vertex would not install).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    notes = []
    for meta in _metadata_files(roots):
        headers = email.parser.Parser().parsestr(meta.read_text(errors="replace"))
        package = headers.get("Name", meta.parent.name)
        for line in headers.get_all("Requires-Dist") or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                notes.append(
                    f"emulator: {package} declares a requirement pip cannot read: {line!r}"
                )
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra's, or another platform's
            try:
                found = importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                found = None
            if found is None or not req.specifier.contains(found, prereleases=True):
                have = f"{found} is installed" if found else "it is not installed"
                notes.append(
                    f"emulator: {package} requires {req}, but {have} here; Vertex AI would "
                    "pip-install it, the emulator runs the job with this environment's packages"
                )
    return notes


def _metadata_files(roots: Iterable[Path]) -> list[Path]:
    found = []
    for root in dict.fromkeys(roots):  # each root once, in order
        if (root / "PKG-INFO").is_file():
            found.append(root / "PKG-INFO")
        found += sorted(root.glob("*.dist-info/METADATA"))
    return found
