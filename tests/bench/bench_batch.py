"""Batch prediction: rows/s and the emulator's peak RSS as the input grows.

A short real training run gives the export; it is uploaded as a model. Input is
`data/test.json` repeated, in JSON-lines objects of 100,000 lines at most on the storage
emulator (`gcsSource` `…/*.jsonl`). A batch prediction job (batch size 64) is timed from
create until a poll (every 50 ms) sees `JOB_STATE_SUCCEEDED`; the emulator process's RSS is
sampled every 50 ms meanwhile (its model is loaded by a warm-up job first). The baseline
is `Predictor.predict` on the same export in this process, in a loop over batches of 64
read from a local file (and, at 10,000 rows, one instance per call).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ci import clients
from ci.emulator import process

ROOT = Path(__file__).resolve().parents[2]
PARENT = "projects/bench/locations/us-central1"
BUCKET = "bench-batch"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_BATCH_SIZES", "10000,1000000").split(","))
OBJECT_LINES = 100_000
BATCH = 64


def _storage(emu):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="bench",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emu.storage_url},
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _train(work: Path) -> Path:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    cmd = [sys.executable, "-m", "trainer.task", "--job-dir", str(work / "job")]
    cmd += ["--train-steps", "100"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return work / "job" / "model"


def _upload_input(bucket, work: Path, n: int) -> tuple[str, Path]:
    lines = (ROOT / "data/test.json").read_text().splitlines()
    local = work / f"in-{n}.jsonl"
    with local.open("w") as out:
        for i in range(n):
            out.write(lines[i % len(lines)] + "\n")
    with local.open() as src:
        part, chunk = 0, []
        for line in src:
            chunk.append(line)
            if len(chunk) == OBJECT_LINES:
                bucket.blob(f"in-{n}/{part:03d}.jsonl").upload_from_string("".join(chunk))
                part, chunk = part + 1, []
        if chunk:
            bucket.blob(f"in-{n}/{part:03d}.jsonl").upload_from_string("".join(chunk))
    return f"gs://{BUCKET}/in-{n}/*.jsonl", local


def _job(vertex, model: str, uri: str, pid: int) -> tuple[float, float, dict]:
    body = {
        "displayName": "bench",
        "model": model,
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [uri]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/out"},
        },
        "manualBatchTuningParameters": {"batchSize": BATCH},
    }
    jobs = vertex.projects().locations().batchPredictionJobs()
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    job = jobs.create(parent=PARENT, body=body).execute()
    while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        time.sleep(0.05)
        job = jobs.get(name=job["name"]).execute()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if job["state"] != "JOB_STATE_SUCCEEDED":
        raise RuntimeError(job["error"]["message"])
    return elapsed, peak[0], job["completionStats"]


def _loop(predictor, local: Path, batch: int) -> float:
    start = time.perf_counter()
    with local.open() as src:
        chunk = []
        for line in src:
            chunk.append(json.loads(line))
            if len(chunk) == batch:
                predictor.predict(chunk)
                chunk = []
        if chunk:
            predictor.predict(chunk)
    return time.perf_counter() - start


def run() -> str:
    """Measure and return the Markdown section."""
    from ci.serving import Predictor

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        export = _train(work)
        predictor = Predictor.load(export)
        with process.start(work / "state") as emu:
            bucket = _storage(emu).create_bucket(BUCKET)
            for path in export.rglob("*"):
                if path.is_file():
                    name = f"model/{path.relative_to(export)}"
                    bucket.blob(name).upload_from_filename(str(path))
            vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
            models = vertex.projects().locations().models()
            upload = {
                "model": {
                    "displayName": "bench",
                    "artifactUri": f"gs://{BUCKET}/model",
                    "containerSpec": {"imageUri": "tf2-cpu"},
                }
            }
            model = models.upload(parent=PARENT, body=upload).execute()["response"]["model"]
            warm, _ = _upload_input(bucket, work, 100)
            _job(vertex, model, warm, emu.pid)  # loads the model into the emulator
            base = _rss_mb(emu.pid)
            for n in SIZES:
                uri, local = _upload_input(bucket, work, n)
                seconds, peak, stats = _job(vertex, model, uri, emu.pid)
                loop64 = _loop(predictor, local, BATCH)
                single = f"{n / _loop(predictor, local, 1):,.0f}" if n <= 10_000 else "not run"
                rows.append(
                    f"| {n:,} | {stats['successfulCount']} | {seconds:.1f} | {n / seconds:,.0f} "
                    f"| {base:,.0f} → {peak:,.0f} | {n / loop64:,.0f} | {single} |"
                )
                local.unlink()
    return "\n".join(
        [
            "### Batch prediction",
            "",
            "Command: `nox -s bench -- batch` (`python -m tests.bench batch`). "
            + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
            "",
            "| Instances | Predicted | Job seconds | Job rows/s | Emulator RSS MB (idle → peak) "
            "| Loop, batches of 64: rows/s | Loop, one per call: rows/s |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Peak RSS must not grow with the input: results go to local files of "
            f"{OBJECT_LINES:,} lines that are uploaded at the end, and input streams in 8 MiB "
            "reads. The storage emulator runs in the same process and holds one whole object "
            "per request, which is why input objects are at most "
            f"{OBJECT_LINES:,} lines here.",
            "",
        ]
    )
