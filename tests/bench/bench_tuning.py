"""Hyperparameter tuning: wall time of 4 real trials, one at a time vs two at a time.

Each trial is the example trainer (`--train-steps 100`, data on the storage emulator) with a
grid of 4 learning rates, so both runs do the same work; it reports `accuracy` through
cloudml-hypertune. Timed from the create call until a poll (every 50 ms) sees
`JOB_STATE_SUCCEEDED`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ci import clients
from ci.emulator import process
from tests.bench.bench_emulator import stage_trainer
from tests.test_tune import REPORTER

ROOT = Path(__file__).resolve().parents[2]
PARENT = "projects/bench/locations/us-central1"
BUCKET = "bench-tuning"
STEPS = 100
RATES = [0.003, 0.01, 0.03, 0.1]


def _sdist(work: Path) -> tuple[Path, str]:
    shutil.copy(ROOT / "setup.py", work)
    shutil.copytree(
        ROOT / "trainer", work / "trainer", ignore=shutil.ignore_patterns("__pycache__")
    )
    module = "trainer.task"
    if "hypertune" not in "".join(p.read_text() for p in (work / "trainer").glob("*.py")):
        (work / "trainer" / "hp_report.py").write_text(REPORTER)
        module = "trainer.hp_report"
    cmd = [sys.executable, "setup.py", "-q", "sdist", "-d", str(work / "dist")]
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    return next((work / "dist").glob("*.tar.gz")), module


def _tune(vertex, sdist: Path, module: str, parallel: int) -> tuple[float, list[dict]]:
    spec = {
        "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
        "packageUris": [f"gs://{BUCKET}/staging/{sdist.name}"],
        "pythonModule": module,
        "args": [
            f"--train-steps={STEPS}",
            f"--train-file=gs://{BUCKET}/data/iris_training.csv",
            f"--eval-file=gs://{BUCKET}/data/iris_test.csv",
        ],
    }
    body = {
        "displayName": f"bench-p{parallel}",
        "studySpec": {
            "metrics": [{"metricId": "accuracy", "goal": "MAXIMIZE"}],
            "parameters": [
                {"parameterId": "learning-rate", "discreteValueSpec": {"values": RATES}}
            ],
            "algorithm": "GRID_SEARCH",
        },
        "maxTrialCount": len(RATES),
        "parallelTrialCount": parallel,
        "trialJobSpec": {
            "workerPoolSpecs": [{"replicaCount": "1", "pythonPackageSpec": spec}],
            "baseOutputDirectory": {"outputUriPrefix": f"gs://{BUCKET}/p{parallel}"},
        },
    }
    jobs = vertex.projects().locations().hyperparameterTuningJobs()
    start = time.perf_counter()
    job = jobs.create(parent=PARENT, body=body).execute()
    while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        time.sleep(0.05)
        job = jobs.get(name=job["name"]).execute()
    elapsed = time.perf_counter() - start
    if job["state"] != "JOB_STATE_SUCCEEDED":
        raise RuntimeError(job["error"]["message"])
    return elapsed, job["trials"]


def run() -> str:
    """Measure and return the Markdown section."""
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        work = Path(tmp)
        sdist, module = _sdist(work)
        with process.start(work / "state") as emu:
            stage_trainer(emu, sdist, BUCKET)
            vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
            one, trials = _tune(vertex, sdist, module, 1)
            two, _ = _tune(vertex, sdist, module, 2)
    accuracy = ", ".join(
        f"{t['parameters'][0]['value']:g}: {t['finalMeasurement']['metrics'][0]['value']:.3f}"
        for t in trials
    )
    return "\n".join(
        [
            "### Hyperparameter tuning",
            "",
            "Command: `nox -s bench -- tuning` (`python -m tests.bench tuning`). "
            + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
            "",
            "| `parallelTrialCount` | Seconds for 4 trials | Speed-up |",
            "|---|---|---|",
            f"| 1 | {one:.1f} | 1.00× |",
            f"| 2 | {two:.1f} | {one / two:.2f}× |",
            "",
            f"Accuracy by learning rate (parallelism 1): {accuracy}. The machine has "
            f"{os.cpu_count()} cores; TensorFlow start-up and training share them.",
            "",
        ]
    )
