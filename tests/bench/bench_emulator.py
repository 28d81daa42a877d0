"""Vertex AI emulator: job overhead over running the trainer directly, and predict latency.

Jobs: the same `python -m trainer.task` (same flags, same gs:// data and output on the
storage emulator) run directly and as a CustomJob, timed from the create call until a poll
(every 20 ms) sees `JOB_STATE_SUCCEEDED`. Predict: sequential requests from one client over
a keep-alive connection, against `Predictor.predict` called in-process on the same export.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from ci import clients
from ci.emulator import process

ROOT = Path(__file__).resolve().parents[2]
PARENT = "projects/bench/locations/us-central1"
BUCKET = "bench"
STEPS = 50
RUNS = 3
REQUESTS = {1: 2000, 32: 1000}


def _sdist(work: Path) -> Path:
    shutil.copy(ROOT / "setup.py", work)
    shutil.copytree(
        ROOT / "trainer", work / "trainer", ignore=shutil.ignore_patterns("__pycache__")
    )
    cmd = [sys.executable, "setup.py", "-q", "sdist", "-d", str(work / "dist")]
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    return next((work / "dist").glob("*.tar.gz"))


def stage_trainer(emu, sdist: Path, bucket_name: str = BUCKET):
    """A bucket on ``emu`` holding the trainer sdist and the Iris CSVs; its storage client."""
    client = clients.storage("bench", emu.storage_url)
    bucket = client.create_bucket(bucket_name)
    for local, name in [
        (sdist, f"staging/{sdist.name}"),
        *[(ROOT / "data" / f, f"data/{f}") for f in ("iris_training.csv", "iris_test.csv")],
    ]:
        bucket.blob(name).upload_from_filename(os.fspath(local))
    return client


def _args(out: str) -> list[str]:
    return [
        f"--train-steps={STEPS}",
        f"--train-file=gs://{BUCKET}/data/iris_training.csv",
        f"--eval-file=gs://{BUCKET}/data/iris_test.csv",
        f"--job-dir={out}",
    ]


def _direct(emu, n: int) -> float:
    env = {**os.environ, **emu.env(), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "trainer.task", *_args(f"gs://{BUCKET}/direct-{n}")]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _as_job(vertex, sdist: Path, n: int) -> tuple[float, str]:
    out = f"gs://{BUCKET}/job-{n}"
    spec = {
        "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
        "packageUris": [f"gs://{BUCKET}/staging/{sdist.name}"],
        "pythonModule": "trainer.task",
        "args": _args(out),
    }
    body = {
        "displayName": "bench",
        "jobSpec": {"workerPoolSpecs": [{"replicaCount": "1", "pythonPackageSpec": spec}]},
    }
    jobs = vertex.projects().locations().customJobs()
    start = time.perf_counter()
    job = jobs.create(parent=PARENT, body=body).execute()
    while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        time.sleep(0.02)
        job = jobs.get(name=job["name"]).execute()
    elapsed = time.perf_counter() - start
    if job["state"] != "JOB_STATE_SUCCEEDED":
        raise RuntimeError(job["error"]["message"])
    return elapsed, f"{out}/model"


def _deploy(vertex, artifact_uri: str) -> str:
    locations = vertex.projects().locations()
    body = {
        "model": {
            "displayName": "bench",
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": "tf2-cpu"},
        }
    }
    model = locations.models().upload(parent=PARENT, body=body).execute()["response"]["model"]
    op = locations.endpoints().create(parent=PARENT, body={"displayName": "bench"}).execute()
    endpoint = op["response"]["name"]
    op = (
        locations.endpoints()
        .deployModel(endpoint=endpoint, body={"deployedModel": {"model": model}})
        .execute()
    )
    while not op.get("done"):
        time.sleep(0.05)
        op = locations.endpoints().operations().get(name=op["name"]).execute()
    if "error" in op:
        raise RuntimeError(op["error"]["message"])
    return endpoint


def _time(call, n: int) -> list[float]:
    for _ in range(min(100, n // 10)):  # warm-up
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[int(len(ordered) * 0.99)] * 1000
    return p50, p99, len(samples) / sum(samples)


def _predict_rows(emu, client, endpoint: str, artifact_uri: str) -> list[str]:
    from ci import gcs
    from ci.serving import Predictor

    local = Path(tempfile.mkdtemp(prefix="bench-export-"))
    gcs.download_prefix(client, artifact_uri, local)
    predictor = Predictor.load(local)
    instances = [json.loads(line) for line in (ROOT / "data/test.json").read_text().splitlines()]
    url = urlsplit(emu.vertex_url)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    path = f"/v1/{endpoint}:predict"
    rows = []
    for batch, n in REQUESTS.items():
        batch_instances = (instances * batch)[:batch]
        body = json.dumps({"instances": batch_instances}).encode()

        def over_http(body=body):
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 200, payload

        local_p50, local_p99, local_rps = _stats(
            _time(lambda b=batch_instances: predictor.predict(b), n)
        )
        http_p50, http_p99, http_rps = _stats(_time(over_http, n))
        rows.append(
            f"| {batch} | {local_p50:.2f} / {local_p99:.2f} | {local_rps:,.0f} "
            f"| {http_p50:.2f} / {http_p99:.2f} | {http_rps:,.0f} "
            f"| **{http_p50 - local_p50:+.2f}** |"
        )
    conn.close()
    return rows


def run() -> str:
    """Measure and return the Markdown section."""
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        work = Path(tmp)
        sdist = _sdist(work)
        with process.start(work / "state") as emu:
            client = stage_trainer(emu, sdist)
            vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
            direct, emulated = [], []
            for n in range(RUNS):
                direct.append(_direct(emu, n))
                seconds, artifact_uri = _as_job(vertex, sdist, n)
                emulated.append(seconds)
            endpoint = _deploy(vertex, artifact_uri)
            rows = _predict_rows(emu, client, endpoint, artifact_uri)
    d, e = statistics.median(direct), statistics.median(emulated)
    budget = 1.2 * d + 1
    return "\n".join(
        [
            "### Local Vertex AI emulator",
            "",
            "Command: `nox -s bench -- emulator` (`python -m tests.bench emulator`). "
            + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
            "",
            f"Short job (`--train-steps {STEPS}`, median of {RUNS} runs; all runs: "
            f"direct {', '.join(f'{x:.2f}' for x in direct)} s, "
            f"job {', '.join(f'{x:.2f}' for x in emulated)} s):",
            "",
            "| Run | Seconds | Target |",
            "|---|---|---|",
            f"| `python -m trainer.task` directly | {d:.2f} | |",
            f"| CustomJob, create → `JOB_STATE_SUCCEEDED` | {e:.2f} ({e / d:.2f}×) "
            f"| ≤ 1.2× + 1 s = {budget:.2f}: {'met' if e <= budget else 'MISSED'} |",
            "",
            "Predict, milliseconds p50 / p99 and requests/s (one client, sequential):",
            "",
            "| Instances | In-process `Predictor.predict` | req/s | Emulator over HTTP | req/s "
            "| Added at p50 (target ≤ 1 ms) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
