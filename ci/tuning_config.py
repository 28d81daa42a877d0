"""``tuning.toml``: a study in TOML, turned into Vertex's ``studySpec`` and checked offline.

Pure (no API calls): everything Vertex would refuse is refused here, before anything is
built or submitted, with the TOML key that is wrong. The checks themselves are the
emulator's (:mod:`ci.emulator.study`), so the two never disagree.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ci import settings
from ci.emulator import study
from ci.errors import UsageError
from ci.inputs import did_you_mean, read_text

TYPES = {kind: spec for spec, kind in study.VALUE_SPECS.items()}  # "DOUBLE": "doubleValueSpec"
SCALES = ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
MEASUREMENTS = ("LAST_MEASUREMENT", "BEST_MEASUREMENT")
TOP_KEYS = {
    "display_name", "metric", "goal", "algorithm", "max_trial_count", "parallel_trial_count",
    "max_failed_trial_count", "measurement_selection", "train_steps", "parameters",
}  # fmt: skip
PARAM_KEYS = {"type", "min", "max", "scale", "values"}
# Vizier, which runs Vertex's tuning studies, documents at most 1,000 trials in a study
# (cloud.google.com/ai-platform/optimizer/docs/quotas); a display name is at most 128
# characters (HyperparameterTuningJob.displayName); INTEGER bounds are int64 in the API.
MAX_TRIALS = 1000
MAX_DISPLAY_NAME = 128
INT64 = (-(2**63), 2**63 - 1)
# The tag cloudml-hypertune reports (metricId): printable, no whitespace.
METRIC_TAG = r"[^\s\x00-\x1f\x7f]{1,128}"
# The API field of a study error, as the TOML key it came from.
API_TO_TOML = {
    "max_trial_count": "max_trial_count",
    "parallel_trial_count": "parallel_trial_count",
    "max_failed_trial_count": "max_failed_trial_count",
    "study_spec.metrics": "goal",
    "study_spec.algorithm": "algorithm",
}


@dataclass(frozen=True)
class TuningConfig:
    """A checked study: the API's ``studySpec`` and trial counts, and the trainer's steps."""

    path: str
    study_spec: dict
    max_trial_count: int
    parallel_trial_count: int
    max_failed_trial_count: int
    train_steps: int
    display_name: str | None

    @property
    def metric(self) -> str:
        """The metric tag the trainer reports (cloudml-hypertune)."""
        return self.study_spec["metrics"][0]["metricId"]

    @property
    def goal(self) -> str:
        """``MAXIMIZE`` or ``MINIMIZE``."""
        return self.study_spec["metrics"][0]["goal"]

    def job_fields(self) -> dict:
        """The HyperparameterTuningJob fields that come from this file."""
        return {
            "studySpec": self.study_spec,
            "maxTrialCount": self.max_trial_count,
            "parallelTrialCount": self.parallel_trial_count,
            "maxFailedTrialCount": self.max_failed_trial_count,
        }


def load(path: Path) -> TuningConfig:
    """Read and check ``path``; a bad file is a one-line UsageError naming the key."""
    text = read_text(path, "tuning file")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path))


def parse(data: dict, path: str = "tuning.toml") -> TuningConfig:
    """The :class:`TuningConfig` of a parsed ``tuning.toml``."""

    def bad(key: str, message: str) -> UsageError:
        return UsageError(f"{path}: {_cut(key)}: {message}")

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        hint = did_you_mean(unknown[0], sorted(TOP_KEYS))
        raise bad(unknown[0], f"unknown key{hint} (known: {', '.join(sorted(TOP_KEYS))})")
    goal = _word(data, "goal", "MAXIMIZE", bad)
    algorithm = _word(data, "algorithm", "ALGORITHM_UNSPECIFIED", bad)
    measurement = _word(data, "measurement_selection", "LAST_MEASUREMENT", bad)
    if measurement not in MEASUREMENTS:
        raise bad("measurement_selection", f"{measurement!r} is not one of {MEASUREMENTS}")
    display_name = data.get("display_name")
    if display_name is not None and (
        not isinstance(display_name, str)
        or not re.fullmatch(settings.DISPLAY_NAME.pattern, display_name)
    ):
        raise bad("display_name", f"expected a string of 1 to {MAX_DISPLAY_NAME} characters "
                  f"(printable), got {_quote(display_name)}")  # fmt: skip
    metric = data.get("metric")
    if not isinstance(metric, str) or not re.fullmatch(METRIC_TAG, metric):
        raise bad("metric", "the metric tag the trainer reports is required, e.g. 'accuracy' "
                  f"(up to 128 printable characters, no spaces), got {_quote(metric)}")  # fmt: skip
    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        raise bad("parameters", "at least one [parameters.NAME] table is required")
    spec = {
        "metrics": [{"metricId": metric, "goal": goal}],
        "parameters": [_parameter(name, p, bad) for name, p in params.items()],
        "algorithm": algorithm,
        "measurementSelectionType": measurement,
    }
    counts = {}
    for key, default in (
        ("max_trial_count", 4),
        ("parallel_trial_count", 1),
        ("max_failed_trial_count", 0),
        ("train_steps", settings.FIELDS["train_steps"].default),  # the one default
    ):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(key, f"expected an integer, got {_quote(value)}")
        if value > settings.INT_MAX:
            raise bad(key, f"{_quote(value)} is more than {settings.INT_MAX}")
        counts[key] = value
    if counts["train_steps"] < 1:
        raise bad("train_steps", "must be at least 1")
    for key in ("max_trial_count", "parallel_trial_count", "max_failed_trial_count"):
        if counts[key] > MAX_TRIALS:
            raise bad(key, f"{counts[key]} is more than Vertex's {MAX_TRIALS} trials a study")
    config = TuningConfig(path, spec, display_name=display_name, **counts)
    try:
        study.check({**config.job_fields()})
    except study.StudyError as exc:
        raise bad(_toml_key(exc.field, list(params)), exc.message) from None
    return config


def _parameter(name: str, table, bad) -> dict:
    key = f"parameters.{name}"
    if not isinstance(table, dict):
        raise bad(key, "expected a table with 'type' and its values")
    unknown = sorted(set(table) - PARAM_KEYS)
    if unknown:
        hint = did_you_mean(unknown[0], sorted(PARAM_KEYS))
        known = ", ".join(sorted(PARAM_KEYS))
        raise bad(f"{key}.{unknown[0]}", f"unknown key{hint} (known: {known})")
    kind = _word(table, "type", "", bad, key)
    if kind not in TYPES:
        raise bad(f"{key}.type", f"unknown parameter type {_quote(table.get('type'))} "
                  f"(one of {', '.join(TYPES)})")  # fmt: skip
    param: dict = {"parameterId": name}
    if kind in ("DOUBLE", "INTEGER"):
        for bound in ("min", "max"):
            value = table.get(bound)
            if kind == "INTEGER":
                ok = _is_int(value) and INT64[0] <= value <= INT64[1]
                want = "a whole number within int64"
            else:
                ok = _is_number(value)
                want = "a finite number"
            if not ok:
                raise bad(f"{key}.{bound}", f"{kind} needs {want}, got {_quote(value)}")
        low, high = table["min"], table["max"]
        if kind == "INTEGER":
            param["integerValueSpec"] = {"minValue": str(low), "maxValue": str(high)}
        else:
            if low == high:  # min > max is the study check's, with Vertex's own words
                raise bad(key, f"min ({low}) must be less than max ({high})")
            param["doubleValueSpec"] = {"minValue": float(low), "maxValue": float(high)}
        scale = _word(table, "scale", "UNIT_LINEAR_SCALE", bad, key)
        if scale not in SCALES:
            raise bad(f"{key}.scale", f"{scale!r} is not one of {', '.join(SCALES)}")
        param["scaleType"] = scale
    else:
        values = table.get("values")
        if not isinstance(values, list) or not values:
            raise bad(f"{key}.values", f"{kind} needs a non-empty list of values")
        if kind == "CATEGORICAL":
            odd = [v for v in values if not isinstance(v, str) or not v]
            if odd:
                raise bad(f"{key}.values", f"CATEGORICAL values must be non-empty strings, "
                          f"got {_quote(odd[0])}")  # fmt: skip
            if len(set(values)) != len(values):
                raise bad(f"{key}.values", "CATEGORICAL values must not repeat")
            param["categoricalValueSpec"] = {"values": list(values)}
        else:
            odd = [v for v in values if not _is_number(v)]
            if odd:
                raise bad(f"{key}.values", f"DISCRETE values must be finite numbers, "
                          f"got {_quote(odd[0])}")  # fmt: skip
            param["discreteValueSpec"] = {"values": [float(v) for v in values]}
    return param


def _word(table: dict, key: str, default: str, bad, prefix: str = "") -> str:
    """A string setting such as ``goal``, upper-cased; anything but a string is an error."""
    value = table.get(key, default)
    if not isinstance(value, str):
        name = f"{prefix}.{key}" if prefix else key
        raise bad(name, f"expected a string, got {_quote(value)}")
    return value.upper()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _quote(value) -> str:
    return _cut(repr(value))


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters: a message never quotes a whole file."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _toml_key(field: str, names: list[str]) -> str:
    """The TOML key of a study error's API field."""
    match = re.search(r"parameters\[(\d+)\]", field)
    if match:
        return f"parameters.{names[int(match[1])]}"
    for api, key in API_TO_TOML.items():
        if field.endswith(api) or f".{api}" in field:
            return key
    return field
