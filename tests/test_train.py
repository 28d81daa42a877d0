"""``ci train`` against the running emulator: real jobs, faults injected at the wire."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys

import pytest

from ci import cli, clients, tiers, train
from ci.cloud import Cloud
from ci.emulator import faults
from ci.settings import Settings, resolve
from ci.train import job_body
from tests.merge_path import ROOT, settings_env, trainer_copy


@pytest.fixture
def env(emulator, gcs, monkeypatch):
    values = settings_env(emulator, "train-test")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _job_name(text: str) -> str:
    return re.search(r"submitted (\S+/customJobs/\d+)", text).group(1)


def test_job_body_from_tier():
    s = Settings(project="p", bucket="b", trainer_module="pkg.task", tf_version="2.15.1")
    body = job_body(
        s,
        tiers.pools("STANDARD_1"),
        "gs://b/p.tar.gz",
        ["--train-steps", "5"],
        "run-1",
        {"git-sha": "abc"},
    )
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "4"]
    package = pools[0]["pythonPackageSpec"]
    assert package == {
        "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-15.py310:latest",
        "packageUris": ["gs://b/p.tar.gz"],
        "pythonModule": "pkg.task",
        "args": ["--train-steps", "5"],
    }
    assert body["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://b/jobs/run-1"}
    assert body["labels"] == {"git-sha": "abc"}


def test_retries_back_off_a_fraction_of_the_librarys_wait_only_against_an_emulator():
    def list_request(client):
        return client.projects().locations().customJobs().list(parent="projects/p/locations/l")

    local = list_request(clients.vertex("us-central1", "http://127.0.0.1:9", anonymous=True))
    assert all(0 <= local._rand() < clients.EMULATOR_BACKOFF_SCALE for _ in range(200))
    google = list_request(clients.vertex("us-central1", anonymous=True))
    assert google._rand is random.random  # Vertex AI gets the library's own backoff


def test_trains_through_injected_429_and_503(
    env, emulator, trainer_sdist, vertex, tmp_path, capsys
):
    faults.inject(emulator.vertex_url, "customJobs.create", 503, count=1)
    faults.inject(emulator.vertex_url, "customJobs.get", 429, count=2)
    # Against an emulator the retries wait a fraction of a second (EMULATOR_BACKOFF_SCALE);
    # a second more in RUNNING keeps the state in sight of a poll on a loaded machine.
    faults.delay_job_state(emulator.vertex_url, "JOB_STATE_SUCCEEDED", 1)
    out = tmp_path / "out.txt"
    argv = ["train", "--scale-tier", "basic", "--train-steps", "20"]
    argv += ["--package", str(trainer_sdist), "--outputs", str(out), "--", "--batch-size", "8"]
    assert cli.main(argv) == 0
    assert faults.pending(emulator.vertex_url) == []  # every injected fault was hit
    printed = capsys.readouterr().out
    assert "JOB_STATE_RUNNING" in printed and "JOB_STATE_SUCCEEDED" in printed
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["job_name"] == _job_name(printed)
    assert json.loads(outputs["metrics"])["train_steps"] == 20
    job = vertex.projects().locations().customJobs().get(name=outputs["job_name"]).execute()
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["labels"]["git-sha"] == env["CI_GIT_SHA"]
    args = job["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["args"]
    assert args[args.index("--train-steps") + 1] == "20"
    assert args[-2:] == ["--batch-size", "8"]  # what follows -- goes to the trainer


def test_failing_job_shows_its_log_tail(env, trainer_sdist, capsys):
    argv = [
        "train",
        "--train-steps",
        "5",
        "--package",
        str(trainer_sdist),
        "--trainer-module",
        "trainer.no_such_module",
    ]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "JOB_STATE_FAILED" in captured.out
    tail = captured.out.split("--- log tail of job", 1)[1]
    assert "No module named trainer.no_such_module" in tail
    assert captured.err.startswith("Error: job ") and captured.err.count("\n") == 1


def test_timeout_cancels_the_job(env, trainer_sdist, vertex, capsys):
    # A job far too long for its timeout: the real processes must be stopped by the cancel.
    argv = ["train", "--train-steps", "10000000", "--package", str(trainer_sdist), "--timeout", "3"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "timed out after 3s and was cancelled" in captured.err
    name = _job_name(captured.out)
    job = vertex.projects().locations().customJobs().get(name=name).execute()
    assert job["state"] == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale-tier", "HUGE"], "'scale_tier': bad value 'HUGE' (one of BASIC, "),
        (
            [
                *("--scale-tier", "CUSTOM", "--master-type", "n1-standard-4"),
                *("--accelerator-type", "NVIDIA_TESLA_T4", "--accelerator-count", "3"),
            ],
            "bad value 3 for NVIDIA_TESLA_T4 (Vertex AI attaches 1, 2, 4 per replica)",
        ),
        (["--accelerator-count", "2"], "'accelerator_type' is unset"),
        (["--region", "us-centrall1"], "did you mean us-central1"),
        (["--git-sha", "not a sha"], "'git_sha' from --git-sha: bad value 'not a sha'"),
        (["--executor-image", "gs://x/y"], "(a container image such as "),
        (["--package", "README.md"], "package 'README.md' is not an sdist or wheel"),
        (["--scale-tier", "CUSTOM"], "CUSTOM needs --master-type"),
        (
            [
                "--scale-tier",
                "CUSTOM",
                "--master-type",
                "n1-standard-4",
                "--parameter-server-count",
                "2",
            ],
            "all-reduce",
        ),
        (["--train-steps", "0"], "'train_steps' from --train-steps: bad value '0'"),
        (["--timeout", "soon"], "not a number: 'soon'"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(argv, message, capsys):
    full = ["train", "--train-steps", "5", *argv]
    assert cli.main(full) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("command, sig", [("train", signal.SIGINT), ("pipeline", signal.SIGTERM)])
def test_interrupt_cancels_the_running_job(
    command, sig, emulator, gcs, trainer_sdist, vertex, poll, tmp_path
):
    # A real process and a real signal, against the already-running emulator: the job must
    # not outlive the command (on Vertex AI it would keep running, and billing).
    display = f"interrupt-{command}-{sig.name.lower()}"
    env = settings_env(emulator, display)
    argv = [command, "--train-steps", "10000000"]
    if command == "train":
        argv += ["--package", str(trainer_sdist), "--job-display-name", display]
    else:
        gate = tmp_path / "gate.toml"
        gate.write_text("[metrics.accuracy]\nlower_bound = 0.5\n")
        argv += ["--package-dir", str(trainer_copy(tmp_path)), "--dist-dir", str(tmp_path / "d")]
        argv += ["--gate-config", str(gate)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jobs = vertex.projects().locations().customJobs()
    parent = f"projects/{env['CI_PROJECT']}/locations/us-central1"
    try:

        def running() -> dict | None:
            found = jobs.list(parent=parent).execute().get("customJobs", [])
            mine = [j for j in found if j["labels"].get("git-sha") and _ours(j, display, command)]
            return next((j for j in mine if j["state"] == "JOB_STATE_RUNNING"), None)

        job = poll.until(running, timeout=120, what=f"the {command} job to run")
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"still running after {sig.name}:\n{out}\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines == [f"Error: interrupted; job {job['name']} cancelled (JOB_STATE_CANCELLED)"]
    assert f"interrupted: cancelling {job['name']}" in out
    assert poll.job(job["name"], timeout=5)["state"] == "JOB_STATE_CANCELLED"


def _ours(job: dict, display: str, command: str) -> bool:
    # train names the job itself; pipeline's job is MODEL-<timestamp> (MODEL = display).
    if command == "train":
        return job["displayName"] == display
    return job["displayName"].startswith(display + "-")


def test_more_replicas_than_the_local_emulator_runs_get_a_note(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ci.toml: the embedded default
    train.local_cap_note(Cloud(resolve(env={}), None, None), 100_000)
    assert capsys.readouterr().out == (
        "note: 100000 replicas asked for; the emulator's limit of 32 local processes a job "
        "runs 32 of them here\n"
    )
    capped = resolve(env={"CI_LOCAL_MAX_REPLICAS": "3"})
    train.local_cap_note(Cloud(capped, None, None), 5)
    assert "setting local_max_replicas=3 runs 3 of them here" in capsys.readouterr().out
    train.local_cap_note(Cloud(capped, None, None), 3)
    pointed = resolve(env={"CI_API_ENDPOINT": "http://127.0.0.1:9", "CI_PROJECT": "p-12345"})
    train.local_cap_note(Cloud(pointed, None, None), 100_000)  # not ours to say
    assert capsys.readouterr().out == ""
