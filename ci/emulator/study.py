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
from collections.abc import Iterator

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
INT32_MAX = 2**31 - 1  # the trial counts are int32 fields
_COUNTS = {
    "maxTrialCount": "max_trial_count",
    "parallelTrialCount": "parallel_trial_count",
    "maxFailedTrialCount": "max_failed_trial_count",
}


class StudyError(ValueError):
    """A study Vertex refuses: ``field`` is the API path, ``message`` says why (the text is
    Vertex's "List of found errors" message; :meth:`api_error` the emulator's answer)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"List of found errors:\t1.Field: {field}; Message: {message}\t")
        self.field, self.message = field, message

    def api_error(self):
        """The 400 INVALID_ARGUMENT Vertex answers, with its google.rpc.BadRequest detail."""
        from ci.emulator.httpd import field_error  # study stays free of HTTP for `ci tune`

        return field_error(self.field, self.message)


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
    for key, field in _COUNTS.items():
        value = int(job.get(key) or 0)
        if value > INT32_MAX:
            raise StudyError(f"{_JOB}.{field}", f"{value} is more than an int32 holds.")
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
    metric_id = metrics[0].get("metricId") or ""
    if not metric_id or any(c.isspace() for c in metric_id):
        raise StudyError(
            f"{_JOB}.study_spec.metrics[0].metric_id",
            f"{metric_id!r} must be non-empty and without whitespace.",
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
    _check_params(params, f"{_JOB}.study_spec.parameters", algorithm, set())


def _check_params(params: list[dict], where: str, algorithm: str, above: set[str]) -> None:
    """Check sibling parameter specs; ``above`` holds the ids of the top level and of the
    parameters these are conditional on (an id is unique along every path)."""
    ids = {p.get("parameterId") for p in params}
    for i, param in enumerate(params):
        at = f"{where}[{i}]"
        pid = param.get("parameterId") or ""
        if not pid or any(c.isspace() for c in pid) or pid in above:
            raise StudyError(
                f"{at}.parameter_id", f"{pid!r} must be non-empty, unique, without whitespace."
            )
        _check_param(param, at, algorithm)
        if param.get("conditionalParameterSpecs"):
            _check_conditions(param, at, algorithm, above | ids)
    top = [p.get("parameterId") for p in params]
    if len(set(top)) != len(top):
        dup = next(pid for pid in top if top.count(pid) > 1)
        raise StudyError(f"{where}", f"parameter_id {dup!r} must be unique.")


# Which parent value condition a conditional spec needs, by its parent's type.
_CONDITIONS = {
    "CATEGORICAL": "parentCategoricalValues",
    "DISCRETE": "parentDiscreteValues",
    "INTEGER": "parentIntValues",
}


def _check_conditions(parent: dict, where: str, algorithm: str, above: set[str]) -> None:
    kind = param_type(parent)
    field = f"{where}.conditional_parameter_specs"
    if kind not in _CONDITIONS:
        raise StudyError(
            field, "conditional parameters need a CATEGORICAL, DISCRETE or INTEGER parent."
        )
    wanted = _CONDITIONS[kind]
    by_child: dict[str, list[set]] = {}
    children = []
    for i, cond in enumerate(parent["conditionalParameterSpecs"]):
        at = f"{field}[{i}]"
        set_ = [k for k in _CONDITIONS.values() if k in cond]
        if set_ != [wanted]:
            raise StudyError(
                at,
                f"a {kind} parent needs exactly the condition {_snake(wanted)}, "
                f"got {', '.join(map(_snake, set_)) or 'none'}.",
            )
        values = (cond[wanted] or {}).get("values") or []
        if not values:
            raise StudyError(f"{at}.{_snake(wanted)}.values", "must not be empty.")
        feasible = [v for v in values if _feasible(parent, v)]
        if len(feasible) != len(values):
            bad = next(v for v in values if not _feasible(parent, v))
            raise StudyError(
                f"{at}.{_snake(wanted)}.values",
                f"{bad!r} is not a value of the parent parameter {parent['parameterId']!r}.",
            )
        child = cond.get("parameterSpec") or {}
        matched = {_key(parent, v) for v in values}
        earlier = by_child.setdefault(child.get("parameterId"), [])
        if any(matched & other for other in earlier):
            raise StudyError(
                f"{at}.parameter_spec.parameter_id",
                f"{child.get('parameterId')!r} appears twice under overlapping parent values.",
            )
        earlier.append(matched)
        children.append((at, child))
    for at, child in children:
        pid = child.get("parameterId") or ""
        if not pid or any(c.isspace() for c in pid) or pid in above:
            raise StudyError(
                f"{at}.parameter_spec.parameter_id",
                f"{pid!r} must be non-empty, unique, without whitespace.",
            )
        _check_param(child, f"{at}.parameter_spec", algorithm)
        if child.get("conditionalParameterSpecs"):
            _check_conditions(child, f"{at}.parameter_spec", algorithm, above | {pid})


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _key(param: dict, value):
    """A parameter value in the form conditions compare: ints, floats or strings."""
    kind = param_type(param)
    try:
        if kind == "INTEGER":
            return int(value)
        if kind == "DISCRETE":
            return float(value)
    except (TypeError, ValueError):
        return None
    return value


def _feasible(param: dict, value) -> bool:
    key = _key(param, value)
    if key is None:
        return False
    kind = param_type(param)
    if kind == "INTEGER":
        low, high = _bounds(param)
        return low <= key <= high
    spec = param["categoricalValueSpec" if kind == "CATEGORICAL" else "discreteValueSpec"]
    return key in {_key(param, v) for v in spec.get("values") or []}


def _check_param(param: dict, where: str, algorithm: str) -> None:
    kind = param_type(param)
    scale = param.get("scaleType") or "SCALE_TYPE_UNSPECIFIED"
    if kind in ("DOUBLE", "INTEGER"):
        key = "doubleValueSpec" if kind == "DOUBLE" else "integerValueSpec"
        field = f"{where}.{'double' if kind == 'DOUBLE' else 'integer'}_value_spec"
        low, high = _bounds(param)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise StudyError(field, "min_value and max_value must be finite numbers.")
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
        values = param["categoricalValueSpec"].get("values") or []
        if not values:
            raise StudyError(f"{where}.categorical_value_spec.values", "must not be empty.")
        if len(set(values)) != len(values):
            raise StudyError(f"{where}.categorical_value_spec.values", "must be distinct.")
        if scale != "SCALE_TYPE_UNSPECIFIED":
            raise StudyError(
                f"{where}.scale_type", f"must be unset for a CATEGORICAL parameter, got {scale}."
            )
    else:
        values = param["discreteValueSpec"].get("values") or []
        if not values:
            raise StudyError(f"{where}.discrete_value_spec.values", "must not be empty.")
        if not all(math.isfinite(v) for v in values):
            raise StudyError(f"{where}.discrete_value_spec.values", "must be finite numbers.")
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise StudyError(
                f"{where}.discrete_value_spec.values", "must be in strictly increasing order."
            )
        if scale in LOG_SCALES and values[0] <= 0:
            raise StudyError(f"{where}.scale_type", f"{scale} needs every value > 0.")


def _bounds(param: dict) -> tuple[float, float]:
    if "doubleValueSpec" in param:
        spec = param["doubleValueSpec"]
        return float(spec.get("minValue", 0)), float(spec.get("maxValue", 0))
    spec = param["integerValueSpec"]
    return int(spec.get("minValue", 0)), int(spec.get("maxValue", 0))


def grid(spec: dict) -> Iterator[dict]:
    """Every combination of the parameters' values, the first parameter varying slowest;
    a conditional parameter only where its parent's value makes it active.

    Lazy: an INTEGER range is a ``range``, and points are made one at a time, so a grid of
    2**31 points costs no more memory than one of 4 (the job takes ``maxTrialCount``).
    """
    return _points(spec["parameters"], 0)


def _points(params: list[dict], i: int) -> Iterator[dict]:
    if i == len(params):
        yield {}
        return
    param = params[i]
    for value in _values(param):
        for below in _points(_active(param, value), 0):
            for rest in _points(params, i + 1):
                yield {param["parameterId"]: value, **below, **rest}


def _values(param: dict):
    kind = param_type(param)
    if kind == "INTEGER":
        low, high = _bounds(param)
        return range(int(low), int(high) + 1)
    if kind == "CATEGORICAL":
        return param["categoricalValueSpec"]["values"]
    return param["discreteValueSpec"]["values"]


def _active(param: dict, value) -> list[dict]:
    """The conditional parameter specs that ``value`` of ``param`` makes active."""
    conds = param.get("conditionalParameterSpecs") or []
    if not conds:
        return []
    key = _key(param, value)
    return [
        cond["parameterSpec"]
        for cond in conds
        if key in {_key(param, v) for v in _condition_values(cond)}
    ]


def _condition_values(cond: dict) -> list:
    for name in _CONDITIONS.values():
        if name in cond:
            return (cond[name] or {}).get("values") or []
    return []


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
            self._grid = grid(spec)
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
        self._conditional = any(_has_conditions(p) for p in spec["parameters"])

    def suggest(self, number: int) -> dict | None:
        """Parameters for trial ``number`` (any unique key), or None when the grid is done."""
        if self.algorithm == "GRID_SEARCH":
            return next(self._grid, None)
        if not self._conditional:
            trial = self._optuna.ask(self._dists)
            self._pending[number] = trial
            return {
                p["parameterId"]: _value(p, trial.params[p["parameterId"]])
                for p in self.spec["parameters"]
            }
        trial = self._optuna.ask()
        self._pending[number] = trial
        params: dict = {}
        for param in self.spec["parameters"]:
            self._ask(trial, param, param["parameterId"], params)
        return params

    def _ask(self, trial, param: dict, name: str, params: dict) -> None:
        """Suggest ``param`` (Optuna's name ``name``: unique per place in the tree) and,
        depth first, the conditional parameters its value makes active."""
        raw = _suggest(trial, name, _distribution(param))
        params[param["parameterId"]] = value = _value(param, raw)
        for k, cond in enumerate(param.get("conditionalParameterSpecs") or []):
            if _key(param, value) in {_key(param, v) for v in _condition_values(cond)}:
                child = cond["parameterSpec"]
                self._ask(trial, child, f"{name}/{k}/{child['parameterId']}", params)

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


def _suggest(trial, name: str, dist):
    """Optuna's suggestion for ``dist`` (one of :func:`_distribution`'s) under ``name``."""
    from optuna import distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


def _has_conditions(param: dict) -> bool:
    return bool(param.get("conditionalParameterSpecs"))


def _value(param: dict, value):
    """A sampled value as the trial gets it."""
    if param.get("scaleType") == "UNIT_REVERSE_LOG_SCALE" and param_type(param) in (
        "DOUBLE",
        "INTEGER",
    ):
        # Dense near the maximum: mirror a log-uniform draw inside the range.
        low, high = _bounds(param)
        value = low + high - value
        value = round(value) if param_type(param) == "INTEGER" else value
    return value


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
