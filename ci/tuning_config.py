"""``tuning.toml``: a study in TOML, turned into Vertex's ``studySpec`` and checked offline.

Pure (no API calls): everything Vertex would refuse is refused here, before anything is
built or submitted, with the TOML key that is wrong. The checks themselves are the
emulator's (:mod:`ci.emulator.study`), so the two never disagree.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ci import settings
from ci.emulator import study
from ci.errors import UsageError

TYPES = {kind: spec for spec, kind in study.VALUE_SPECS.items()}  # "DOUBLE": "doubleValueSpec"
SCALES = ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
MEASUREMENTS = ("LAST_MEASUREMENT", "BEST_MEASUREMENT")
TOP_KEYS = {
    "display_name", "metric", "goal", "algorithm", "max_trial_count", "parallel_trial_count",
    "max_failed_trial_count", "measurement_selection", "train_steps", "parameters",
}  # fmt: skip
PARAM_KEYS = {"type", "min", "max", "scale", "values"}
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
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read tuning file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path))


def parse(data: dict, path: str = "tuning.toml") -> TuningConfig:
    """The :class:`TuningConfig` of a parsed ``tuning.toml``."""

    def bad(key: str, message: str) -> UsageError:
        return UsageError(f"{path}: {key}: {message}")

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    goal = str(data.get("goal", "MAXIMIZE")).upper()
    algorithm = str(data.get("algorithm", "ALGORITHM_UNSPECIFIED")).upper()
    measurement = str(data.get("measurement_selection", "LAST_MEASUREMENT")).upper()
    if measurement not in MEASUREMENTS:
        raise bad("measurement_selection", f"{measurement!r} is not one of {MEASUREMENTS}")
    metric = data.get("metric")
    if not isinstance(metric, str) or not re.fullmatch(r"\S+", metric):
        raise bad("metric", "the metric tag the trainer reports is required, e.g. 'accuracy'")
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
            raise bad(key, f"expected an integer, got {value!r}")
        counts[key] = value
    if counts["train_steps"] < 1:
        raise bad("train_steps", "must be at least 1")
    config = TuningConfig(path, spec, display_name=data.get("display_name"), **counts)
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
        raise bad(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(PARAM_KEYS))})")
    kind = str(table.get("type", "")).upper()
    if kind not in TYPES:
        raise bad(f"{key}.type", f"unknown parameter type {table.get('type')!r} "
                  f"(one of {', '.join(TYPES)})")  # fmt: skip
    param: dict = {"parameterId": name}
    if kind in ("DOUBLE", "INTEGER"):
        for bound in ("min", "max"):
            value = table.get(bound)
            ok = isinstance(value, int) if kind == "INTEGER" else isinstance(value, int | float)
            if not ok or isinstance(value, bool):
                raise bad(f"{key}.{bound}", f"{kind} needs a number, got {value!r}")
        low, high = table["min"], table["max"]
        if kind == "INTEGER":
            param["integerValueSpec"] = {"minValue": str(low), "maxValue": str(high)}
        else:
            param["doubleValueSpec"] = {"minValue": float(low), "maxValue": float(high)}
        scale = str(table.get("scale", "UNIT_LINEAR_SCALE")).upper()
        if scale not in SCALES:
            raise bad(f"{key}.scale", f"{scale!r} is not one of {', '.join(SCALES)}")
        param["scaleType"] = scale
    else:
        values = table.get("values")
        if not isinstance(values, list) or not values:
            raise bad(f"{key}.values", f"{kind} needs a non-empty list of values")
        if kind == "CATEGORICAL":
            param["categoricalValueSpec"] = {"values": [str(v) for v in values]}
        else:
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                raise bad(f"{key}.values", "DISCRETE values must be numbers")
            param["discreteValueSpec"] = {"values": [float(v) for v in values]}
    return param


def _toml_key(field: str, names: list[str]) -> str:
    """The TOML key of a study error's API field."""
    match = re.search(r"parameters\[(\d+)\]", field)
    if match:
        return f"parameters.{names[int(match[1])]}"
    for api, key in API_TO_TOML.items():
        if field.endswith(api) or f".{api}" in field:
            return key
    return field
