"""Loaded models for predict: copied out of the storage emulator once, loaded once, cached.

TensorFlow (and ``ci.serving``) is imported here lazily, on the first model load, so the
emulator starts in a fraction of a second and pays the import only when serving.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from ci.emulator.httpd import ApiError, precondition
from ci.emulator.objects import Objects


class ModelCache:
    """``Predictor`` objects by (model id, version id); loads are serialised per key.

    ``runtime="image"`` loads each export under its serving image's TensorFlow
    (:mod:`ci.emulator.runtime`) instead of this process's.
    """

    def __init__(self, cache_dir: Path, storage_url: str, objects: Objects, runtime: str = "local"):
        self.cache_dir = cache_dir
        self.storage_url = storage_url  # batch prediction's client writes results there
        self.objects = objects
        self.runtime = runtime
        self._loaded: dict[tuple[str, str], object] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, model_id: str, version_id: str, artifact_uri: str, image_uri: str = ""):
        """The predictor for a model version, loading it on first use."""
        key = (model_id, version_id)
        predictor = self._loaded.get(key)  # the hot path: one dict lookup, no lock
        if predictor is not None:
            return predictor
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(key, artifact_uri, image_uri)
        return self._loaded[key]

    def _load(self, key: tuple[str, str], artifact_uri: str, image_uri: str):
        from ci.errors import CiError

        local = self.cache_dir / f"{key[0]}-v{key[1]}"
        if not (local / ".complete").exists():
            self._download(artifact_uri, local)
        if self.runtime == "image":
            from ci.emulator import runtime

            remote = runtime.load(image_uri, local, f"{key[0]}@{key[1]}")
            if remote is not None:
                return remote
        from ci.serving import Predictor

        try:
            return Predictor.load(local)
        except CiError as exc:
            raise precondition(f"Model {key[0]}@{key[1]} cannot be served: {exc}") from None

    def _download(self, artifact_uri: str, local: Path) -> None:
        from ci import gcs
        from ci.errors import UsageError

        if not artifact_uri:
            raise precondition("The model has no artifactUri, so there is nothing to serve.")
        shutil.rmtree(local, ignore_errors=True)
        try:
            files = self.objects.copy_prefix(*gcs.split(artifact_uri), local)
        except UsageError as exc:
            raise ApiError(400, f"artifactUri: {exc}") from None
        except KeyError:
            raise precondition(
                f"The bucket of artifactUri {artifact_uri} does not exist."
            ) from None
        if not files:
            raise precondition(f"No files under artifactUri {artifact_uri}.")
        (local / ".complete").touch()
