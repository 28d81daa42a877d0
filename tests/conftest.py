"""Shared fixtures: one emulator process for the session, clients for it, polling helpers.

Tests that take ``emulator`` get a real ``python -m ci emulator`` process (started once per
session) and talk to it only through google-api-python-client and google-cloud-storage.
Faults injected by a test are cleared after it, so they never leak into the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ci import clients, serving
from ci.emulator import faults, process

# The test modules import TensorFlow in this process (trainer, ci.serving): without Keras's
# pyplot import, as the emulator's serving does (0.4 s per worker).
serving.skip_pyplot()

ROOT = Path(__file__).resolve().parents[1]
# The emulator tests' own project, so their models and endpoints never show up in the
# listings of other tests (which find resources by display name).
PARENT = "projects/emulator-tests/locations/us-central1"
BUCKET = "test-bucket"
FINAL_JOB_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


# The slowest test files, slowest first. The tests session runs files in parallel, one
# worker per core, in collection order: a long file that started last would keep one core
# busy long after the other had finished (`--durations` shows where the time goes).
SLOW_FIRST = (
    "test_workflows_act_runs",
    "test_workflows_act",
    "test_promote",
    "test_pipeline",
    "test_trainer",
    "test_sdk",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The session's emulator (``.vertex_url``, ``.storage_host``, ``.env()``, ...)."""
    with process.start(tmp_path_factory.mktemp("emulator-state")) as emu:
        yield emu


# How often the official SDK polls a job (its own module constant, 5 s, `_JOB_WAIT_TIME`
# in aiplatform.jobs and training_jobs: a sleep between gets). The emulator's jobs end in
# a second or two, so a test would sleep most of 5 s per job; polling faster changes no
# answer, only how soon the SDK asks again.
SDK_POLL_SECONDS = 0.2
SDK_POLLING_MODULES = ("google.cloud.aiplatform.jobs", "google.cloud.aiplatform.training_jobs")


@pytest.fixture(autouse=True)
def _sdk_polls_quickly(monkeypatch):
    for name in SDK_POLLING_MODULES:
        module = sys.modules.get(name)  # imported by the test modules that use the SDK
        if module is not None:
            monkeypatch.setattr(module, "_JOB_WAIT_TIME", SDK_POLL_SECONDS)


@pytest.fixture(autouse=True)
def _no_leaking_faults(request):
    yield
    if "emulator" in request.fixturenames:
        faults.clear(request.getfixturevalue("emulator").vertex_url)


@pytest.fixture(scope="session")
def vertex(emulator):
    """An ``aiplatform`` v1 discovery client pointed at the emulator."""
    return clients.vertex("us-central1", emulator.vertex_url, anonymous=True)


def storage_client(emu):
    """A google-cloud-storage client for ``emu`` (explicit endpoint: no global env change)."""
    return clients.storage("test-project", emu.storage_url)


@pytest.fixture(scope="session")
def gcs(emulator):
    """A google-cloud-storage client for the session emulator, with ``BUCKET`` created."""
    client = storage_client(emulator)
    client.create_bucket(BUCKET)
    return client


@pytest.fixture(scope="session")
def trainer_sdist(tmp_path_factory) -> Path:
    """An sdist of the example trainer, built from a copy (the tree stays clean)."""
    work = tmp_path_factory.mktemp("trainer-src")
    shutil.copy(ROOT / "setup.py", work)
    shutil.copytree(
        ROOT / "trainer", work / "trainer", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(dist)],
        cwd=work,
        check=True,
        capture_output=True,
    )
    return next(dist.glob("*.tar.gz"))


class Poll:
    """Poll jobs and operations with a deadline (never a bare sleep)."""

    def __init__(self, vertex):
        self.vertex = vertex

    def job(self, name: str, states=FINAL_JOB_STATES, timeout: float = 180) -> dict:
        """The job once it is in one of ``states`` (by default: finished)."""
        return self._until(
            lambda: self.vertex.projects().locations().customJobs().get(name=name).execute(),
            lambda job: job["state"] in states,
            timeout,
            f"job {name} to reach {states}",
        )

    def operation(self, op: dict, timeout: float = 120) -> dict:
        """The finished operation (``op`` as returned by the call that started it)."""
        if op.get("done"):
            return op
        return self._until(
            lambda: operations(self.vertex, op["name"]).get(name=op["name"]).execute(),
            lambda got: got.get("done"),
            timeout,
            f"operation {op['name']}",
        )

    def until(self, probe, timeout: float = 30, what: str = "a condition"):
        """``probe()``'s first truthy result."""
        return self._until(probe, bool, timeout, what)

    @staticmethod
    def _until(fetch, ok, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            got = fetch()
            if ok(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last: {got}")
            time.sleep(0.05)


def operations(vertex, name: str):
    """The ``operations()`` collection that polls ``name`` (its pattern must match)."""
    parts = name.split("/")
    if len(parts) == 6:  # projects/P/locations/L/operations/ID
        return vertex.projects().locations().operations()
    # ".../models/7/operations/9" goes through models().operations(), and so on.
    return getattr(vertex.projects().locations(), parts[4])().operations()


@pytest.fixture(scope="session")
def poll(vertex) -> Poll:
    """A :class:`Poll` for the session emulator."""
    return Poll(vertex)


@pytest.fixture(scope="session")
def staged(gcs, trainer_sdist) -> dict:
    """The trainer sdist and the data on the storage emulator, as ``ci stage`` would put them."""
    bucket = gcs.bucket(BUCKET)
    uris = {}
    for key, path, name in [
        ("package", trainer_sdist, f"staging/{trainer_sdist.name}"),
        ("train", ROOT / "data/iris_training.csv", "data/iris_training.csv"),
        ("eval", ROOT / "data/iris_test.csv", "data/iris_test.csv"),
    ]:
        bucket.blob(name).upload_from_filename(os.fspath(path))
        uris[key] = f"gs://{BUCKET}/{name}"
    return uris


def stage_bytes(gcs, name: str, data: bytes) -> str:
    """Put ``data`` at ``staging/<name>`` in the session bucket; its gs:// URI."""
    gcs.bucket(BUCKET).blob(f"staging/{name}").upload_from_string(data)
    return f"gs://{BUCKET}/staging/{name}"


def trainer_job(staged: dict, output: str, steps: int = 200, workers: int = 0) -> dict:
    """A CustomJob body running ``trainer.task`` the way ``ci train`` submits it."""

    def pool(count: int) -> dict:
        return {
            "replicaCount": str(count),
            "machineSpec": {"machineType": "n1-standard-4"},
            "pythonPackageSpec": {
                "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
                "packageUris": [staged["package"]],
                "pythonModule": "trainer.task",
                "args": [
                    f"--train-steps={steps}",
                    f"--train-file={staged['train']}",
                    f"--eval-file={staged['eval']}",
                ],
            },
        }

    pools = [pool(1)] + ([pool(workers)] if workers else [])
    return {
        "displayName": f"trainer-{steps}-{workers}",
        "jobSpec": {"workerPoolSpecs": pools, "baseOutputDirectory": {"outputUriPrefix": output}},
    }


def run_job(vertex, poll, body: dict) -> dict:
    job = vertex.projects().locations().customJobs().create(parent=PARENT, body=body).execute()
    return poll.job(job["name"])


@pytest.fixture(scope="session")
def trained(vertex, poll, staged) -> dict:
    """The finished single-replica job and where its export is."""
    output = f"gs://{BUCKET}/runs/single"
    job = run_job(vertex, poll, trainer_job(staged, output))
    return {"job": job, "artifact_uri": f"{output}/model"}


def upload(vertex, poll, artifact_uri: str, **extra) -> dict:
    """Upload a model (or a version with ``parentModel``); the finished UploadModelResponse."""
    body = {
        "model": {
            "displayName": "iris",
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17"},
            "labels": {"git-sha": "abc123"},
            **extra.pop("model", {}),
        },
        **extra,
    }
    op = vertex.projects().locations().models().upload(parent=PARENT, body=body).execute()
    return poll.operation(op)["response"]


# What a model served by a prebuilt container must be deployed with.
DEDICATED = {"minReplicaCount": 1, "machineSpec": {"machineType": "n1-standard-2"}}


def deploy(vertex, poll, endpoint: str, model: str, split=None) -> dict:
    body = {"deployedModel": {"model": model, "dedicatedResources": DEDICATED}}
    if split is not None:
        body["trafficSplit"] = split
    op = vertex.projects().locations().endpoints().deployModel(endpoint=endpoint, body=body)
    return poll.operation(op.execute())


def predict(vertex, endpoint: str, instances: list, retries: int = 0) -> dict:
    request = (
        vertex.projects()
        .locations()
        .endpoints()
        .predict(endpoint=endpoint, body={"instances": instances})
    )
    return request.execute(num_retries=retries)


def create_endpoint(vertex, poll, display_name: str) -> str:
    """A new endpoint's resource name."""
    op = (
        vertex.projects()
        .locations()
        .endpoints()
        .create(parent=PARENT, body={"displayName": display_name})
    )
    return poll.operation(op.execute())["response"]["name"]
