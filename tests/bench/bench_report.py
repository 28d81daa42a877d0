"""What ``ci report`` adds to a run: the report of a real job against a real champion.

Two ``ci pipeline`` runs on the embedded default make a champion (version 1) and a candidate
(version 2). Event files are added under both jobs' ``logs/`` (1,000 steps of four tags in
``train`` and ``eval``, written by ``tf.summary``), so the curves are drawn whatever the
trainer writes. Then, against one emulator: the report built in a fresh process after
``plots.warm_up()`` (as ``pipeline --report-dir`` runs it: matplotlib loads while the job
trains), without it (cold), again in the same process, and ``python -m ci report`` as a
workflow step runs it (interpreter, imports, its own emulators).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONPATH": str(ROOT)}
EMBEDDED = {"STORAGE_EMULATOR_HOST": "", "CI_PROJECT": "", "CI_API_ENDPOINT": ""}
TARGET = 3.0

# Runs in a fresh interpreter: times build() once, then N times more; prints JSON.
PROBE = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from ci import gate_rules, report
from ci.cloud import connect
from ci.settings import resolve
imported = time.perf_counter() - t0
job, out, repeats, warm = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
thresholds = gate_rules.load_config(Path("gate.toml"))
if warm:  # as pipeline --report-dir does before training (which outlasts it)
    from ci import plots
    plots.warm_up().join()
times = []
with connect(resolve(None)) as cloud:
    for i in range(repeats + 1):
        t = time.perf_counter()
        built = report.build(cloud, out / str(i), thresholds, job=job)
        times.append(time.perf_counter() - t)
print(json.dumps({"imported": imported, "times": times, "files": [p.name for p in built.files]}))
"""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **ENV, **env}
    # Installers leave bytecode compiled (pip does; uv with --compile-bytecode): measure
    # that, not a shell that forbids writing it (matplotlib would compile on every start).
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run(argv, cwd=ROOT, env=full, check=True, capture_output=True, text=True)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    _run(argv, env)
    return time.perf_counter() - t0


def _add_events(storage, job_dir: str, tmp: Path) -> None:
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    local = tmp / job_dir.rsplit("/", 1)[-1]
    for run in ("train", "eval"):
        with tf.summary.create_file_writer(str(local / run)).as_default():
            for step in range(0, 1000, 1 if run == "train" else 50):
                for tag in ("loss", "accuracy", "precision", "recall"):
                    value = 1 / (1 + step / 100) if tag == "loss" else 1 - 1 / (2 + step / 50)
                    tf.summary.write(tag, value, step=step, metadata=meta)
    bucket, _, prefix = job_dir.removeprefix("gs://").partition("/")
    for path in local.rglob("*"):
        if path.is_file():
            name = f"{prefix}/logs/bench-{path.relative_to(local).as_posix()}"
            storage.bucket(bucket).blob(name).upload_from_filename(os.fspath(path))


def run() -> str:
    from ci.cloud import connect
    from ci.emulator.process import start
    from ci.settings import LOCAL_BUCKET, LOCAL_PROJECT, resolve

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        state = tmp / "state"
        env = {**EMBEDDED, "CI_STATE_DIR": str(state)}
        jobs = []
        for _ in range(2):
            out = tmp / "outputs.txt"
            _run([sys.executable, "-m", "ci", "pipeline", "--train-steps", "200",
                  "--dist-dir", str(tmp / "dist"), "--outputs", str(out)], env)  # fmt: skip
            values = dict(line.split("=", 1) for line in out.read_text().splitlines())
            jobs.append((values["job_id"], values["job_dir"]))
            out.unlink()
        with start(state) as emu:
            live = {
                "CI_PROJECT": LOCAL_PROJECT,
                "CI_BUCKET": LOCAL_BUCKET,
                "CI_API_ENDPOINT": emu.vertex_url,
                "STORAGE_EMULATOR_HOST": emu.storage_host,
                "CI_STATE_DIR": str(state),
            }
            # google-cloud-storage finds the emulator through the process environment only.
            os.environ["STORAGE_EMULATOR_HOST"] = emu.storage_host
            try:
                with connect(resolve(None, live)) as cloud:
                    for _, job_dir in jobs:
                        _add_events(cloud.storage, job_dir, tmp / "events")
            finally:
                del os.environ["STORAGE_EMULATOR_HOST"]
            load = os.getloadavg()[0]
            runs = []
            for i in range(5):  # the first also leaves the bytecode and font caches behind
                warm = "1" if i >= 3 else "0"
                argv = [sys.executable, "-c", PROBE, jobs[1][0], str(tmp / f"R{i}"), "3", warm]
                runs.append(json.loads(_run(argv, live).stdout.strip().splitlines()[-1]))
            result = runs[-1]
        cli, baseline = [], []
        for i in range(3):
            cli.append(_timed([sys.executable, "-m", "ci", "report", "--job", jobs[1][0],
                               "--out", str(tmp / f"cli-{i}")], env))  # fmt: skip
            baseline.append(_timed([sys.executable, "-m", "ci", "versions"], env))
        load = max(load, os.getloadavg()[0])
    cold = statistics.median(r["times"][0] for r in runs[1:3])
    warmed = statistics.median(r["times"][0] for r in runs[3:])
    again = statistics.median(t for r in runs[1:] for t in r["times"][1:])
    verdict = "meets" if warmed < TARGET else "misses"
    pngs = ", ".join(f for f in result["files"] if f.endswith(".png"))
    return "\n".join(
        [
            "### Reports: time beyond the job (issue 11)",
            "",
            "Command: `nox -s bench -- report`. A real candidate (version 2) against a real",
            "champion (version 1), both trained by `ci pipeline` on the embedded default, with",
            "1,000 steps of four scalar tags in `train` and `eval` event files under each job's",
            f"`logs/`. Every report drew {pngs}, report.md and index.html.",
            "",
            "| what | seconds |",
            "|---|---|",
            "| `report.build` after `plots.warm_up()` (what `pipeline --report-dir` adds) "
            f"| {warmed:.2f} |",
            f"| `report.build`, first in a fresh process without warm-up | {cold:.2f} |",
            f"| `report.build` again in the same process (median) | {again:.2f} |",
            f"| the first ever on this machine (compiles matplotlib) | {runs[0]['times'][0]:.2f} |",
            f"| importing `ci.report` and the clients first | {result['imported']:.2f} |",
            f"| `python -m ci report --job` as a step (median of 3) "
            f"| {statistics.median(cli):.2f} |",
            f"| `python -m ci versions` as a step, for scale (median of 3) "
            f"| {statistics.median(baseline):.2f} |",
            "",
            f"Target: under {TARGET:g} s beyond the job: the in-pipeline report {verdict} it.",
            f"Load average during the run: up to {load:.1f} on {os.cpu_count()} cores (the machine",
            "is shared; figures scale with it). Both steps start the embedded emulators, which",
            "is most of their time.",
            "Event files are decoded without TensorFlow (`ci/events.py`): importing TensorFlow",
            "alone takes 7-9 s on this machine.",
        ]
    )
