"""Training input pipeline: trainer's streaming tf.data against the walkthrough's pandas load.

Each measurement runs in its own process, so peak RSS is that pipeline's alone. Both read
one epoch of shuffled batches of 32, consumed inside TensorFlow (``Dataset.reduce``) so
Python loop overhead is not what is measured.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZES = (200_000, 2_000_000)
BATCH = 32
REPEATS = 3

_CHILD = rf"""
import json, os, resource, sys, time
import tensorflow as tf
approach, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if approach == "tf.data streaming (trainer)":
    from trainer import data
    ds = data.dataset(path, {BATCH}, seed=0)
elif approach.startswith("floor"):
    n = int(sys.argv[3]) // {BATCH}
    x, y = tf.zeros([n, {BATCH}, 4]), tf.zeros([n, {BATCH}], tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
else:
    import pandas as pd
    names = ["SepalLength", "SepalWidth", "PetalLength", "PetalWidth", "Species"]
    frame = pd.read_csv(path, names=names, header=0)
    labels = frame.pop("Species")
    ds = tf.data.Dataset.from_tensor_slices((dict(frame), labels)).shuffle(1000).batch({BATCH})
count = lambda n, batch: n + tf.cast(tf.shape(batch[1])[0], tf.int64)
rows = int(ds.reduce(tf.constant(0, tf.int64), count))
seconds = time.perf_counter() - start
print(json.dumps({{"rows": rows, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

APPROACHES = ("tf.data streaming (trainer)", "pandas + from_tensor_slices (walkthrough)")
# What consuming the batches alone costs: ready-made batches in memory, no file, no parsing.
FLOOR = "floor: iterate ready-made batches (no I/O)"


def _write_csv(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        f.write(f"{rows},4,setosa,versicolor,virginica\n")
        for _ in range(rows):
            f.write(
                f"{rng.uniform(4, 8):.1f},{rng.uniform(2, 4.5):.1f},{rng.uniform(1, 7):.1f},"
                f"{rng.uniform(0.1, 2.5):.1f},{rng.randrange(3)}\n"
            )


def _measure(approach: str, path: Path) -> dict:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "PYTHONPATH": str(ROOT),
    }
    rows = sum(1 for _ in path.open()) - 1
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, approach, str(path), str(rows)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - start


def run() -> str:
    lines = [
        "### Training input pipeline (issue 2)",
        "",
        "Command: `nox -s bench -- input`. One epoch of a generated Iris-shaped CSV, shuffled",
        f"batches of {BATCH}, each approach in a fresh process, median of {REPEATS} interleaved",
        "runs (time includes reading and parsing; peak RSS is the largest of the runs;",
        "it includes TensorFlow itself, about 600 MB). Target: streaming ≥ 3× the",
        "walkthrough's rows/s, and peak RSS that does not grow with the row count.",
        "",
        "| rows | approach | seconds | rows/s | peak RSS (MB) |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    speedups, floors, imports = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in SIZES:
            path = Path(tmp) / f"iris_{rows}.csv"
            _write_csv(path, rows)
            # Interleaved repeats, medians of the times: one slow run does not decide.
            runs = []
            for _ in range(REPEATS):
                imports.append(_import_seconds())
                runs.append({a: _measure(a, path) for a in (*APPROACHES, FLOOR)})
            results = {
                a: {
                    "rows": runs[0][a]["rows"],
                    "seconds": statistics.median(r[a]["seconds"] for r in runs),
                    "peak_rss_mb": max(r[a]["peak_rss_mb"] for r in runs),
                }
                for a in (*APPROACHES, FLOOR)
            }
            for approach, r in results.items():
                assert r["rows"] == rows, (approach, r)
                lines.append(
                    f"| {rows:,} | {approach} | {r['seconds']:.2f} | "
                    f"{rows / r['seconds']:,.0f} | {r['peak_rss_mb']:,.0f} |"
                )
            speedups[rows] = results[APPROACHES[1]]["seconds"] / results[APPROACHES[0]]["seconds"]
            floors[rows] = results[APPROACHES[0]]["seconds"] / results[FLOOR]["seconds"]
    lines += [
        "",
        "The floor row is the consumer alone: a bound on any pipeline's time at this batch",
        "size, which is why per-row parsing speed is not all that decides the ratio.",
        "",
        "Streaming speed-up over the walkthrough: "
        + ", ".join(f"{s:.1f}× at {r:,} rows" for r, s in speedups.items())
        + ".",
        "",
        "P3, streaming ÷ the floor row (target ≤ 1.25×): "
        + ", ".join(f"{f:.2f}× at {r:,} rows" for r, f in floors.items())
        + f". A bare `import tensorflow` took {statistics.median(imports):.1f} s in this run"
        " (median); the times above start after it.",
    ]
    return "\n".join(lines)
