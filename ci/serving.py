"""Serve a SavedModel's ``serving_default`` signature in TF Serving's row format.

Inputs and outputs are read from the signature, never assumed: this works for any
trainer package. Used by ``python -m ci local-predict`` and by the emulator's predict.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import sys
from pathlib import Path

from ci.errors import BadData, BadInstance
from ci.inputs import json_lines_hint, parse_json, read_text

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet start-up
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# A string tensor's value may also be binary: TF Serving's ``{"b64": "..."}``, decoded first.
_KINDS = {"float": (int, float), "int": (int,), "bool": (bool,), "string": (str, bytes)}


def read_instances(path: Path) -> list:
    """Instances from a JSON-lines file, or from a ``{"instances": [...]}`` request body file."""
    text = read_text(path, "instances file")
    stripped = text.strip()
    if stripped.startswith("{") and '"instances"' in stripped.split("\n", 1)[0][:200]:
        try:
            body = parse_json(stripped, str(path), strict=True)
        except BadData:
            body = None  # not one request body: read it as JSON lines, which names the bad line
        if isinstance(body, dict) and isinstance(body.get("instances"), list):
            if not body["instances"]:
                raise BadData(f"{path}: no instances (its 'instances' list is empty)")
            return body["instances"]
    instances = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                instances.append(parse_json(line, f"{path}:{number}", strict=True))
            except BadData as exc:
                hint = json_lines_hint(number, line)
                raise BadData(f"{exc}: {line[:80]!r}{hint}") from None
    if not instances:
        raise BadData(f"{path}: no instances")
    return instances


def skip_pyplot() -> None:
    """Keep ``matplotlib.pyplot`` out of this process.

    Keras, which ``import tensorflow`` loads, imports pyplot whenever matplotlib is installed
    (as it is beside ``ci report``), for plotting helpers that loading and calling a
    SavedModel never use: 0.4 s of a 3.5 s TensorFlow start. With ``None`` in
    ``sys.modules`` Keras's guarded import fails as if matplotlib were absent. ``ci``'s own
    plots use matplotlib's Figure API, never pyplot. No effect once pyplot or TensorFlow is
    loaded.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("matplotlib.pyplot", None)


# What ``import tensorflow`` loads of Keras: it imports the optimizers eagerly (an ImportError
# is ignored) so that they are registered before a SavedModel holding one is loaded.
_EAGER_KERAS = ("keras.src.optimizers", "tf_keras.src.optimizers")


def import_tensorflow():
    """``import tensorflow`` for serving, without Keras: :func:`skip_pyplot` first.

    Serving loads and calls a signature; Vertex's TF Serving does it with no Python, let
    alone Keras. TensorFlow's guarded eager import of Keras's optimizers (all of Keras,
    0.4 CPU-s of a 2.5 s start) fails here as if Keras were absent; an object of a class
    that is not registered still loads, as a plain trackable object. The names are
    released at once: a later ``import keras`` in the same process works.
    """
    skip_pyplot()
    loading = "tensorflow" not in sys.modules  # else loaded, or loading in another thread
    blocked = [name for name in _EAGER_KERAS if loading and name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked, None))
    try:
        import tensorflow as tf
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return tf


class Predictor:
    """A loaded ``serving_default`` signature and what its inputs and outputs are."""

    def __init__(self, signature):
        self._tf = import_tensorflow()
        self._fn = signature
        _, specs = signature.structured_input_signature
        self.inputs = dict(sorted(specs.items()))
        self.outputs = dict(sorted(signature.structured_outputs.items()))

    @classmethod
    def load(cls, export_dir: str | Path) -> Predictor:
        """Load the SavedModel in ``export_dir`` (a local directory)."""
        tf = import_tensorflow()

        if not (Path(export_dir) / "saved_model.pb").is_file():
            raise BadData(f"{export_dir}: no saved_model.pb (not a complete SavedModel export)")
        try:
            loaded = tf.saved_model.load(os.fspath(export_dir))
        except Exception as exc:  # TensorFlow raises many kinds for a damaged export
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise BadData(f"{export_dir}: cannot load the SavedModel: {first}") from None
        if "serving_default" not in loaded.signatures:
            raise BadData(f"{export_dir}: the SavedModel has no serving_default signature")
        predictor = cls(loaded.signatures["serving_default"])
        predictor._loaded = loaded  # the signature needs its object graph kept alive
        return predictor

    def _column(self, name, spec, instances):
        dtype = spec.dtype
        kind = (
            "bool"
            if dtype.is_bool
            else "float"
            if dtype.is_floating
            else "int"
            if dtype.is_integer
            else "string"
        )
        inner = spec.shape[1:]
        values = []
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict) or _is_b64(instance):
                if len(self.inputs) == 1:
                    value = instance
                else:
                    raise BadInstance(
                        f"instance {index}: expected an object with fields "
                        f"{', '.join(self.inputs)}, got {json.dumps(instance)[:80]}"
                    )
            elif name not in instance:
                raise BadInstance(f"instance {index}: missing field {name!r}")
            else:
                value = instance[name]
            value = _unpack_b64(index, name, value)
            _check_value(index, name, value, kind, inner.rank or 0)
            values.append(value)
        try:
            return self._tf.constant(values, dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise BadInstance(f"field {name!r}: values do not fit {spec.shape}: {exc}") from None

    def predict(self, instances: list) -> list:
        """Predictions for a batch of instances, in TF Serving's row format: one dict of
        output values per instance, or the bare value when the signature has one output;
        an output whose name ends in ``_bytes`` as ``{"b64": ...}``."""
        if not isinstance(instances, list) or not instances:
            raise BadInstance("'instances' must be a non-empty list")
        for index, instance in enumerate(instances):
            if isinstance(instance, dict) and not _is_b64(instance):
                unknown = sorted(set(instance) - set(self.inputs))
                if unknown:
                    raise BadInstance(
                        f"instance {index}: unknown field {unknown[0]!r} (the "
                        f"signature takes {', '.join(self.inputs)})"
                    )
        tensors = {name: self._column(name, spec, instances) for name, spec in self.inputs.items()}
        outputs = {
            name: [_plain(row, name.endswith("_bytes")) for row in value.numpy().tolist()]
            for name, value in self._fn(**tensors).items()
        }
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return [{name: rows[i] for name, rows in outputs.items()} for i in range(len(instances))]


def _check_value(index: int, name: str, value, kind: str, rank: int) -> None:
    """One field of one instance must be a (nested list of) JSON value(s) of the right kind."""
    if rank and isinstance(value, list):
        for item in value:
            _check_value(index, name, item, kind, rank - 1)
        return
    ok = isinstance(value, _KINDS[kind]) and not (kind != "bool" and isinstance(value, bool))
    if ok and kind == "float" and not math.isfinite(value):
        ok = False
    if not ok or rank:
        expected = f"a list (rank {rank}) of " if rank else ""
        raise BadInstance(
            f"instance {index}: field {name!r} must be {expected}{kind}, "
            f"got {json.dumps(value, default=lambda _: 'binary (b64)')[:60]}"
        )


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)


def _unpack_b64(index: int, name: str, value):
    """``{"b64": TEXT}`` (at any depth of a list) as the bytes it encodes."""
    if isinstance(value, list):
        return [_unpack_b64(index, name, item) for item in value]
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise BadInstance(
                f"instance {index}: field {name!r}: b64 is not base64: {value['b64'][:40]!r}"
            ) from None
    return value


def _plain(value, binary: bool = False):
    if isinstance(value, bytes):
        if binary:
            return {"b64": base64.b64encode(value).decode("ascii")}
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_plain(v, binary) for v in value]
    return value
