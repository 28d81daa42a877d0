"""The report's PNG plots, drawn with matplotlib's object API on the Agg canvas.

No pyplot: no global figure state and no display backend to choose, so plots can be drawn
on a runner without a screen and from any thread. Each plot function writes one PNG and
returns its path; ``draw_all`` draws the report's and turns any failure into a note.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path

from ci import gate_rules
from ci.events import Curves

DPI = 100
CANDIDATE, CHAMPION = "#1f77b4", "#ff7f0e"
CURVES, CONFUSION, COMPARISON = "training_curves.png", "confusion_matrix.png", "comparison.png"
FILES = (CURVES, CONFUSION, COMPARISON)


def warm_up() -> threading.Thread:
    """Import matplotlib and draw once, in the background: ``pipeline --report-dir`` calls
    this before training, so the report after the job does not pay for it."""

    def work() -> None:
        with contextlib.suppress(Exception):  # only a head start: build() reports failures
            fig = _figure(1, 1)
            fig.subplots().set_title("warm-up")
            fig.savefig(io.BytesIO(), format="png")

    thread = threading.Thread(target=work, name="plots-warm-up", daemon=True)
    thread.start()
    return thread


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def training_curves(
    candidate: Curves, champion: Curves, path: Path, champion_label: str = "champion"
) -> Path:
    """One panel per tag; the candidate's runs solid, the champion's dashed."""
    tags = sorted({t for runs in (candidate, champion) for tags in runs.values() for t in tags})
    if not tags:
        raise ValueError("no scalar curves to draw")
    tags = _loss_first(tags)[:6]  # beyond six panels nobody reads them
    cols = min(len(tags), 3)
    rows = -(-len(tags) // cols)
    fig = _figure(4.2 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    # One colour per run name (train, eval, ...); the champion's lines dashed in the same one.
    names = sorted({run for runs in (candidate, champion) for run in runs})
    colour = {run: f"C{i % 10}" for i, run in enumerate(names)}
    for ax, tag in zip(axes, tags, strict=False):
        for who, runs, style in (("candidate", candidate, "-"), (champion_label, champion, "--")):
            for run, by_tag in sorted(runs.items()):
                points = by_tag.get(tag)
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(
                        steps,
                        values,
                        style,
                        color=colour[run],
                        marker="o" if len(points) <= 25 else None,
                        markersize=3,
                        label=f"{who} {run}",
                        linewidth=1.4,
                    )
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(tags) :]:
        ax.set_visible(False)
    fig.savefig(path)
    return path


def _loss_first(tags: list[str]) -> list[str]:
    return sorted(tags, key=lambda t: (0 if "loss" in t.lower() else 1, t))


def confusion_matrix(matrix: list[list[float]], classes: list[str], path: Path) -> Path:
    """Counts with the class names on both axes (rows: true class, columns: predicted)."""
    n = len(matrix)
    if n == 0 or any(len(row) != n for row in matrix):
        raise ValueError(f"confusion_matrix is not square ({n} rows)")
    names = [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]
    size = max(3.5, 0.6 * n + 2)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(row) for row in matrix), default=0)
    if n <= 20:  # beyond that the numbers are unreadable anyway
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                colour = "white" if top and value > top / 2 else "black"
                ax.text(j, i, f"{value:g}", ha="center", va="center", color=colour)
    ax.set_title("confusion matrix")
    fig.savefig(path)
    return path


def comparison(
    names: list[str],
    candidate: list[float | None],
    champion: list[float | None] | None,
    path: Path,
    champion_label: str = "champion",
) -> Path:
    """Horizontal bars per gated metric: the candidate's value, the champion's beside it."""
    if not names:
        raise ValueError("no gated metrics to compare")
    fig = _figure(7, 1.0 + 0.6 * len(names) * (2 if champion else 1))
    ax = fig.subplots()
    height = 0.4 if champion else 0.6
    ys = list(range(len(names)))
    bars = [("candidate", candidate, CANDIDATE, 0.0)]
    if champion:
        bars.append((champion_label, champion, CHAMPION, height))
    for label, values, colour, offset in bars:
        drawn = [v if v is not None else 0.0 for v in values]
        rects = ax.barh([y + offset for y in ys], drawn, height, label=label, color=colour)
        texts = ["—" if v is None else f"{v:.4g}" for v in values]
        ax.bar_label(rects, texts, padding=3, fontsize="small")
    ax.set_yticks([y + (height / 2 if champion else 0) for y in ys], names)
    ax.invert_yaxis()
    ax.margins(x=0.15)
    ax.legend(fontsize="small", loc="best")
    ax.set_title("gated metrics: candidate vs champion")
    fig.savefig(path)
    return path


def draw_all(cand, champ, names: list[str], tmp: Path, notes: list[str]):
    """Every plot for the report's two sides (``ci.report.Side``) and gated metric
    ``names``: ``[(title, file name)]`` of those drawn in ``tmp``; ``notes`` gets what is
    missing and why."""
    drawn = []
    who = champ.label if champ else "champion"
    if cand.curves or (champ and champ.curves):
        args = (cand.curves or {}, (champ and champ.curves) or {}, tmp / CURVES, who)
        if _try(notes, "training curves", training_curves, *args):
            drawn.append(("Training curves", CURVES))
    else:
        notes.append(f"No training curves: no TensorBoard event files under `{cand.logs_uri}/`.")
    matrix = cand.metrics.get("confusion_matrix")
    if matrix is not None:
        args = (matrix, cand.metrics.get("classes") or [], tmp / CONFUSION)
        if _try(notes, "confusion matrix", confusion_matrix, *args):
            drawn.append(("Confusion matrix", CONFUSION))
    else:
        notes.append("No confusion matrix: `metrics.json` has no `confusion_matrix`.")
    if not names:
        notes.append("No candidate vs champion chart: the gate config names no metrics.")
        return drawn
    values = [gate_rules.lookup(cand.metrics, n) for n in names]
    base = [gate_rules.lookup(champ.metrics, n) for n in names] if champ else None
    args = (names, values, base, tmp / COMPARISON, who)
    if _try(notes, "candidate vs champion chart", comparison, *args):
        drawn.append(("Gated metrics: candidate vs champion", COMPARISON))
    return drawn


def _try(notes: list[str], what: str, fn, *args) -> Path | None:
    """A plot, or a note saying why there is none: a plot never fails the report."""
    try:
        return fn(*args)
    except Exception as exc:  # matplotlib raises anything; the report goes on without it
        notes.append(f"Could not draw the {what}: {type(exc).__name__}: {exc}")
        return None
