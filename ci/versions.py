"""``python -m ci versions``: the model's versions, aliases, traffic, labels, key metrics."""

from __future__ import annotations

import json

from ci import flags, outputs, vertex
from ci.cloud import Cloud, connect
from ci.errors import CiError
from ci.settings import resolve

KEY_METRICS = ("accuracy", "loss")


def versions(cloud: Cloud) -> list[dict]:
    """One row per version, oldest first; empty before the first upload."""
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
                "metrics": {k: metrics[k] for k in KEY_METRICS if k in metrics},
                "created": v.get("versionCreateTime", ""),
                "artifact_uri": v.get("artifactUri", ""),
                "model": model["name"],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """A Markdown table (readable in a terminal and in a step summary)."""
    lines = [
        "| Version | Aliases | Traffic | Accuracy | Loss | Labels |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        labels = " ".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        acc = f"{m['accuracy']:.4f}" if "accuracy" in m else "—"
        loss = f"{m['loss']:.4f}" if "loss" in m else "—"
        aliases = ", ".join(r["aliases"]) or "—"
        lines.append(
            f"| {r['version_id']} | {aliases} | {r['traffic_percent']}% | {acc} | {loss} "
            f"| {labels} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = flags.parser("versions", __doc__)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    args = parser.parse_args(argv)
    settings = resolve(args)
    with connect(settings) as cloud:
        rows = versions(cloud)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(table(rows))
    else:
        print(f"no model named {settings.model_name!r} yet")
    outputs.write_summary(args.summary, f"### Model versions\n\n{table(rows)}")
    return 0
