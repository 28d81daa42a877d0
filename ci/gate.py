"""``python -m ci gate``: the candidate's metrics against thresholds and the champion's.

The champion is the model version holding the ``default`` alias; its metrics are the
``metrics.json`` beside its export. Writes a JSON decision and a Markdown table; exits 3
(GateRejected) when the gate says no, which is a decision, not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ci import flags, gate_rules, outputs
from ci.cloud import Cloud, connect
from ci.errors import GateRejected, UsageError
from ci.inputs import input_file, output_file
from ci.settings import resolve
from ci.vertex import (
    DEFAULT,
    check_job_ref,
    find_model,
    get_job,
    job_dir,
    list_versions,
    read_metrics,
    version_metrics_uri,
    with_alias,
)


@dataclass
class Champion:
    """The version holding ``default``, with its metrics."""

    version_id: str
    model: str
    metrics_uri: str
    metrics: dict


@dataclass
class GateResult:
    """The decision with what it was made from."""

    decision: gate_rules.Decision
    candidate_uri: str
    candidate: dict
    champion: Champion | None

    def outputs(self) -> dict:
        """The ``--outputs`` values: the decision word and the candidate's numbers."""
        return {"gate_decision": self.decision.word, "metrics": scalars(self.candidate)}

    def summary(self) -> str:
        """The step summary: the candidate-against-champion table."""
        return markdown(self)

    def as_dict(self) -> dict:
        """The machine-readable decision (``--decision-out``)."""
        out = self.decision.as_dict()
        out["candidate"] = {"metrics_uri": self.candidate_uri, "metrics": scalars(self.candidate)}
        out["champion"] = self.champion and {
            "model": self.champion.model,
            "version_id": self.champion.version_id,
            "metrics_uri": self.champion.metrics_uri,
            "metrics": scalars(self.champion.metrics),
        }
        return out


def scalars(metrics: dict) -> dict:
    """The top-level numbers of a metrics dict (what tables and outputs show)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def find_champion(cloud: Cloud) -> Champion | None:
    """The version holding ``default`` and its metrics, or None before the first promotion."""
    model = find_model(cloud)
    if model is None:
        return None
    version = with_alias(list_versions(cloud, model["name"]), DEFAULT)
    if version is None:
        return None
    uri = version_metrics_uri(version)
    return Champion(version["versionId"], model["name"], uri, read_metrics(cloud, uri))


def gate(
    cloud: Cloud, candidate_uri: str, thresholds: dict, source: str = "gate config"
) -> GateResult:
    """Decide on the candidate at ``candidate_uri`` (a ``gs://`` URI or a local file).

    ``source`` names where the thresholds came from, for the error when none applies.
    """
    candidate = read_metrics(cloud, candidate_uri)
    champion = find_champion(cloud)
    metrics = champion and champion.metrics
    decision = gate_rules.decide(thresholds, candidate, metrics, f"gate config {source!r}")
    return GateResult(decision, candidate_uri, candidate, champion)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown(result: GateResult) -> str:
    """Candidate against champion, one row per metric, with each threshold's verdict."""
    champ = result.champion
    head = f"champion v{champ.version_id}" if champ else "champion (none yet)"
    lines = [
        f"### Evaluation gate: {result.decision.word}",
        "",
        f"| Metric | Candidate | {head} | Δ | Thresholds |",
        "|---|---|---|---|---|",
    ]
    by_metric: dict[str, list] = {}
    for check in result.decision.checks:
        by_metric.setdefault(check.metric, []).append(check)
    names = list(by_metric) + [m for m in scalars(result.candidate) if m not in by_metric]
    for name in names:
        value = gate_rules.lookup(result.candidate, name)
        base = gate_rules.lookup(champ.metrics, name) if champ else None
        delta = f"{value - base:+.4g}" if value is not None and base is not None else "—"
        marks = ", ".join(f"{'✅' if c.passed else '❌'} {c.rule}" for c in by_metric.get(name, []))
        lines.append(f"| {name} | {_fmt(value)} | {_fmt(base)} | {delta} | {marks or '—'} |")
    return "\n".join(lines) + "\n"


def candidate_location(cloud: Cloud, metrics: str | None, job: str | None) -> str:
    """Where the candidate's metrics are: given, or beside the job's export."""
    if bool(metrics) == bool(job):
        raise UsageError("give exactly one of --candidate-metrics and --job")
    return metrics or f"{job_dir(get_job(cloud, job))}/metrics.json"


def add_arguments(parser, config_flag: str = "--config") -> None:
    """The gate's flags, shared by ``gate`` and ``pipeline`` (which calls it --gate-config)."""
    parser.add_argument(
        config_flag,
        dest="gate_config",
        default="gate.toml",
        type=input_file,
        help="thresholds (default gate.toml)",
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="override a threshold, e.g. accuracy.lower_bound=0.95 (repeatable)",
    )
    parser.add_argument(
        "--decision-out", metavar="FILE", type=output_file, help="write the decision as JSON"
    )
    parser.add_argument(
        "--markdown-out", metavar="FILE", type=output_file, help="write the Markdown table"
    )


def main(argv: list[str]) -> int:
    parser = flags.parser("gate", __doc__)
    parser.add_argument("--candidate-metrics", metavar="URI", help="metrics.json (gs:// or path)")
    parser.add_argument("--job", help="or: the training job whose metrics to gate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    settings = resolve(args)
    thresholds = gate_rules.thresholds_from(Path(args.gate_config), args.threshold)
    if args.job:
        check_job_ref(args.job)  # malformed: bad usage, before anything connects
    if args.candidate_metrics and not args.candidate_metrics.startswith("gs://"):
        # A bad local file (the user's input) fails before connecting, as bad usage.
        candidate = read_metrics(None, args.candidate_metrics)
        for metric in thresholds:
            gate_rules.require(candidate, metric, args.candidate_metrics, UsageError)
    with connect(settings) as cloud:
        location = candidate_location(cloud, args.candidate_metrics, args.job)
        result = gate(cloud, location, thresholds, args.gate_config)
    report(result, args.decision_out, args.markdown_out)
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(args.summary, result.summary())
    return enforce(result)


def report(result: GateResult, decision_out: str | None, markdown_out: str | None) -> None:
    """Print the table; write the decision JSON and the table where asked."""
    table = markdown(result)
    print(table)
    if decision_out:
        Path(decision_out).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if markdown_out:
        Path(markdown_out).write_text(table)


def enforce(result: GateResult) -> int:
    """0 on "yes"; raise GateRejected (exit 3) on "no", naming the failed checks."""
    if not result.decision.passed:
        failed = [f"{c.metric} {c.rule}" for c in result.decision.checks if not c.passed]
        raise GateRejected(f"gate said no: {'; '.join(failed)}")
    return 0
