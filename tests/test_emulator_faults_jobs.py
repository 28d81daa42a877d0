"""Job faults for every job kind: a tuning job, a batch prediction job, one trial or a custom
job made to fail, to enter a state late, or to hang RUNNING until cancelled (or its
``scheduling.timeout``); the shapes without a ``kind`` still mean custom jobs only."""

from __future__ import annotations

import pytest

from ci.emulator import faults
from tests.conftest import BUCKET, PARENT, stage_bytes, upload
from tests.test_emulator_batch import body as batch_body
from tests.test_emulator_jobs import _sdist, create, fake_job
from tests.test_tuning import UNITS, X, jobs, trial_sdist, tuning_job

FINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
HELD = 600  # seconds a delay holds a job: longer than any test, which cancels it


@pytest.fixture(scope="session")
def fake_package(gcs) -> str:
    """test_emulator_jobs' fake package (``report``, ``fail``, ``hang``), under our name."""
    return stage_bytes(gcs, "faults-fakejob-0.1.tar.gz", _sdist())


@pytest.fixture(scope="session")
def hp_package(gcs) -> str:
    """test_tuning's trial package (``hptrial.task``, reports ``score``)."""
    return stage_bytes(gcs, "faults-hptrial-0.1.tar.gz", trial_sdist())


@pytest.fixture(scope="module")
def model(vertex, poll) -> str:
    """A model for batch jobs: the faults act before its export is ever read."""
    response = upload(vertex, poll, f"gs://{BUCKET}/faults/no-export", model={"displayName": "f"})
    return response["model"]


def batches(vertex):
    return vertex.projects().locations().batchPredictionJobs()


def state_of(collection, name: str, states, poll) -> dict:
    """The job once it is in one of ``states``."""
    return poll.until(
        lambda: (j := collection.get(name=name).execute())["state"] in states and j,
        120,
        f"{name} to reach {states}",
    )


def tuning(vertex, hp_package, tmp_path, trials: int = 2) -> dict:
    body = tuning_job(hp_package, tmp_path, [X, UNITS], maxTrialCount=trials, parallelTrialCount=1)
    return jobs(vertex).create(parent=PARENT, body=body).execute()


def cancelled(collection, job: dict, poll) -> dict:
    """Cancel ``job`` and return it once it has ended."""
    collection.cancel(name=job["name"], body={}).execute()
    return state_of(collection, job["name"], FINAL, poll)


# --- hyperparameterTuningJobs ------------------------------------------------------------


def test_a_tuning_job_made_to_fail_runs_no_trial(emulator, vertex, poll, hp_package, tmp_path):
    faults.fail_next_job(
        emulator.vertex_url, "no quota (injected)", kind="hyperparameterTuningJobs"
    )
    job = tuning(vertex, hp_package, tmp_path)
    ended = state_of(jobs(vertex), job["name"], FINAL, poll)
    assert ended["state"] == "JOB_STATE_FAILED" and "trials" not in ended
    assert ended["error"] == {"code": 3, "message": "no quota (injected)"}


def test_a_delayed_tuning_job_waits_pending(emulator, vertex, poll, hp_package, tmp_path):
    faults.delay_job_state(
        emulator.vertex_url, "JOB_STATE_RUNNING", HELD, kind="hyperparameterTuningJobs"
    )
    job = tuning(vertex, hp_package, tmp_path)
    assert jobs(vertex).get(name=job["name"]).execute()["state"] == "JOB_STATE_PENDING"
    ended = cancelled(jobs(vertex), job, poll)
    assert ended["state"] == "JOB_STATE_CANCELLED" and "trials" not in ended


def test_a_hanging_tuning_job_runs_until_cancelled(emulator, vertex, poll, hp_package, tmp_path):
    faults.hang_next_job(emulator.vertex_url, kind="hyperparameterTuningJobs")
    job = tuning(vertex, hp_package, tmp_path)
    running = state_of(jobs(vertex), job["name"], ("JOB_STATE_RUNNING",), poll)
    assert "trials" not in running
    assert cancelled(jobs(vertex), job, poll)["state"] == "JOB_STATE_CANCELLED"


def test_one_trial_made_to_fail(emulator, vertex, poll, hp_package, tmp_path):
    faults.fail_next_job(emulator.vertex_url, "trial two broke", kind="trials", trial=2)
    job = tuning(vertex, hp_package, tmp_path, trials=3)
    ended = state_of(jobs(vertex), job["name"], FINAL, poll)
    assert ended["state"] == "JOB_STATE_SUCCEEDED"
    states = {t["id"]: (t["state"], t.get("infeasibleReason")) for t in ended["trials"]}
    assert states == {
        "1": ("SUCCEEDED", None),
        "2": ("INFEASIBLE", "trial two broke"),
        "3": ("SUCCEEDED", None),
    }


def test_a_delayed_trial_holds_its_job_pending(emulator, vertex, poll, hp_package, tmp_path):
    faults.delay_job_state(emulator.vertex_url, "JOB_STATE_RUNNING", HELD, kind="trials")
    job = tuning(vertex, hp_package, tmp_path)

    def first_trial():
        return (jobs(vertex).get(name=job["name"]).execute().get("trials") or [None])[0]

    trial = poll.until(first_trial, what="the first trial")
    custom = vertex.projects().locations().customJobs().get(name=trial["customJob"]).execute()
    assert custom["state"] == "JOB_STATE_PENDING"
    ended = cancelled(jobs(vertex), job, poll)
    assert ended["state"] == "JOB_STATE_CANCELLED"
    assert [t["state"] for t in ended["trials"]] == ["INFEASIBLE"]


def test_a_fault_without_kind_is_a_custom_jobs_not_a_trials(
    emulator, vertex, poll, hp_package, fake_package, tmp_path
):
    faults.fail_next_job(emulator.vertex_url, "for the custom job")
    job = tuning(vertex, hp_package, tmp_path, trials=1)
    assert state_of(jobs(vertex), job["name"], FINAL, poll)["state"] == "JOB_STATE_SUCCEEDED"
    assert [f["kind"] for f in faults.pending(emulator.vertex_url)] == ["customJobs"]
    custom = create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))
    ended = poll.job(custom["name"])
    assert ended["state"] == "JOB_STATE_FAILED"
    assert ended["error"]["message"] == "for the custom job"


# --- batchPredictionJobs -----------------------------------------------------------------


def batch(vertex, model: str) -> dict:
    uris = [f"gs://{BUCKET}/faults/instances.jsonl"]
    return batches(vertex).create(parent=PARENT, body=batch_body(model, uris)).execute()


def test_a_batch_job_made_to_fail(emulator, vertex, poll, model):
    faults.fail_next_job(emulator.vertex_url, "disk full (injected)", kind="batchPredictionJobs")
    ended = state_of(batches(vertex), batch(vertex, model)["name"], FINAL, poll)
    assert ended["state"] == "JOB_STATE_FAILED"
    assert ended["error"] == {"code": 3, "message": "disk full (injected)"}


def test_a_delayed_batch_job_waits_pending(emulator, vertex, poll, model):
    faults.delay_job_state(
        emulator.vertex_url, "JOB_STATE_RUNNING", HELD, kind="batchPredictionJobs"
    )
    job = batch(vertex, model)
    assert batches(vertex).get(name=job["name"]).execute()["state"] == "JOB_STATE_PENDING"
    assert cancelled(batches(vertex), job, poll)["state"] == "JOB_STATE_CANCELLED"


def test_a_hanging_batch_job_runs_until_cancelled(emulator, vertex, poll, model):
    faults.hang_next_job(emulator.vertex_url, kind="batchPredictionJobs")
    job = batch(vertex, model)
    state_of(batches(vertex), job["name"], ("JOB_STATE_RUNNING",), poll)
    ended = cancelled(batches(vertex), job, poll)
    assert ended["state"] == "JOB_STATE_CANCELLED"
    assert ended["completionStats"]["successfulCount"] == "0"


# --- customJobs ----------------------------------------------------------------------------


def test_a_hanging_custom_job_runs_nothing_until_cancelled(
    emulator, vertex, poll, fake_package, tmp_path
):
    faults.hang_next_job(emulator.vertex_url)
    job = create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))
    poll.job(job["name"], states=("JOB_STATE_RUNNING",), timeout=60)
    customs = vertex.projects().locations().customJobs()
    assert cancelled(customs, job, poll)["state"] == "JOB_STATE_CANCELLED"
    assert list(tmp_path.iterdir()) == []  # its module never ran
    assert "workerpool0-0" not in faults.job_logs(emulator.vertex_url, job["name"])


def test_a_hanging_custom_job_ends_at_its_timeout(emulator, vertex, poll, fake_package, tmp_path):
    faults.hang_next_job(emulator.vertex_url)
    body = fake_job(fake_package, "report", [str(tmp_path)])
    body["jobSpec"]["scheduling"] = {"timeout": "1s"}
    ended = poll.job(create(vertex, body)["name"], timeout=60)
    assert ended["state"] == "JOB_STATE_FAILED" and ended["error"]["code"] == 4  # DEADLINE
    assert "scheduling.timeout (1s)" in ended["error"]["message"]
