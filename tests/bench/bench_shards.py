"""The trainer's input pipeline on one file against the same rows as 16 shards (issue 12).

Each measurement runs in its own process and reads one epoch of shuffled batches of 32,
consumed inside TensorFlow (``Dataset.reduce``), as the input benchmark does.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.bench_input import BATCH, ROOT, _write_csv

ROWS = 2_000_000
SHARDS = 16
REPEATS = 3

_CHILD = rf"""
import json, resource, sys, time
import tensorflow as tf
from trainer import data
files = sys.argv[1:]
start, cpu = time.perf_counter(), time.process_time()
ds = data.dataset(files, {BATCH}, seed=0)
count = lambda n, batch: n + tf.cast(tf.shape(batch[1])[0], tf.int64)
rows = int(ds.reduce(tf.constant(0, tf.int64), count))
print(json.dumps({{"rows": rows, "seconds": time.perf_counter() - start,
                  "cpu": time.process_time() - cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _split(path: Path, folder: Path) -> list[Path]:
    header, *rows = path.read_text().splitlines(keepends=True)
    shards = [folder / f"train-{i:02d}.csv" for i in range(SHARDS)]
    for i, shard in enumerate(shards):
        shard.write_text(header + "".join(rows[i::SHARDS]))
    return shards


def _measure(files: list[Path]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, files)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run() -> str:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "train.csv"
        _write_csv(one, ROWS)
        layouts = {"1 file": [one], f"{SHARDS} shards": _split(one, Path(tmp))}
        runs = [{name: _measure(files) for name, files in layouts.items()} for _ in range(REPEATS)]
    lines = [
        "### Training input: one file against shards (issue 12)",
        "",
        f"Command: `nox -s bench -- shards`. {ROWS:,} generated Iris rows, one epoch of",
        f"shuffled batches of {BATCH} through `trainer.data.dataset`, as one file and split",
        f"into {SHARDS} shards (read up to 4 at a time, interleaved). Medians of {REPEATS}",
        f"interleaved runs, each in a fresh process; load average at the start: {load:.1f}",
        f"on {os.cpu_count()} cores.",
        "",
        "| layout | wall s | CPU s | rows/s (wall) | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in layouts:
        assert all(r[name]["rows"] == ROWS for r in runs), name
        wall = statistics.median(r[name]["seconds"] for r in runs)
        cpu = statistics.median(r[name]["cpu"] for r in runs)
        rss = max(r[name]["peak_rss_mb"] for r in runs)
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {ROWS / wall:,.0f} | {rss:,.0f} |")
    return "\n".join(lines)
