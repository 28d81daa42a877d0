"""Loaded models for predict: copied out of the storage emulator once, loaded once, cached.

TensorFlow (and ``ci.serving``) is imported here lazily, on the first model load, so the
emulator starts in a fraction of a second and pays the import only when serving.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

from ci.emulator.httpd import ApiError, precondition
from ci.emulator.objects import Objects


class ModelCache:
    """``Predictor`` objects by (model id, version id, artifactUri, image); loads are
    serialised per key. The artifactUri is part of the key: a model deleted and uploaded
    again under the same modelId is another model, whose version 1 must not be served by
    the first one's cached export.

    ``runtime="image"`` loads each export under its serving image's TensorFlow
    (:mod:`ci.emulator.runtime`) instead of this process's.
    """

    def __init__(self, cache_dir: Path, storage_url: str, objects: Objects, runtime: str = "local"):
        self.cache_dir = cache_dir
        self.storage_url = storage_url  # batch prediction's client writes results there
        self.objects = objects
        self.runtime = runtime
        self._loaded: dict[tuple[str, str, str, str], object] = {}
        self._locks: dict[tuple[str, str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, model_id: str, version_id: str, artifact_uri: str, image_uri: str = ""):
        """The predictor for a model version, loading it on first use."""
        key = (model_id, version_id, artifact_uri, image_uri)
        predictor = self._loaded.get(key)  # the hot path: one dict lookup, no lock
        if predictor is not None:
            return predictor
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(key, artifact_uri, image_uri)
        return self._loaded[key]

    def _load(self, key: tuple, artifact_uri: str, image_uri: str):
        from ci.errors import CiError

        digest = hashlib.sha256(artifact_uri.encode()).hexdigest()[:10]
        local = self.cache_dir / f"{key[0]}-v{key[1]}-{digest}"
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
            raise precondition(
                f"Model {key[0].rsplit('~', 1)[-1]}@{key[1]} cannot be served: {exc}"
            ) from None

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


def tf_serving(predictor, raw: bytes) -> tuple[int, dict]:
    """Answer ``raw`` as TF Serving's REST predict API does (what ``rawPredict`` passes to
    and from Vertex's TensorFlow container): the row format (``instances`` in,
    ``predictions`` out) or the columnar one (``inputs`` in, ``outputs`` out), an optional
    ``signature_name``; a bad request is status 400 with ``{"error": MESSAGE}``.
    """
    from ci.errors import BadInstance

    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return 400, {"error": f"JSON Parse error: {exc}"}
    if not isinstance(body, dict):
        return 400, {"error": "the request must be a JSON object with 'instances' or 'inputs'"}
    given = sorted(body.keys() & {"instances", "inputs"})
    if len(given) != 1:
        both = "Not expecting both 'inputs' and 'instances'"
        return 400, {"error": both if given else "Missing 'inputs' or 'instances' key"}
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        return 400, {"error": f'Serving signature name: "{signature}" not found in signature def'}
    try:
        if given == ["instances"]:
            return 200, {"predictions": predictor.predict(body["instances"])}
        predictions = predictor.predict(_rows(body["inputs"]))
    except BadInstance as exc:
        return 400, {"error": str(exc)}
    # Rows of several outputs are objects; one output's value is bare ({"b64"} if binary).
    if predictions and isinstance(predictions[0], dict) and set(predictions[0]) != {"b64"}:
        return 200, {"outputs": {name: [p[name] for p in predictions] for name in predictions[0]}}
    return 200, {"outputs": predictions}


def _rows(inputs) -> list:
    """The columnar format's ``inputs`` as rows: a list is one input's batch; an object maps
    each input to its batch, all of one length."""
    from ci.errors import BadInstance

    if isinstance(inputs, list):
        return inputs
    if not isinstance(inputs, dict) or not inputs:
        raise BadInstance("'inputs' must be a list or an object of named inputs")
    lengths = {name: len(v) if isinstance(v, list) else None for name, v in inputs.items()}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise BadInstance(
            "'inputs': every named input must be a list of the same length (the batch), "
            f"got lengths {lengths}"
        )
    size = next(iter(lengths.values()))
    return [{name: values[i] for name, values in inputs.items()} for i in range(size)]
