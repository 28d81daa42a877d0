"""One trial of a HyperparameterTuningJob: the CustomJob spec it runs, and how it ended.

Pure functions (the metric file is the only thing read), tested through the tuning jobs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ci.emulator.study import arg_value

METRIC_FILE = "output.metrics"


def job_spec(trial_job_spec: dict, trial_id: str, params: dict, metrics_dir: Path) -> dict:
    """The trial's CustomJobSpec: Vertex's per-trial output directory, args and environment.

    ``baseOutputDirectory`` becomes ``<base>/<trial id>``; ``--<parameter>=<value>`` is
    appended to every pool's args; ``CLOUD_ML_TRIAL_ID`` and a ``CLOUD_ML_HP_METRIC_FILE``
    of the trial's own are set (the chief's is ``metrics_dir / METRIC_FILE``).
    """
    spec = copy.deepcopy(trial_job_spec)
    base = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if base:
        spec["baseOutputDirectory"] = {"outputUriPrefix": f"{base.rstrip('/')}/{trial_id}"}
    args = [f"--{pid}={arg_value(v)}" for pid, v in params.items()]
    for pool, pool_spec in enumerate(spec["workerPoolSpecs"]):
        if not pool_spec:
            continue
        package = pool_spec["pythonPackageSpec"]
        package["args"] = [*package.get("args", []), *args]
        # Only the chief's report counts; other pools write beside it, never over it.
        metric_file = metrics_dir / (METRIC_FILE if pool == 0 else f"pool{pool}.metrics")
        package["env"] = [
            *package.get("env", []),
            {"name": "CLOUD_ML_TRIAL_ID", "value": trial_id},
            {"name": "CLOUD_ML_HP_METRIC_FILE", "value": str(metric_file)},
        ]
    return spec


def reports(path: Path, metric_id: str) -> list[tuple[int, float]]:
    """``(step, value)`` of each report of ``metric_id`` in a cloudml-hypertune file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
            found.append((int(entry.get("global_step") or 0), float(entry[metric_id])))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def outcome(
    custom_job: dict, found: list[tuple[int, float]], spec: dict
) -> tuple[dict, float | None]:
    """The trial's fields once its job ended, and its objective value (None: infeasible)."""
    metric = spec["metrics"][0]
    if custom_job["state"] != "JOB_STATE_SUCCEEDED":
        reason = (custom_job.get("error") or {}).get("message") or custom_job["state"]
        return {"state": "INFEASIBLE", "infeasibleReason": reason}, None
    if not found:
        reason = (
            f"The trial reported no value for the metric {metric['metricId']!r} "
            "(cloudml-hypertune, CLOUD_ML_HP_METRIC_FILE)."
        )
        return {"state": "INFEASIBLE", "infeasibleReason": reason}, None
    if spec.get("measurementSelectionType") == "BEST_MEASUREMENT":
        pick = max if metric["goal"] == "MAXIMIZE" else min
        final = pick(found, key=lambda r: r[1])
    else:
        final = found[-1]  # LAST_MEASUREMENT, the default
    fields = {
        "state": "SUCCEEDED",
        "finalMeasurement": _measurement(metric["metricId"], *final),
        "measurements": [_measurement(metric["metricId"], *r) for r in found],
    }
    return fields, final[1]


def _measurement(metric_id: str, step: int, value: float) -> dict:
    return {"stepCount": str(step), "metrics": [{"metricId": metric_id, "value": value}]}
