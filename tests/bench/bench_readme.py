"""P7 (issue 12): the README's test command on fresh clones, run after one another.

Each run is a new clone of one commit (HEAD when the benchmark starts) and exactly what CI
runs: ``bash .ci/run``, which installs nox and calls the README's test command. A run that
fails stops the benchmark and names its log, so the table is also a record of consecutive
passes (issue 14 asks for three in a row).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.bench_verdict import ROOT, _children_cpu, _env, _import_seconds

RUNS = 3


def _run_once(sha: str, clone: Path, log: Path) -> tuple[float, float, str]:
    """Seconds of ``bash .ci/run`` in a fresh clone of ``sha``, the CPU-seconds of all its
    processes, and pytest's summary line."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", sha], check=True)
    start, cpu = time.perf_counter(), _children_cpu()
    with log.open("w") as out:
        proc = subprocess.run(
            ["bash", ".ci/run"], cwd=clone, env=_env(), stdout=out, stderr=subprocess.STDOUT
        )
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"bash .ci/run failed on a fresh clone (exit {proc.returncode}): {log}")
    summary = re.findall(r"=+ (\d+ passed.*?) in [\d.]+s", text)
    return seconds, cpu, summary[-1] if summary else "(no pytest summary)"


def run() -> str:
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    logs = Path(tempfile.mkdtemp(prefix="bench-readme-"))
    rows = []
    for n in range(1, RUNS + 1):
        clone = logs / f"clone-{n}"
        seconds, cpu, summary = _run_once(sha, clone, logs / f"run-{n}.log")
        # The floor of the same run: a bare import in the environment the tests just used.
        imported = _import_seconds(clone / ".nox" / "tests" / "bin" / "python")
        shutil.rmtree(clone, ignore_errors=True)
        rows.append((n, seconds, cpu, summary, imported))
    median = statistics.median(r[1] for r in rows)
    median_cpu = statistics.median(r[2] for r in rows)
    median_import = statistics.median(r[4] for r in rows)
    cores = os.cpu_count() or 1
    lines = [
        "### The README's test command on fresh clones (P7; issue 14's three in a row)",
        "",
        "Command: `nox -s bench -- readme`. Each run: `git clone` of commit",
        f'{sha[:7]}, then `bash .ci/run` (what CI runs: `pip install "nox[uv]"`, then',
        "`nox -s lint tests`, whose environments uv fills from its cache on this machine).",
        f"The runs follow one another; load average at the start: {load:.1f} on",
        f"{os.cpu_count()} cores. A failed run stops the benchmark: every row passed.",
        "",
        "| run | seconds | minutes | CPU-seconds | tests | `import tensorflow` after it (s) |",
        "| ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    lines += [
        f"| {n} | {s:.0f} | {s / 60:.1f} | {c:.0f} | {summary} | {i:.1f} |"
        for n, s, c, summary, i in rows
    ]
    lines += [
        "",
        f"Median {median / 60:.1f} min ({median / median_import:.0f}× the median import of",
        f"{median_import:.1f} s); target ≤ 5 min. The tests run in parallel, one worker",
        "per core (docs/testing.md). P7's floor: a run's processes (counted when their",
        f"parents reap them) used {median_cpu:.0f} CPU-seconds (median), so on {cores} cores",
        f"no run can take less than {median_cpu / cores / 60:.1f} min. Much of that work",
        "is TensorFlow starting in the processes the tests really run (trainers, emulators,",
        "`ci` commands, act jobs): the P1 section counts them for the tests outside act,",
        "and each act run starts TensorFlow again in its own jobs (local train and predict,",
        "trainer, serving).",
    ]
    shutil.rmtree(logs, ignore_errors=True)
    return "\n".join(lines)
