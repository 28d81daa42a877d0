"""The evaluation gate's decision, pure: thresholds in, checks and a yes/no out.

TFX semantics. A *value* threshold (``lower_bound``, ``upper_bound``) must hold for the
candidate alone. A *change* threshold compares the candidate with the champion:
``diff = candidate - champion``; with ``direction = "higher"`` (higher is better) the check
passes when ``diff >= absolute_change`` and ``diff / champion >= relative_change``; with
``direction = "lower"`` when ``diff <= absolute_change`` and ``diff / champion <=
relative_change``. So ``absolute_change = -0.01`` on accuracy means "may drop by at most
0.01". With no champion, value thresholds alone decide. Metric names are dotted paths into
``metrics.json`` (``precision.setosa``).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ci.errors import CiError, UsageError
from ci.inputs import did_you_mean, finite, read_text

KEYS = {"direction", "lower_bound", "upper_bound", "absolute_change", "relative_change"}
NUMERIC = KEYS - {"direction"}


@dataclass
class Check:
    """One threshold applied to one metric."""

    metric: str
    kind: str  # "value" or "change"
    rule: str
    candidate: float
    champion: float | None
    passed: bool


@dataclass
class Decision:
    """Every check, and whether all of them passed."""

    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def word(self) -> str:
        return "yes" if self.passed else "no"

    def as_dict(self) -> dict:
        """Decision and checks as plain JSON values."""
        return {"decision": self.word, "checks": [asdict(c) for c in self.checks]}


def load_config(path: Path) -> dict[str, dict]:
    """``[metrics.NAME]`` tables from a gate config file, validated."""
    try:
        data = tomllib.loads(read_text(path, "gate config"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise UsageError(f"gate config {str(path)!r} is not valid TOML: {exc}") from None
    unknown = set(data) - {"metrics"}
    if unknown:
        first = sorted(unknown)[0]
        raise UsageError(
            f"gate config {str(path)!r}: unknown table {first!r}{did_you_mean(first, ['metrics'])}"
        )
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise UsageError(
            f"gate config {str(path)!r}: 'metrics' must be tables ([metrics.NAME]), not {metrics!r}"
        )
    return validate(metrics, str(path))


def thresholds_from(path: Path, overrides: list[str]) -> dict[str, dict]:
    """The file's thresholds with ``--threshold`` overrides; none at all is an error.

    TFX never blesses a model without thresholds, and neither does this gate.
    """
    merged = apply_overrides(load_config(path), overrides)
    if not merged:
        raise UsageError(
            f"gate config {str(path)!r} sets no thresholds; add a [metrics.NAME] table "
            "(the gate never says yes without one)"
        )
    return merged


def judges_alone(thresholds: dict[str, dict]) -> bool:
    """Whether some threshold applies without a champion (a value threshold)."""
    return any({"lower_bound", "upper_bound"} & set(spec) for spec in thresholds.values())


def validate(thresholds: dict, source: str) -> dict[str, dict]:
    """Check keys, types and that change thresholds say which direction is better."""
    for metric, spec in thresholds.items():
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: metrics.{metric} must be a table, not {spec!r}")
        for key, value in spec.items():
            if isinstance(value, dict):
                raise UsageError(
                    f"{source}: metrics.{metric}.{key} is a nested table; a dotted metric "
                    f'name must be quoted: [metrics."{metric}.{key}"]'
                )
            if key not in KEYS:
                raise UsageError(
                    f"{source}: unknown key {key!r} for metric {metric!r}"
                    f"{did_you_mean(key, sorted(KEYS))}"
                )
            if key in NUMERIC and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise UsageError(f"{source}: {metric}.{key} must be a number, not {value!r}")
            if key in NUMERIC:
                finite(float(value), f"{source}: {metric}.{key}")
        if spec.get("direction", "higher") not in ("higher", "lower"):
            raise UsageError(
                f"{source}: {metric}.direction must be 'higher' or 'lower', "
                f"not {spec['direction']!r}"
            )
        if ({"absolute_change", "relative_change"} & set(spec)) and "direction" not in spec:
            raise UsageError(f"{source}: {metric} has a change threshold but no direction")
        low, high = spec.get("lower_bound"), spec.get("upper_bound")
        if low is not None and high is not None and low > high:
            raise UsageError(
                f"{source}: {metric}.lower_bound {low} is above its upper_bound {high}; "
                "no value could pass"
            )
    return thresholds


def apply_overrides(thresholds: dict, overrides: list[str]) -> dict[str, dict]:
    """``METRIC.KEY=VALUE`` flags on top of the file (``accuracy.lower_bound=0.999``)."""
    merged = {m: dict(spec) for m, spec in thresholds.items()}
    for item in overrides:
        target, sep, raw = item.partition("=")
        metric, _, key = target.rpartition(".")
        if not sep or not metric or key not in KEYS:
            hint = did_you_mean(key, sorted(KEYS)) if sep and metric else ""
            raise UsageError(
                f"bad --threshold {item!r}{hint}; expected METRIC.KEY=VALUE, KEY one of "
                f"{', '.join(sorted(KEYS))}"
            )
        if key == "direction":
            value = raw
        else:
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"bad --threshold {item!r}: {raw!r} is not a number") from None
            finite(value, f"bad --threshold {item!r}")
        merged.setdefault(metric, {})[key] = value
    return validate(merged, "--threshold")


def lookup(metrics: dict, name: str) -> float | None:
    """The finite number at dotted path ``name`` in ``metrics``, or None when there is none
    (absent, not a number, NaN or infinite: no comparison with it means anything)."""
    value = metrics
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def require(metrics: dict, name: str, whose: str, error: type[CiError] = CiError) -> float:
    """:func:`lookup`, or ``error`` naming the metric and what is there instead."""
    value = lookup(metrics, name)
    if value is None:
        found = metrics
        for part in name.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        what = "nothing" if found is None else json.dumps(found)[:40]
        hint = did_you_mean(name, _paths(metrics)) if found is None else ""
        raise error(f"{whose} metrics have no finite number {name!r} (found {what}){hint}")
    return value


def _paths(metrics: dict, prefix: str = "") -> list[str]:
    """The dotted names of the numbers in ``metrics`` (what a threshold can name)."""
    names = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            names += _paths(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            names.append(f"{prefix}{key}")
    return names


def decide(
    thresholds: dict[str, dict], candidate: dict, champion: dict | None, source: str = "gate"
) -> Decision:
    """Evaluate every threshold; the gate says yes only when every check passes.

    No check at all (only change thresholds and no champion yet) is a UsageError naming
    ``source``: a gate that checked nothing must not bless a candidate.
    """
    checks: list[Check] = []
    for metric, spec in thresholds.items():
        value = require(candidate, metric, "candidate")
        base = lookup(champion, metric) if champion is not None else None
        if "lower_bound" in spec:
            ok = value >= spec["lower_bound"]
            checks.append(Check(metric, "value", f">= {spec['lower_bound']:g}", value, base, ok))
        if "upper_bound" in spec:
            ok = value <= spec["upper_bound"]
            checks.append(Check(metric, "value", f"<= {spec['upper_bound']:g}", value, base, ok))
        if champion is None:
            continue
        for key in ("absolute_change", "relative_change"):
            if key not in spec:
                continue
            if base is None:
                require(champion, metric, "champion")
            checks.append(_change(metric, spec["direction"], key, spec[key], value, base))
    if not checks:
        raise UsageError(
            f"{source}: every threshold was skipped (change thresholds need a champion); "
            "add a value threshold such as lower_bound, so the first version is judged too"
        )
    return Decision(all(c.passed for c in checks), checks)


def _change(metric: str, direction: str, key: str, limit: float, value: float, base: float):
    diff = value - base
    if key == "relative_change":
        # A zero champion has no relative change; only an unchanged value passes then.
        diff = diff / abs(base) if base else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    higher = direction == "higher"
    ok = diff >= limit if higher else diff <= limit
    what = "change" if key == "absolute_change" else "relative change"
    return Check(metric, "change", f"{what} {'>=' if higher else '<='} {limit:g}", value, base, ok)
