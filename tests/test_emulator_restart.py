"""State survives the emulator: kill -9 and restart, and a clean SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ci import clients
from ci.emulator import process
from ci.errors import CiError
from tests.conftest import (
    BUCKET,
    PARENT,
    ROOT,
    Poll,
    create_endpoint,
    deploy,
    predict,
    storage_client,
    upload,
)
from tests.sdists import sdist_bytes
from tests.test_emulator_jobs import _sdist, alive, create, fake_job, written_pid_files

INSTANCE = {"PetalLength": 1.7, "PetalWidth": 0.5, "SepalLength": 5.1, "SepalWidth": 3.3}


def _connect(emu):
    vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
    return vertex, Poll(vertex)


def _start_hanging_job(emu, vertex, poll, tmp_path) -> tuple[dict, list[int]]:
    client = storage_client(emu)
    bucket = client.lookup_bucket(BUCKET) or client.create_bucket(BUCKET)
    bucket.blob("staging/fakejob-0.1.tar.gz").upload_from_string(_sdist())
    package = f"gs://{BUCKET}/staging/fakejob-0.1.tar.gz"
    job = create(vertex, fake_job(package, "hang", [str(tmp_path)]))
    first = poll.until(lambda: written_pid_files(tmp_path)[:1], 60, "the job to start")
    pid_file = first[0]
    poll.job(job["name"], ("JOB_STATE_RUNNING",))
    return job, [int(p) for p in pid_file.read_text().split()]


@pytest.fixture
def trained_export(gcs, trained):
    """The session's trained export, as (path, bytes) pairs to copy into another emulator."""
    prefix = trained["artifact_uri"].removeprefix(f"gs://{BUCKET}/") + "/"
    return [(b.name, b.download_as_bytes()) for b in gcs.list_blobs(BUCKET, prefix=prefix)]


def test_kill_9_and_restart_keeps_models_versions_aliases_endpoints(
    tmp_path, trained_export, trained
):
    state = tmp_path / "state"
    first = process.start(state)
    try:
        bucket = storage_client(first).create_bucket(BUCKET)
        for name, data in trained_export:
            bucket.blob(name).upload_from_string(data)
        vertex, poll = _connect(first)
        model = upload(vertex, poll, trained["artifact_uri"])["model"]
        upload(
            vertex,
            poll,
            trained["artifact_uri"],
            parentModel=model,
            model={"versionAliases": ["default", "candidate"]},
        )
        endpoint = create_endpoint(vertex, poll, "survivor")
        deploy(vertex, poll, endpoint, f"{model}@candidate")
        job, pids = _start_hanging_job(first, vertex, poll, tmp_path)
    finally:
        first.kill()

    with process.start(state) as second:
        vertex, poll = _connect(second)
        models = vertex.projects().locations().models()
        assert models.get(name=model).execute()["versionId"] == "2"
        versions = models.listVersions(name=model).execute()["models"]
        aliases = {v["versionId"]: sorted(v.get("versionAliases", [])) for v in versions}
        assert aliases == {"1": [], "2": ["candidate", "default"]}
        assert versions[1]["deployedModels"][0]["endpoint"] == endpoint
        got = vertex.projects().locations().endpoints().get(name=endpoint).execute()
        deployed_id = got["deployedModels"][0]["id"]
        assert got["trafficSplit"] == {deployed_id: 100}
        answer = predict(vertex, endpoint, [INSTANCE])
        assert (answer["modelVersionId"], answer["deployedModelId"]) == ("2", deployed_id)

        failed = vertex.projects().locations().customJobs().get(name=job["name"]).execute()
        assert failed["state"] == "JOB_STATE_FAILED"
        assert "emulator stopped while this job was JOB_STATE_RUNNING" in failed["error"]["message"]
        poll.until(lambda: not any(alive(p) for p in pids), 10, "orphaned replicas to be killed")
        listed = vertex.projects().locations().models().list(parent=PARENT).execute()
        assert [m["name"] for m in listed["models"]] == [model]


def test_sigterm_ends_running_jobs_and_their_processes(tmp_path):
    state = tmp_path / "state"
    with process.start(state) as emu:
        vertex, poll = _connect(emu)
        job, pids = _start_hanging_job(emu, vertex, poll, tmp_path)
        assert all(alive(p) for p in pids)
        assert emu.stop() == 0
    assert not any(alive(p) for p in pids)
    with process.start(state) as again:
        vertex, _ = _connect(again)
        ended = vertex.projects().locations().customJobs().get(name=job["name"]).execute()
        assert ended["state"] == "JOB_STATE_FAILED"
        assert "shut down" in ended["error"]["message"]


def _health(emu) -> dict:
    with urllib.request.urlopen(f"{emu.vertex_url}/_emulator/health") as health:
        return json.load(health)


def _imports_tensorflow(emu) -> bool:
    return _health(emu)["tensorflow"]


def test_tensorflow_is_imported_while_a_job_runs_only_when_asked(tmp_path):
    # Most `ci` commands start an emulator only to list, stage, train or gate.
    with process.start(tmp_path / "lazy") as emu:
        vertex, poll = _connect(emu)
        vertex.projects().locations().models().list(parent=PARENT).execute()
        _start_hanging_job(emu, vertex, poll, tmp_path / "lazy")  # SIGTERM at exit ends it
        assert _imports_tensorflow(emu) is False
    # `ci pipeline` deploys its job's export: the import starts once the job runs.
    with process.start(tmp_path / "warm", warm_up="") as emu:
        vertex, poll = _connect(emu)
        vertex.projects().locations().models().list(parent=PARENT).execute()
        assert _imports_tensorflow(emu) is False
        _start_hanging_job(emu, vertex, poll, tmp_path / "warm")
        poll.until(lambda: _imports_tensorflow(emu), 60, "TensorFlow to be imported")


def test_under_the_image_runtime_the_warm_up_starts_the_serving_images_worker(tmp_path):
    # The promote job of the workflows serves with the image's TensorFlow: its worker, not
    # this process, is what a deploy after the job would otherwise wait for.
    image = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    with process.start(tmp_path / "s", serving_runtime="image", warm_up=image) as emu:
        vertex, poll = _connect(emu)
        assert _health(emu)["serving_workers"] == []
        _start_hanging_job(emu, vertex, poll, tmp_path / "s")
        poll.until(lambda: _health(emu)["serving_workers"] == ["2.15"], 60, "the worker")
        assert _imports_tensorflow(emu) is False  # the emulator itself never needs it


def test_start_fails_clearly_when_a_port_is_taken(tmp_path, emulator):
    port = int(emulator.vertex_url.rsplit(":", 1)[1])
    with pytest.raises(CiError, match="Address already in use"):
        process.start(tmp_path / "state", vertex_port=port)


SLEEPER = {
    "setup.py": "from setuptools import setup\nsetup(name='sleeper', version='0.1')\n",
    "sleeper/__init__.py": "",
    "sleeper/task.py": "import time\nprint('training', flush=True)\ntime.sleep(600)\n",
}


def _sleeper_sdist(path: Path) -> Path:
    path.write_bytes(sdist_bytes("sleeper-0.1", SLEEPER))
    return path


def _processes_using(state: Path) -> list[int]:
    """Pids whose command line names ``state`` (the embedded emulator's state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not a process
            continue
        if entry.name.isdigit() and str(state).encode() in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_ctrl_c_in_a_terminal_cancels_the_embedded_job_before_the_emulator_stops(tmp_path):
    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group. The embedded
    # emulator runs in its own session, so it is still there to cancel the job: the job ends
    # CANCELLED (not FAILED by a shutdown), and nothing is left running.
    state = tmp_path / "state"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CI_")},
        "PYTHONPATH": str(ROOT),
        "CI_STATE_DIR": str(state),
        "CI_TRAINER_MODULE": "sleeper.task",
        "CI_POLL_INTERVAL": "0.05",
        "CI_DATA_DIR": str(ROOT / "data"),
        "CI_TRAIN_FILE": "iris_training.csv",
        "CI_EVAL_FILE": "iris_test.csv",
    }
    argv = ["train", "--package", str(_sleeper_sdist(tmp_path / "sleeper-0.1.tar.gz"))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the test's own process group stands for the terminal's
    )
    try:
        out = []
        for line in proc.stdout:
            out.append(line)
            if "JOB_STATE_RUNNING" in line:
                break
        assert any("JOB_STATE_RUNNING" in line for line in out), "".join(out) + proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    job = next(line.split()[1] for line in out if line.startswith("submitted "))
    assert err.strip().splitlines() == [
        f"Error: interrupted; job {job} cancelled (JOB_STATE_CANCELLED)"
    ]
    assert f"interrupted: cancelling {job}" in rest
    assert _processes_using(state) == []
    with process.start(state) as emu:
        vertex, _ = _connect(emu)
        ended = vertex.projects().locations().customJobs().get(name=job).execute()
    assert ended["state"] == "JOB_STATE_CANCELLED"


def test_the_embedded_emulator_stops_when_its_parent_is_killed(tmp_path):
    # SIGKILL leaves the parent no chance to stop what it started: the emulator notices the
    # closed pipe on its stdin, stops its jobs and exits.
    state = tmp_path / "state"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ci.emulator import process\n"
        "emu = process.start(Path(sys.argv[1]))\n"
        "print(emu.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(state)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()
        parent.wait()
        Poll(None).until(lambda: not alive(pid), 30, "the emulator to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert _processes_using(state) == []


def test_a_state_directory_from_before_scoped_ids_is_read_and_refiled(
    tmp_path, trained_export, trained
):
    # Earlier releases filed models and endpoints under their bare id (`1001.json`); a
    # user's `.local-cloud` from then must keep its champion and endpoint.
    state = tmp_path / "state"
    with process.start(state) as first:
        bucket = storage_client(first).create_bucket(BUCKET)
        for name, data in trained_export:
            bucket.blob(name).upload_from_string(data)
        vertex, poll = _connect(first)
        model = upload(vertex, poll, trained["artifact_uri"])["model"]
        endpoint = create_endpoint(vertex, poll, "old-layout")
    records = state / "vertex" / "records"
    for kind in ("models", "endpoints"):
        for path in (records / kind).glob("*~*.json"):
            path.rename(path.with_name(path.name.rsplit("~", 1)[-1]))
    assert sorted(p.name for p in (records / "models").iterdir()) == [
        model.rsplit("/")[-1] + ".json"
    ]
    with process.start(state) as second:
        vertex, _ = _connect(second)
        assert vertex.projects().locations().models().get(name=model).execute()["name"] == model
        got = vertex.projects().locations().endpoints().get(name=endpoint).execute()
        assert got["displayName"] == "old-layout"
    assert not list((records / "models").glob("[0-9]*.json"))
