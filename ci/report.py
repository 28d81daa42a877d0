"""``python -m ci report``: a trained job (or a model version) against the champion, to look at.

Writes ``report.md`` (the gate's checks, candidate vs champion values and deltas, lineage
labels, artifact paths, the training curve as a Mermaid chart that GitHub renders),
PNG plots (training curves from the TensorBoard event files under ``<job-dir>/logs/``, the
confusion matrix from ``metrics.json``, candidate vs champion bars of the gated metrics) and
``index.html``, one self-contained page with the plots embedded. Whatever cannot be drawn
(no event files, no confusion matrix, a plot that fails) is said in the report; it never
fails the command. The champion is the version holding ``default`` or, when that is the
candidate itself, the one holding ``previous``. Exits 0 whatever the gate decides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ci import events, flags, gate, gate_rules, gcs, outputs, plots, report_text, vertex
from ci.cloud import Cloud, connect, guard
from ci.errors import CiError, UsageError
from ci.inputs import output_dir
from ci.settings import resolve

AUTO = "auto"  # champion: the version holding `default`, else `previous` (see module doc)


@dataclass
class Side:
    """The candidate or the champion: where its outputs are, its metrics and labels."""

    label: str
    directory: str  # the job's output root: metrics.json, model/, logs/
    artifact_uri: str
    metrics: dict
    labels: dict
    version_id: str | None = None
    job: str | None = None
    curves: events.Curves | None = None

    @property
    def metrics_uri(self) -> str:
        return f"{self.directory}/metrics.json"

    @property
    def logs_uri(self) -> str:
        return f"{self.directory}/logs"


@dataclass
class Report:
    """What was written, and the Markdown pieces a step summary reuses."""

    files: list[Path]
    markdown: str
    gate_table: str
    chart: str
    result: gate.GateResult

    def summary(self) -> str:
        """The step summary: the gate table and the training curve (no images needed)."""
        return "\n".join(p for p in (self.gate_table, self.chart) if p)


def from_version(cloud: Cloud, version: dict) -> Side:
    """A model version: its export's parent directory is its job's output root."""
    artifact = version["artifactUri"].rstrip("/")
    labels = dict(version.get("labels", {}))
    job = labels.get("job-id")
    return Side(
        f"version {version['versionId']}",
        artifact.rpartition("/")[0],
        artifact,
        vertex.read_metrics(cloud, vertex.version_metrics_uri(version)),
        labels,
        version["versionId"],
        f"{cloud.parent}/customJobs/{job}" if job else None,
    )


def from_job(cloud: Cloud, job_ref: str, versions: list[dict]) -> Side:
    """A custom job, with the labels of the version it became (if it was promoted)."""
    job = vertex.get_job(cloud, job_ref)
    directory = vertex.job_dir(job)
    job_id = job["name"].rsplit("/", 1)[-1]
    mine = next((v for v in versions if v.get("labels", {}).get("job-id") == job_id), None)
    labels = {**job.get("labels", {}), **(mine or {}).get("labels", {}), "job-id": job_id}
    metrics = vertex.read_metrics(cloud, f"{directory}/metrics.json")
    version_id = mine and mine["versionId"]
    label = f"job {job_id}" + (f" (version {version_id})" if version_id else "")
    return Side(label, directory, f"{directory}/model", metrics, labels, version_id, job["name"])


def sides(cloud: Cloud, job: str | None, version: str | None, champion: str | None = AUTO):
    """(candidate, champion or None, model name or None) for a job or a version number."""
    if bool(job) == bool(version):
        raise UsageError("give exactly one of --job and --version")
    model = vertex.find_model(cloud)
    versions = vertex.list_versions(cloud, model["name"]) if model else []
    by_id = {v["versionId"]: v for v in versions}
    if version and version not in by_id:
        vertex.check_version_id(version, "--version")
        known = ", ".join(by_id) or "none"
        raise CiError(
            f"version {version!r} of model {cloud.settings.model_name!r} not found "
            f"(versions: {known})"
        )
    cand = from_version(cloud, by_id[version]) if version else from_job(cloud, job, versions)
    if champion == AUTO:
        chosen = vertex.with_alias(versions, vertex.DEFAULT)
        if chosen and chosen["versionId"] == cand.version_id:
            chosen = vertex.with_alias(versions, vertex.PREVIOUS)
    else:
        chosen = by_id.get(champion) if champion else None
    return cand, chosen and from_version(cloud, chosen), model and model["name"]


def _curves(cloud: Cloud, side: Side, dest: Path) -> events.Curves:
    """The side's scalar curves; empty when it has no event files."""
    guard(lambda: gcs.download_prefix(cloud.storage, side.logs_uri, dest), f"read {side.logs_uri}")
    return events.read_dir(dest) if dest.is_dir() else {}


@dataclass
class Ahead:
    """A job's plots, drawn in a thread into ``tmp`` while the caller goes on (``pipeline``
    promotes meanwhile). Only matplotlib works in the thread: the Google clients are not
    thread-safe, so the sides and their curves were fetched before it started."""

    cand: Side
    champ: Side | None
    tmp: Path
    notes: list[str] = field(default_factory=list)
    drawn: list = field(default_factory=list)
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self, names: list[str]) -> None:
        def draw() -> None:
            try:
                self.drawn = plots.draw_all(self.cand, self.champ, names, self.tmp, self.notes)
            except BaseException as exc:  # raised in the caller's thread, by wait()
                self.error = exc

        self.thread = threading.Thread(target=draw, name="report-plots", daemon=True)
        self.thread.start()

    def wait(self) -> list:
        """``[(title, file name)]`` of the plots drawn in ``tmp`` (what drawing raised, if
        anything, is raised here, as drawing in this thread would have)."""
        if self.thread:
            self.thread.join()
        if self.error:
            raise self.error
        return self.drawn


@contextlib.contextmanager
def drawn_ahead(cloud: Cloud, out, job: str, result: gate.GateResult, thresholds: dict):
    """``pipeline --report-dir``: start drawing the gated job's plots now (None without
    ``out``, or when its sides cannot be read now: :func:`after_gate` then does it all)."""
    if not out:
        yield None
        return
    champion = result.champion.version_id if result.champion else None
    with tempfile.TemporaryDirectory(prefix="ci-report-plots-") as scratch:
        ahead = None
        try:
            cand, champ, _ = sides(cloud, job, None, champion)
            for role, side in (("candidate", cand), ("champion", champ)):
                if side:
                    side.curves = _curves(cloud, side, Path(scratch) / "logs" / role)
            ahead = Ahead(cand, champ, Path(scratch))
            ahead.start(list(thresholds))
        except Exception:  # only a head start: after_gate reads and draws it all again
            ahead = None
        try:
            yield ahead
        finally:
            if ahead and ahead.thread:
                ahead.thread.join()  # its files go with the scratch directory


def build(
    cloud: Cloud,
    out: Path,
    thresholds: dict,
    job: str | None = None,
    version: str | None = None,
    champion: str | None = AUTO,
    ahead: Ahead | None = None,
) -> Report:
    """Gather, decide, draw and write the report into ``out``; return what was written.

    ``ahead``: the plots, already being drawn (:func:`drawn_ahead`) for the same job and
    champion; the sides are read again for what changed since (the version it became).
    """
    check_out(out)
    cand, champ, model = sides(cloud, job, version, champion)
    decision = gate_rules.decide(thresholds, cand.metrics, champ and champ.metrics)
    result = gate.GateResult(
        decision,
        cand.metrics_uri,
        cand.metrics,
        champ and gate.Champion(champ.version_id, model, champ.metrics_uri, champ.metrics),
    )
    out.mkdir(parents=True, exist_ok=True)
    # Everything is made in a scratch directory beside ``out`` and moved in at the end, so a
    # failure half-way leaves ``out`` as it was.
    with tempfile.TemporaryDirectory(dir=out, prefix=".report-") as scratch:
        tmp = Path(scratch)
        if ahead:
            drawn, notes = ahead.wait(), ahead.notes
            cand.curves = ahead.cand.curves
            if champ:
                champ.curves = ahead.champ.curves if ahead.champ else None
            for _, name in drawn:
                shutil.copyfile(ahead.tmp / name, tmp / name)
        else:
            for role, side in (("candidate", cand), ("champion", champ)):
                if side:
                    side.curves = _curves(cloud, side, tmp / "logs" / role)
            notes = []
            drawn = plots.draw_all(cand, champ, list(thresholds), tmp, notes)
        text = report_text.markdown(cand, champ, result, drawn, notes)
        (tmp / "report.md").write_text(text.full)
        html = report_text.html(text.full, [(title, tmp / name) for title, name in drawn])
        (tmp / "index.html").write_text(html)
        names = [name for _, name in drawn] + ["report.md", "index.html"]
        for name in names:
            os.replace(tmp / name, out / name)
        for stale in set(plots.FILES) - set(names):  # from an earlier report
            (out / stale).unlink(missing_ok=True)
    return Report([out / n for n in names], text.full, text.gate_table, text.chart, result)


def check_out(out: Path, flag: str = "--out") -> None:
    """``--out`` must be a directory or not exist yet (checked before anything starts), and
    none of its parents a file or a symlink to nothing (:func:`ci.inputs.output_dir`)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {str(out)!r} exists and is not a directory")
    try:
        output_dir(str(out))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def after_gate(
    cloud,
    out,
    summary,
    job: str,
    result: gate.GateResult,
    thresholds,
    best_effort=False,
    ahead: Ahead | None = None,
) -> None:
    """``pipeline --report-dir``: the report of the job just gated, against the champion
    it was gated against; the step summary gets the chart (the gate wrote its table).

    ``best_effort``: a failure is printed, not raised (after a "no", exit 3 must stand).
    ``ahead``: its plots, drawn while the promotion ran (:func:`drawn_ahead`).
    """
    if not out:
        return
    champion = result.champion.version_id if result.champion else None
    try:
        built = build(cloud, Path(out), thresholds, job=job, champion=champion, ahead=ahead)
    except CiError as exc:
        if not best_effort:
            raise
        print(f"report not written: {exc}", flush=True)
        return
    if built.chart:
        outputs.write_summary(summary, built.chart)
    print(f"report: {', '.join(str(f) for f in built.files)}", flush=True)


def main(argv: list[str]) -> int:
    parser = flags.parser("report", __doc__)
    parser.add_argument("--job", help="custom job resource name or id (the candidate)")
    parser.add_argument("--version", help="or: a version number of the model")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the report goes")
    gate.add_arguments(parser, "--gate-config")
    args = parser.parse_args(argv)
    settings = resolve(args)
    thresholds = gate_rules.apply_overrides(
        gate_rules.load_config(Path(args.gate_config)), args.threshold
    )
    if bool(args.job) == bool(args.version):
        raise UsageError("give exactly one of --job and --version")
    if args.job:  # malformed ids are bad usage, before anything connects
        vertex.check_job_ref(args.job)
    else:
        vertex.check_version_id(args.version, "--version")
    check_out(Path(args.out))
    with connect(settings) as cloud:
        built = build(cloud, Path(args.out), thresholds, args.job, args.version)
    for path in built.files:
        print(path)
    if args.decision_out:
        Path(args.decision_out).write_text(json.dumps(built.result.as_dict(), indent=2) + "\n")
    if args.markdown_out:
        Path(args.markdown_out).write_text(built.gate_table)
    outputs.write_outputs(args.outputs, {"report": Path(args.out) / "report.md"})
    outputs.write_summary(args.summary, built.summary())
    return 0
