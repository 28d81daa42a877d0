"""The report's words: Markdown (report.md, step summary, PR comment) and its HTML page.

Pure: everything comes in as values. The gate table is the gate's own (``gate.markdown``);
the training curve is a Mermaid ``xychart-beta`` chart, which GitHub renders in step
summaries and comments without hosting an image. ``index.html`` is report.md turned into
HTML (only the Markdown written here is understood) with the PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html as html_lib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ci import gate
from ci.events import Curves

MAX_POINTS = 40  # a Mermaid x-axis with more categories is unreadable
CHART_HEADING = "#### Training curve"
PLOTS_HEADING = "### Plots"


@dataclass
class Text:
    full: str
    gate_table: str
    chart: str


def _code(value) -> str:
    return f"`{value}`" if value not in (None, "") else "—"


def _sample(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    points = [(s, v) for s, v in points if math.isfinite(v)]
    if len(points) <= MAX_POINTS:
        return points
    stride = (len(points) - 1) / (MAX_POINTS - 1)
    return [points[round(i * stride)] for i in range(MAX_POINTS)]


def mermaid(curves: Curves | None, runs_at_most: int = 2) -> str:
    """The candidate's main curve (a ``loss`` tag if any) per run, as Mermaid charts."""
    tags = sorted({t for by_tag in (curves or {}).values() for t in by_tag})
    if not tags:
        return ""
    tag = min(tags, key=lambda t: (0 if "loss" in t.lower() else 1, t))
    charts = []
    lines = [(run, _sample(curves[run].get(tag, []))) for run in sorted(curves)]
    for run, points in [(r, p) for r, p in lines if len(p) >= 2][:runs_at_most]:
        steps = ", ".join(str(s) for s, _ in points)
        values = ", ".join(f"{v:.4g}" for _, v in points)
        label = tag.replace('"', "'")  # a double quote would end Mermaid's string
        name = label if run == "." else f"{label} ({run})"
        charts.append(
            "```mermaid\nxychart-beta\n"
            f'    title "{name}"\n    x-axis "step" [{steps}]\n'
            f'    y-axis "{label}"\n    line [{values}]\n```'
        )
    return f"{CHART_HEADING}\n\n" + "\n\n".join(charts) + "\n" if charts else ""


def markdown(cand, champ, result: gate.GateResult, drawn, notes: list[str]) -> Text:
    """report.md from the two sides (``ci.report.Side``), the gate result and the plots."""
    decision = result.decision
    passed = sum(c.passed for c in decision.checks)
    against = f"**{champ.label}** (champion)" if champ else "no champion yet"
    head = [
        f"## Model report: {cand.label}",
        "",
        f"**{cand.label}** against {against}: gate says **{decision.word}** "
        f"({passed} of {len(decision.checks)} checks passed).",
        "",
    ]
    table = gate.markdown(result)
    chart = mermaid(cand.curves)
    cols = ["Candidate"] + ([f"Champion ({champ.label})"] if champ else [])
    both = [s for s in (cand, champ) if s]

    def rows(items):
        lines = [f"| | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in items]
        return lines

    keys = sorted({k for s in both for k in s.labels})
    lineage = [("version", [_code(s.version_id) for s in both])]
    lineage += [("job", [_code(s.job) for s in both])]
    lineage += [(k, [_code(s.labels.get(k)) for s in both]) for k in keys]
    artifacts = [
        ("metrics", [_code(s.metrics_uri) for s in both]),
        ("export", [_code(s.artifact_uri) for s in both]),
        ("TensorBoard logs", [_logs(s) for s in both]),
    ]
    plots = ", ".join(f"`{name}`" for _, name in drawn) or "none"
    body = [
        *head,
        table,
        chart,
        PLOTS_HEADING,
        "",
        f"In the report's directory (and embedded in `index.html`): {plots}.",
        "",
        *[f"- {note}" for note in notes],
        "",
        "### Lineage",
        "",
        *rows(lineage),
        "",
        "### Artifacts",
        "",
        *rows(artifacts),
        "",
    ]
    full = re.sub(r"\n{3,}", "\n\n", "\n".join(body))
    return Text(full, table, chart)


def _logs(side) -> str:
    runs = sorted(side.curves or {})
    what = f"runs: {', '.join(runs)}" if runs else "no event files"
    return f"`{side.logs_uri}/` ({what})"


def _inline(text: str) -> str:
    text = html_lib.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def html(markdown_text: str, images: list[tuple[str, Path]]) -> str:
    """One self-contained page: the Markdown as HTML, then every image inline (base64)."""
    out, table, in_code = [], [], False
    plots_seen, figures_at = False, None
    for line in [*markdown_text.splitlines(), ""]:
        if line.startswith("```"):
            in_code = not in_code  # Mermaid blocks: the PNGs below show the same curves
            continue
        if in_code:
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            head, *rest = table
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(head)))
            for row in rest[1:]:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(row)))
            out.append("</table>")
            table = []
        if line == CHART_HEADING:
            continue  # its Mermaid chart is left out: the PNGs show the curves
        if m := re.match(r"(#{1,6}) (.*)", line):
            if figures_at is None and plots_seen:
                figures_at = len(out)  # the figures go at the end of the Plots section
            plots_seen = plots_seen or line == PLOTS_HEADING
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<p class=note>{_inline(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    figures = []
    for title, path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img alt="{html_lib.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html_lib.escape(title)}</figcaption></figure>"
        )
    at = len(out) if figures_at is None else figures_at
    return PAGE.format(body="\n".join(out[:at] + figures + out[at:]))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model report</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em }}
table {{ border-collapse: collapse; margin: 1em 0 }}
th, td {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left }}
code {{ font-size: 90% }}
.note {{ color: #555 }}
img {{ max-width: 100% }}
</style></head>
<body>
{body}
</body></html>
"""
