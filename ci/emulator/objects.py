"""The emulator's own reads of Cloud Storage: straight from the storage emulator's files.

Vertex reads a job's packages and a model's artifacts as its service agent, inside Google;
the emulator does the same inside its process, without a Cloud Storage client (whose
import would cost 0.2 s of CPU while the caller is building and staging). Batch prediction
writes results and goes through the client. Clients outside the emulator always use the
HTTP API.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class Objects:
    """Read-only view of gcp-storage-emulator's ``Storage`` (its request thread writes)."""

    def __init__(self, backend):
        self._backend = backend

    def read(self, bucket: str, name: str) -> bytes:
        """A live object's bytes; KeyError when there is no such object."""
        from gcp_storage_emulator.exceptions import NotFound

        if name not in self._backend.objects.get(bucket, {}):  # soft-deleted ones are not
            raise KeyError(f"gs://{bucket}/{name}")
        try:
            return self._backend.get_file(bucket, name, show_error=False)
        except NotFound:
            raise KeyError(f"gs://{bucket}/{name}") from None

    def copy_prefix(self, bucket: str, prefix: str, dest: Path) -> list[Path]:
        """Copy every object under ``prefix`` (a folder) into ``dest``, keeping relative
        paths; KeyError when the bucket does not exist. Names that would land outside
        ``dest`` (``..``, absolute) are skipped, as a folder download would."""
        if self._backend.get_bucket(bucket) is None:
            raise KeyError(f"gs://{bucket}")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        # list() copies the keys in one step: uploads may add objects meanwhile.
        listed = list(self._backend.objects.get(bucket, {}))
        names = sorted(n for n in listed if n.startswith(prefix))
        written = []
        for name in names:
            rel = PurePosixPath(name[len(prefix) :])
            if not rel.parts or name.endswith("/") or rel.is_absolute() or ".." in rel.parts:
                continue
            try:
                content = self.read(bucket, name)
            except KeyError:  # deleted since the listing
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(target)
        return written
