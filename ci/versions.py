"""``python -m ci versions``: the model's versions, aliases, traffic, labels, key metrics.

The key metrics are the ones the gate config names (dotted paths such as ``recall.genuine``
included), so any trainer's metrics show; with no gate config, every top-level number.
"""

from __future__ import annotations

import json
from pathlib import Path

from ci import flags, gate, gate_rules, outputs, vertex
from ci.cloud import Cloud, connect
from ci.errors import CiError
from ci.inputs import input_file, optional_file
from ci.settings import resolve

DEFAULT_GATE_CONFIG = "gate.toml"


def metric_names(config: str | None) -> list[str] | None:
    """The metrics a gate config names; None (every top-level number) when there is none.

    ``config`` None means the default ``gate.toml`` if it exists; a named file must exist.
    """
    if config is None:
        if not optional_file(DEFAULT_GATE_CONFIG, "gate config"):
            return None
        config = DEFAULT_GATE_CONFIG
    return list(gate_rules.load_config(Path(config))) or None


def key_metrics(metrics: dict, names: list[str] | None) -> dict:
    """``names`` looked up in ``metrics`` (absent ones left out), or every top-level number."""
    if names is None:
        return gate.scalars(metrics)
    found = {name: gate_rules.lookup(metrics, name) for name in names}
    return {name: value for name, value in found.items() if value is not None}


def versions(cloud: Cloud, names: list[str] | None = None) -> list[dict]:
    """One row per version, oldest first; empty before the first upload.

    ``names``: the metrics to show (:func:`metric_names`); None shows every top-level number.
    """
    model = vertex.find_model(cloud)
    if model is None:
        return []
    endpoint = vertex.find_endpoint(cloud)
    traffic = vertex.traffic_by_version(endpoint, model["name"]) if endpoint else {}
    rows = []
    for v in vertex.list_versions(cloud, model["name"]):
        try:
            metrics = vertex.read_metrics(cloud, vertex.version_metrics_uri(v))
        except CiError:
            metrics = {}  # a listing should not fail because one version's metrics are gone
        rows.append(
            {
                "version_id": v["versionId"],
                "aliases": v.get("versionAliases", []),
                "traffic_percent": traffic.get(v["versionId"], 0),
                "labels": v.get("labels", {}),
                "metrics": key_metrics(metrics, names),
                "created": v.get("versionCreateTime", ""),
                "artifact_uri": v.get("artifactUri", ""),
                "model": model["name"],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """A Markdown table (readable in a terminal and in a step summary)."""
    names = list(dict.fromkeys(name for r in rows for name in r["metrics"]))
    lines = [
        f"| Version | Aliases | Traffic | {''.join(f'{n} | ' for n in names)}Labels |",
        "|---" * (4 + len(names)) + "|",
    ]
    for r in rows:
        m = r["metrics"]
        labels = " ".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        values = "".join(f"{m[n]:.4g} | " if n in m else "— | " for n in names)
        aliases = ", ".join(r["aliases"]) or "—"
        lines.append(
            f"| {r['version_id']} | {aliases} | {r['traffic_percent']}% | {values}{labels} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = flags.parser("versions", __doc__)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--gate-config",
        metavar="PATH",
        type=input_file,
        help="show the metrics it names (default gate.toml if present; else every number)",
    )
    args = parser.parse_args(argv)
    settings = resolve(args)
    names = metric_names(args.gate_config)
    with connect(settings) as cloud:
        rows = versions(cloud, names)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(table(rows))
    else:
        print(f"no model named {settings.model_name!r} yet")
    outputs.write_summary(args.summary, f"### Model versions\n\n{table(rows)}")
    return 0
