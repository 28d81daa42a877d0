"""The trainer's fixed cost against a bare TensorFlow import (P6), and what determinism costs.

Each measurement runs in its own process; the kinds are interleaved and repeated, and the
table shows medians, so one slow run (the machine is shared) does not decide.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPEATS = 3
P6_STEPS = 50
DETERMINISM_STEPS = 1000
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}

# Times train.run() alone (TensorFlow already imported), with op determinism on or off.
_TIMED_RUN = """
import json, sys, time
import tensorflow as tf
from trainer import train
job_dir, steps, deterministic = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "on"
config = train.Config(job_dir=job_dir, train_file="data/iris_training.csv",
                      eval_file="data/iris_test.csv", train_steps=steps, batch_size=32,
                      learning_rate=0.01, hidden_units=(10, 10), deterministic=deterministic)
start, cpu = time.perf_counter(), time.process_time()
train.run(config)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}))
"""

# Where a short run's time above the import goes: each phase of train.run, timed in one
# process with the same data and steps as the P6 row (local files, no cluster).
_PHASES = """
import json, os, sys, time
from trainer import task
t = [time.perf_counter()]
tf = task._import_tensorflow()  # as the entry point imports it
t.append(time.perf_counter())
import keras
from trainer import cluster, model, train
t.append(time.perf_counter())
job_dir, steps = sys.argv[1], int(sys.argv[2])
config = train.Config(job_dir=job_dir, train_file="data/iris_training.csv",
                      eval_file="data/iris_test.csv", train_steps=steps, batch_size=32,
                      learning_rate=0.01, hidden_units=(10, 10))
train.seed_everything(config.seed)
net = train.fit(config, cluster.strategy(cluster.role()), [config.train_file])
t.append(time.perf_counter())
served = model.build_model(config.hidden_units)
served.set_weights(net.get_weights())
train.evaluate(served, [config.eval_file], config.batch_size)
t.append(time.perf_counter())
model.export_archive(served).write_out(os.path.join(job_dir, "export"), verbose=False)
t.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""
PHASES = (
    "`import tensorflow`, as the entry point does it",
    "`import keras` and the trainer's modules",
    "seed, strategy, the steps (the first one traces the step function)",
    "evaluation on data/iris_test.csv",
    "the SavedModel export (traces the serving signature, writes it)",
)


def _phases(job_dir: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", _PHASES, job_dir, str(P6_STEPS)],
        cwd=ROOT, env=ENV, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``cmd``."""
    start, cpu = time.perf_counter(), _cpu()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start, _cpu() - cpu


def _train_seconds(job_dir: str, deterministic: bool) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _TIMED_RUN, job_dir, str(DETERMINISM_STEPS),
         "on" if deterministic else "off"],
        cwd=ROOT, env=ENV, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    timed = json.loads(out.strip().splitlines()[-1])
    return timed["seconds"], timed["cpu"]


def run() -> str:
    kinds = {"import": [], "trainer": [], "on": [], "off": []}
    phases: list[list[float]] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(REPEATS):
            kinds["import"].append(_wall([sys.executable, "-c", "import tensorflow"]))
            job = os.path.join(tmp, f"p6-{n}")
            kinds["trainer"].append(
                _wall([sys.executable, "-m", "trainer.task", "--job-dir", job,
                       "--train-steps", str(P6_STEPS)])
            )  # fmt: skip
            phases.append(_phases(os.path.join(tmp, f"phases-{n}")))
            for mode in ("on", "off"):
                kinds[mode].append(_train_seconds(os.path.join(tmp, f"{mode}-{n}"), mode == "on"))
    wall = {k: statistics.median(v[0] for v in runs) for k, runs in kinds.items()}
    cpu = {k: statistics.median(v[1] for v in runs) for k, runs in kinds.items()}
    phase = [statistics.median(run[i] for run in phases) for i in range(len(PHASES))]
    # What every trainer that exports a Keras model pays: both imports and the export.
    floor = (phase[0] + phase[1] + phase[4]) / phase[0]
    return "\n".join(
        [
            "### Trainer: fixed cost (P6) and the cost of determinism (issues 12, 14)",
            "",
            "Command: `nox -s bench -- trainer`. Medians of "
            f"{REPEATS} interleaved runs, each in a fresh process. CPU is user + system time",
            "of the process: on a shared machine it moves less than wall time (load average",
            f"when this run started: {load:.1f} on {os.cpu_count()} cores).",
            "",
            "| measure | wall s | CPU s |",
            "| --- | ---: | ---: |",
            f'| `python -c "import tensorflow"` | {wall["import"]:.2f} | {cpu["import"]:.2f} |',
            f"| `python -m trainer.task --train-steps {P6_STEPS}` (local files) "
            f"| {wall['trainer']:.2f} | {cpu['trainer']:.2f} |",
            f"| P6 ratio (target ≤ 1.2×) | {wall['trainer'] / wall['import']:.2f}× "
            f"| {cpu['trainer'] / cpu['import']:.2f}× |",
            "",
            "| `train.run`, seeded, after the import | wall s | CPU s |",
            "| --- | ---: | ---: |",
            f"| {DETERMINISM_STEPS} steps, op determinism on (the default) "
            f"| {wall['on']:.2f} | {cpu['on']:.2f} |",
            f"| {DETERMINISM_STEPS} steps, op determinism off | {wall['off']:.2f} "
            f"| {cpu['off']:.2f} |",
            f"| cost of determinism | {(wall['on'] / wall['off'] - 1) * 100:+.0f}% "
            f"| {(cpu['on'] / cpu['off'] - 1) * 100:+.0f}% |",
            "",
            f"Where the {P6_STEPS}-step run's time goes, phase by phase in one process (medians):",
            "",
            "| phase | wall s |",
            "| --- | ---: |",
            *(f"| {name} | {s:.2f} |" for name, s in zip(PHASES, phase, strict=True)),
            "",
            "P6's floor: any trainer that exports a Keras model imports TensorFlow and Keras",
            "and writes a SavedModel, whatever it trains: "
            f"({phase[0]:.2f} + {phase[1]:.2f} + {phase[4]:.2f}) ÷ {phase[0]:.2f} = "
            f"{floor:.2f}× the import. The rest, the steps and the evaluation, is the work.",
            f"The bare import's row is {wall['import'] - phase[0]:.2f} s longer than the import",
            "inside a process: starting Python, TensorFlow's interpreter teardown at exit,",
            "which a successful trainer skips, and the matplotlib and googleapiclient that",
            "a bare import loads when installed (as here), which the entry point keeps out",
            "while TensorFlow loads (docs/trainer.md).",
            "",
            "Both `train.run` rows seed everything and shuffle with stateless ops; the",
            "difference is `tf.config.experimental.enable_op_determinism()` alone. They",
            "include evaluation and export, not the import.",
        ]
    )
