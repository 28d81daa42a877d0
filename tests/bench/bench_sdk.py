"""The Vertex AI SDK against the emulator, and the cost of runtime parity.

SDK vs tooling: the same export uploaded as a new model each run; timed is deploy (until the
operation is done) plus one predict of data/test.json, through google-cloud-aiplatform
(REST transport: ``model.deploy`` + ``endpoint.predict``) and through the tooling's own
client (``ci.vertex.deploy`` + ``ci.predict.predict``: google-api-python-client polling
at the setting ``poll_interval``'s emulator default), alternating, in one emulator. Runtime
parity: an emulator with ``--serving-runtime image`` and an empty cache (``XDG_CACHE_HOME`` and
``UV_CACHE_DIR`` in a temporary directory: a fresh machine) deploys the export under the
tf2-cpu.2-15 image's TensorFlow: first use (build the environment, start the worker, load),
then a second version (the worker is running: load), against the local runtime.
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

from ci import clients
from ci.emulator import process
from ci.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "bench-sdk"
PARENT = f"projects/{PROJECT}/locations/us-central1"
BUCKET = "bench-sdk"
RUNS = 5
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
INSTANCES = [json.loads(line) for line in (ROOT / "data/test.json").read_text().splitlines()]


def _train(emu) -> str:
    """A 50-step export on the emulator's storage; its gs:// URI."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emu.storage_url},
    )
    bucket = client.create_bucket(BUCKET)
    for name in ("iris_training.csv", "iris_test.csv"):
        bucket.blob(f"data/{name}").upload_from_filename(os.fspath(ROOT / "data" / name))
    env = {**os.environ, **emu.env(), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "trainer.task",
        "--train-steps=50",
        f"--train-file=gs://{BUCKET}/data/iris_training.csv",
        f"--eval-file=gs://{BUCKET}/data/iris_test.csv",
        f"--job-dir=gs://{BUCKET}/run",
    ]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return f"gs://{BUCKET}/run/model"


def _upload(vertex, artifact_uri: str, name: str) -> str:
    body = {
        "model": {
            "displayName": name,
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": IMAGE},
        }
    }
    models = vertex.projects().locations().models()
    return models.upload(parent=PARENT, body=body).execute()["response"]["model"]


def _endpoint(vertex, name: str) -> dict:
    op = vertex.projects().locations().endpoints().create(parent=PARENT, body={"displayName": name})
    return op.execute()["response"]


def _tooling(emu, vertex, artifact_uri: str, n: int) -> float:
    from ci.cloud import Cloud
    from ci.predict import predict
    from ci.vertex import deploy

    settings = Settings(project=PROJECT, api_endpoint=emu.vertex_url, bucket=BUCKET)
    cloud = Cloud(settings, vertex, None)
    cloud.log = lambda message: None
    model, endpoint = _upload(vertex, artifact_uri, f"tool-{n}"), _endpoint(vertex, f"tool-{n}")
    start = time.perf_counter()
    deploy(cloud, endpoint, model, "1", {"0": 100})
    answer = predict(cloud, endpoint["name"], INSTANCES)
    elapsed = time.perf_counter() - start
    assert len(answer["predictions"]) == 3
    return elapsed


def _sdk(vertex, artifact_uri: str, n: int) -> float:
    from google.cloud import aiplatform

    model = aiplatform.Model(_upload(vertex, artifact_uri, f"sdk-{n}"))
    endpoint = aiplatform.Endpoint(_endpoint(vertex, f"sdk-{n}")["name"])
    start = time.perf_counter()
    model.deploy(endpoint=endpoint, machine_type="n1-standard-2")
    answer = endpoint.predict(instances=INSTANCES)
    elapsed = time.perf_counter() - start
    assert len(answer.predictions) == 3
    return elapsed


def _sdk_vs_tooling(work: Path) -> list[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    with process.start(work / "state") as emu:
        artifact_uri = _train(emu)
        vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
        aiplatform.init(
            project=PROJECT,
            location="us-central1",
            api_endpoint=emu.vertex_url,
            api_transport="rest",
            credentials=AnonymousCredentials(),
        )
        _tooling(emu, vertex, artifact_uri, -1)  # warm-up: TensorFlow imported, paths cached
        tooling, sdk = [], []
        for n in range(RUNS):
            tooling.append(_tooling(emu, vertex, artifact_uri, n))
            sdk.append(_sdk(vertex, artifact_uri, n))
    t, s = statistics.median(tooling), statistics.median(sdk)

    def spread(samples: list[float]) -> str:
        return f"{min(samples):.2f} – {max(samples):.2f}"

    return [
        "| Client | deploy + predict, median of 5 (s) | min – max (s) |",
        "|---|---|---|",
        f"| tooling (google-api-python-client) | {t:.2f} | {spread(tooling)} |",
        f"| SDK (google-cloud-aiplatform, REST) | {s:.2f} | {spread(sdk)} |",
        f"| **ratio SDK / tooling** | **{s / t:.1f}×** | |",
    ]


def _deploy_seconds(vertex, endpoint: str, model: str) -> float:
    body = {"deployedModel": {"model": model}}
    ops = vertex.projects().locations().endpoints()
    start = time.perf_counter()
    op = ops.deployModel(endpoint=endpoint, body=body).execute()
    while not op.get("done"):
        time.sleep(0.05)
        op = ops.operations().get(name=op["name"]).execute()
    if "error" in op:
        raise RuntimeError(op["error"]["message"])
    return time.perf_counter() - start


def _predict_ms(vertex, endpoint: str, n: int = 200) -> float:
    request = vertex.projects().locations().endpoints().predict
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        request(endpoint=endpoint, body={"instances": INSTANCES}).execute()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _parity(work: Path) -> list[str]:
    rows = []
    cache = work / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "UV_CACHE_DIR": str(cache / "uv")}
    for runtime in ("local", "image"):
        with process.start(work / runtime, serving_runtime=runtime, env=env) as emu:
            artifact_uri = _train(emu)
            vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
            first_model = _upload(vertex, artifact_uri, "first")
            second_model = _upload(vertex, artifact_uri, "second")
            first_endpoint = _endpoint(vertex, "first")["name"]
            second_endpoint = _endpoint(vertex, "second")["name"]
            first = _deploy_seconds(vertex, first_endpoint, first_model)
            second = _deploy_seconds(vertex, second_endpoint, second_model)
            latency = _predict_ms(vertex, second_endpoint)
        label = "local TensorFlow" if runtime == "local" else "image's TensorFlow 2.15"
        rows.append(f"| {label} | {first:.1f} | {second:.1f} | {latency:.1f} |")
    size = sum(f.stat().st_size for f in (cache / "ci-emulator").rglob("*") if f.is_file())
    rows.append("")
    rows.append(f"The cached environment takes {size / 2**30:.1f} GiB on disk.")
    return [
        "| Serving runtime | first deploy (s) | next deploy (s) | predict p50 (ms) |",
        "|---|---|---|---|",
        *rows,
    ]


def run() -> str:
    """Measure and return the Markdown section."""
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        sdk_rows = _sdk_vs_tooling(Path(tmp) / "sdk")
        parity_rows = _parity(Path(tmp) / "parity")
    return "\n".join(
        [
            "### The Vertex AI SDK against the emulator; runtime parity",
            "",
            "`python -m tests.bench sdk` (`tests/bench/bench_sdk.py`). Deploy of a fresh model",
            "version plus one predict of data/test.json, alternating clients in one emulator:",
            "",
            *sdk_rows,
            "",
            "Both times include each client's own polling of the deploy operation (the",
            "SDK's google-api-core backoff; the tooling's `poll_interval`, "
            f"{Settings().poll_seconds:g} s on emulators).",
            "",
            "Runtime parity (`--serving-runtime image`, setting `emulator_serving_runtime`):",
            "first deploy on an empty cache (downloads tensorflow-cpu 2.15.1, builds the",
            "environment, starts the worker), next deploy of another version (the worker",
            "only loads the export), predict through the",
            "worker (200 sequential requests of 3 instances). One worker per TensorFlow",
            "version serves every export deployed under it, so only the first deploy pays",
            "for starting it and importing TensorFlow 2.15.",
            "",
            *parity_rows,
        ]
    )
