"""Small sdist-shaped archives the tests make from a few files, without a build backend."""

from __future__ import annotations

import io
import tarfile


def sdist_bytes(top: str, files: dict[str, str]) -> bytes:
    """A ``.tar.gz`` holding ``files`` (path -> text) under one directory ``top``, as an
    sdist does (``name-version/``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
