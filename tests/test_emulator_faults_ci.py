"""The ``ci`` commands through the emulator's new fault classes, provoked at the wire:
a create carried out whose answer is lost (an error, or a closed connection), and Cloud
Storage errors on uploads. Each is absorbed: exit 0, exactly one resource."""

from __future__ import annotations

import re

import pytest

from ci.emulator import faults
from tests.merge_path import run_ci, settings_env
from tests.sdists import sdist_bytes
from tests.test_faults import jobs_named

# A trainer that takes what ``ci train`` passes and writes only the metrics.json it reads
# back (no TensorFlow): the job is the point.
TASK = """
import argparse, json, os
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
parser = argparse.ArgumentParser()
parser.add_argument("--job-dir", required=True)
args, _ = parser.parse_known_args()
bucket, _, prefix = args.job_dir.removeprefix("gs://").partition("/")
client = storage.Client(
    project="wire",
    credentials=AnonymousCredentials(),
    client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]},
)
metrics = json.dumps({"accuracy": 1.0, "train_steps": 1})
client.bucket(bucket).blob(prefix.rstrip("/") + "/metrics.json").upload_from_string(metrics)
"""


@pytest.fixture(scope="module")
def tiny_sdist(tmp_path_factory):
    """An sdist of ``wiretrainer`` (module ``wiretrainer.task``) on disk."""
    files = {
        "setup.py": "from setuptools import setup\nsetup(name='wiretrainer', version='0.1')\n",
        "wiretrainer/__init__.py": "",
        "wiretrainer/task.py": TASK,
    }
    path = tmp_path_factory.mktemp("wiretrainer") / "wiretrainer-0.1.tar.gz"
    path.write_bytes(sdist_bytes("wiretrainer-0.1", files))
    return path


@pytest.fixture
def env(request, emulator, gcs):
    name = re.sub(r"[^a-z0-9-]", "-", f"w-{request.node.name[5:45]}".lower())
    return settings_env(emulator, name, CI_TRAINER_MODULE="wiretrainer.task")


def no_error(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr


LOST_CREATES = {
    "503-after-acting": {"method": "customJobs.create", "status": 503, "after": True},
    "dropped-after-acting": {"method": "customJobs.create", "drop": True, "after": True},
}


@pytest.mark.parametrize("fault", LOST_CREATES, ids=list(LOST_CREATES))
def test_train_through_a_lost_create_answer_makes_one_job(emulator, vertex, env, tiny_sdist, fault):
    spec = LOST_CREATES[fault]
    faults._post(emulator.vertex_url, spec)
    name = f"wire-{fault}"
    argv = ["train", "--package", str(tiny_sdist), "--job-display-name", name]
    result = run_ci(argv, env)
    assert faults.pending(emulator.vertex_url) == []  # the create's answer was lost
    no_error(result)
    jobs = jobs_named(vertex, name)
    assert [j["state"] for j in jobs] == ["JOB_STATE_SUCCEEDED"]


STORAGE_FAULTS = {
    "503-before": {"method": "objects.insert", "status": 503, "count": 2},
    "503-after-acting": {"method": "objects.insert", "status": 503, "after": True},
    "dropped-after-acting": {"method": "objects.insert", "drop": True, "after": True},
    "429-on-list": {"method": "objects.list", "status": 429},
}


@pytest.mark.parametrize("fault", STORAGE_FAULTS, ids=list(STORAGE_FAULTS))
def test_stage_through_a_storage_fault_stages_the_file(
    emulator, gcs, env, tiny_sdist, tmp_path, fault
):
    data = tmp_path / "data.csv"
    data.write_text(f"a,b\n1,{fault}\n")  # content-addressed: new content, a new object
    faults._post(emulator.vertex_url, STORAGE_FAULTS[fault])
    result = run_ci(["stage", "--sdist", str(tiny_sdist), "--data", str(data)], env)
    assert faults.pending(emulator.vertex_url) == []
    no_error(result)
    staged = [b for b in gcs.list_blobs("test-bucket") if b.name.endswith("/data.csv")]
    assert data.read_bytes() in [b.download_as_bytes() for b in staged]


# Storage answers no retry helps: one line naming the call, the status and the service's
# own message (not the request's URL or the library's tuple).
STORAGE_REFUSALS = {
    "401-on-upload": (
        {"method": "objects.insert", "status": 401},
        "failed: not authenticated (Anonymous credentials cannot be refreshed.)",
    ),
    "403-on-upload": (
        {"method": "objects.insert", "status": 403},
        "failed: HTTP 403: Injected 403 for storage.objects.insert.",
    ),
    "403-on-list": (
        {"method": "objects.list", "status": 403},
        "failed: HTTP 403: Injected 403 for storage.objects.list.",
    ),
}


@pytest.mark.parametrize("fault", STORAGE_REFUSALS, ids=list(STORAGE_REFUSALS))
def test_a_storage_refusal_is_one_line_naming_the_call(
    emulator, gcs, env, tiny_sdist, tmp_path, fault
):
    spec, expected = STORAGE_REFUSALS[fault]
    data = tmp_path / "data.csv"
    data.write_text(f"a,b\n1,refused-{fault}\n")
    faults._post(emulator.vertex_url, spec)
    result = run_ci(["stage", "--sdist", str(tiny_sdist), "--data", str(data)], env)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith(expected), line
    assert "http://" not in line and "Traceback" not in result.stderr
