"""A HyperparameterTuningJob's study: what Vertex refuses in it, and which trial comes next.

Pure logic (no HTTP, no processes), shared by the emulator and ``ci tune`` so a bad study is
refused before anything is submitted. ``GRID_SEARCH`` enumerates the grid in order,
``RANDOM_SEARCH`` samples, and ``ALGORITHM_UNSPECIFIED`` (Bayesian optimisation with Vizier
on Vertex) uses Optuna's TPE sampler. Samplers are seeded from the spec, so the same study
suggests the same trials again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math

# parameterSpec's value spec (a oneof in the API) names the parameter's type.
VALUE_SPECS = {
    "doubleValueSpec": "DOUBLE",
    "integerValueSpec": "INTEGER",
    "categoricalValueSpec": "CATEGORICAL",
    "discreteValueSpec": "DISCRETE",
}
ALGORITHMS = ("ALGORITHM_UNSPECIFIED", "GRID_SEARCH", "RANDOM_SEARCH")
GOALS = ("MAXIMIZE", "MINIMIZE")
LOG_SCALES = ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
_JOB = "hyperparameter_tuning_job"


class StudyError(ValueError):
    """A study Vertex refuses: ``field`` is the API path, ``message`` says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"List of found errors:\t1.Field: {field}; Message: {message}\t")
        self.field, self.message = field, message


def param_type(param: dict) -> str:
    """``DOUBLE``, ``INTEGER``, ``CATEGORICAL`` or ``DISCRETE``, from the value spec set."""
    kinds = [VALUE_SPECS[k] for k in VALUE_SPECS if k in param]
    if len(kinds) != 1:
        raise StudyError(
            f"{_JOB}.study_spec.parameters[{param.get('parameterId', '?')}]",
            "Exactly one of double_value_spec, integer_value_spec, categorical_value_spec, "
            f"discrete_value_spec must be set; found {len(kinds)}.",
        )
    return kinds[0]


def check(job: dict) -> None:
    """Raise :class:`StudyError` for what Vertex refuses in a HyperparameterTuningJob body."""
    max_trials = int(job.get("maxTrialCount") or 0)
    parallel = int(job.get("parallelTrialCount") or 0)
    if max_trials < 1:
        raise StudyError(f"{_JOB}.max_trial_count", "max_trial_count must be positive.")
    if parallel < 1:
        raise StudyError(f"{_JOB}.parallel_trial_count", "parallel_trial_count must be positive.")
    if parallel > max_trials:
        raise StudyError(
            f"{_JOB}.parallel_trial_count",
            f"parallel_trial_count ({parallel}) must not be greater than max_trial_count "
            f"({max_trials}).",
        )
    if int(job.get("maxFailedTrialCount") or 0) < 0:
        raise StudyError(f"{_JOB}.max_failed_trial_count", "must not be negative.")
    spec = job.get("studySpec") or {}
    metrics = spec.get("metrics") or []
    if len(metrics) != 1:
        raise StudyError(
            f"{_JOB}.study_spec.metrics",
            f"exactly one metric is supported by the emulator, got {len(metrics)}.",
        )
    if metrics[0].get("goal") not in GOALS:
        raise StudyError(
            f"{_JOB}.study_spec.metrics[0].goal", f"goal must be one of {', '.join(GOALS)}."
        )
    algorithm = spec.get("algorithm") or "ALGORITHM_UNSPECIFIED"
    if algorithm not in ALGORITHMS:
        raise StudyError(f"{_JOB}.study_spec.algorithm", f"unknown algorithm {algorithm!r}.")
    params = spec.get("parameters") or []
    if not params:
        raise StudyError(f"{_JOB}.study_spec.parameters", "at least one parameter is required.")
    seen = set()
    for i, param in enumerate(params):
        where = f"{_JOB}.study_spec.parameters[{i}]"
        pid = param.get("parameterId") or ""
        if not pid or any(c.isspace() for c in pid) or pid in seen:
            raise StudyError(
                f"{where}.parameter_id", f"{pid!r} must be non-empty, unique, without whitespace."
            )
        seen.add(pid)
        _check_param(param, where, algorithm)


def _check_param(param: dict, where: str, algorithm: str) -> None:
    kind = param_type(param)
    scale = param.get("scaleType") or "SCALE_TYPE_UNSPECIFIED"
    if kind in ("DOUBLE", "INTEGER"):
        key = "doubleValueSpec" if kind == "DOUBLE" else "integerValueSpec"
        field = f"{where}.{'double' if kind == 'DOUBLE' else 'integer'}_value_spec"
        low, high = _bounds(param)
        if low > high:
            raise StudyError(
                field,
                f"min_value ({param[key].get('minValue', 0)}) must not be greater than "
                f"max_value ({param[key].get('maxValue', 0)}).",
            )
        if scale in LOG_SCALES and low <= 0:
            raise StudyError(f"{where}.scale_type", f"{scale} needs min_value > 0.")
        if kind == "DOUBLE" and algorithm == "GRID_SEARCH":
            raise StudyError(
                field, "GRID_SEARCH needs INTEGER, CATEGORICAL or DISCRETE parameters, not DOUBLE."
            )
    elif kind == "CATEGORICAL":
        if not param["categoricalValueSpec"].get("values"):
            raise StudyError(f"{where}.categorical_value_spec.values", "must not be empty.")
    else:
        values = param["discreteValueSpec"].get("values") or []
        if not values:
            raise StudyError(f"{where}.discrete_value_spec.values", "must not be empty.")
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise StudyError(
                f"{where}.discrete_value_spec.values", "must be in strictly increasing order."
            )


def _bounds(param: dict) -> tuple[float, float]:
    if "doubleValueSpec" in param:
        spec = param["doubleValueSpec"]
        return float(spec.get("minValue", 0)), float(spec.get("maxValue", 0))
    spec = param["integerValueSpec"]
    return int(spec.get("minValue", 0)), int(spec.get("maxValue", 0))


def grid(spec: dict) -> list[dict]:
    """Every combination of the parameters' values, the first parameter varying slowest."""
    axes = []
    for param in spec["parameters"]:
        kind = param_type(param)
        if kind == "INTEGER":
            low, high = _bounds(param)
            values = list(range(int(low), int(high) + 1))
        elif kind == "CATEGORICAL":
            values = list(param["categoricalValueSpec"]["values"])
        else:
            values = list(param["discreteValueSpec"]["values"])
        axes.append([(param["parameterId"], v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)]


def seed_of(spec: dict) -> int:
    """A seed from the spec itself: the same study suggests the same trials."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Study:
    """Suggests parameters trial after trial and learns from their measurements."""

    def __init__(self, spec: dict, seed: int | None = None):
        self.spec = spec
        self.algorithm = spec.get("algorithm") or "ALGORITHM_UNSPECIFIED"
        self.goal = spec["metrics"][0]["goal"]
        self.seed = seed_of(spec) if seed is None else seed
        self._pending: dict[int, object] = {}
        if self.algorithm == "GRID_SEARCH":
            self._grid = iter(grid(spec))
            return
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = (
            optuna.samplers.RandomSampler(seed=self.seed)
            if self.algorithm == "RANDOM_SEARCH"
            # constant_liar: running trials count as bad guesses, so parallel trials spread.
            else optuna.samplers.TPESampler(seed=self.seed, constant_liar=True)
        )
        direction = "maximize" if self.goal == "MAXIMIZE" else "minimize"
        self._optuna = optuna.create_study(direction=direction, sampler=sampler)
        self._dists = {p["parameterId"]: _distribution(p) for p in spec["parameters"]}

    def suggest(self, number: int) -> dict | None:
        """Parameters for trial ``number`` (any unique key), or None when the grid is done."""
        if self.algorithm == "GRID_SEARCH":
            return next(self._grid, None)
        trial = self._optuna.ask(self._dists)
        self._pending[number] = trial
        params = {}
        for param in self.spec["parameters"]:
            value = trial.params[param["parameterId"]]
            if param.get("scaleType") == "UNIT_REVERSE_LOG_SCALE":
                # Dense near the maximum: mirror a log-uniform draw inside the range.
                low, high = _bounds(param)
                value = low + high - value
                value = round(value) if param_type(param) == "INTEGER" else value
            params[param["parameterId"]] = value
        return params

    def tell(self, number: int, value: float | None) -> None:
        """The trial's final value, or None when it failed (infeasible)."""
        trial = self._pending.pop(number, None)
        if trial is None:
            return
        import optuna

        if value is None or not math.isfinite(value):
            self._optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._optuna.tell(trial, value)


def _distribution(param: dict):
    from optuna import distributions as d

    kind = param_type(param)
    log = (param.get("scaleType") or "") in LOG_SCALES
    if kind == "DOUBLE":
        low, high = _bounds(param)
        return d.FloatDistribution(low, high, log=log)
    if kind == "INTEGER":
        low, high = _bounds(param)
        return d.IntDistribution(int(low), int(high), log=log)
    if kind == "CATEGORICAL":
        return d.CategoricalDistribution(param["categoricalValueSpec"]["values"])
    return d.CategoricalDistribution(param["discreteValueSpec"]["values"])


def arg_value(value) -> str:
    """A parameter value as Vertex writes it in ``--name=value``: integers without ``.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)
