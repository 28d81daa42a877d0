"""The workflows run for real under act: pushes to main and manual runs in one sandbox.

One sandbox ("GitHub": repositories, artifact and cache stores) holds this repository; the
push, dispatch and gate tests share it, so the champion a push deploys is what the later
runs gate against, as on GitHub where the local cloud is kept in the Actions cache. Runs
that need a sandbox of their own are in test_workflows_act_runs.py (another file: the
tests session gives each file a worker).
"""

from __future__ import annotations

import json

import pytest

from tests import workflows_second_repo as second
from tests.workflows_act import (
    DEPLOY_JOBS,
    ROOT,
    SLUG,
    TRAIN,
    Sandbox,
    caller,
    ci_json,
    job_records,
    jobs_succeeded,
    serving,
    shown_outputs,
)

pytestmark = pytest.mark.act


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(tmp_path_factory.mktemp("act-github"))


# The push calls train-and-deploy as ci.yml's deploy job does with no cloud variables
# (every input ""), without ci.yml's validation job: the pull request's run in
# test_workflows_act_runs.py runs that same job of ci.yml on the same tree.
PUSH = caller("push", "deploy", {"project": "", "bucket": "", "train-steps": ""})


@pytest.fixture(scope="module")
def repo(sandbox):
    return sandbox.create_repo(SLUG, source=ROOT, files={".github/workflows/push.yml": PUSH})


@pytest.fixture(scope="module")
def pushed(sandbox, repo):
    """A push to main with no cloud variables: the local train-and-deploy."""
    sha = sandbox.commit(repo, "push to main")
    payload = {"ref": "refs/heads/main", "after": sha, "repository": {"default_branch": "main"}}
    return sandbox.run(repo, "push", payload, workflow=".github/workflows/push.yml")


def test_push_to_main_without_cloud_variables_deploys_locally(pushed, sandbox):
    assert pushed.rc == 0, pushed.log[-6000:]
    assert jobs_succeeded(pushed, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    assert "Authenticate to Google Cloud" not in pushed.steps_run()
    gate = pushed.output_of(f"deploy/train-and-deploy/{TRAIN}")
    assert "### Evaluation gate: yes" in gate
    assert "| accuracy |" in gate  # the candidate-against-champion table
    state = sandbox.latest_cache("local-cloud-")
    assert state is not None, "the local cloud was not kept for the next run"
    (version,) = serving(state)
    assert version["traffic_percent"] == 100
    assert "default" in version["aliases"]


def test_dispatch_inputs_reach_the_job_and_a_gate_that_says_no_stops_it(pushed, sandbox, repo):
    assert pushed.rc == 0
    before_entry = sandbox.latest_cache("local-cloud-")
    before = ci_json(before_entry, "versions")
    # One step on BASIC_GPU: the inputs reach the training job, and the gate says no.
    inputs = {"train-steps": "1", "scale-tier": "BASIC_GPU"}
    run = sandbox.run(repo, "workflow_dispatch", {"inputs": inputs}, inputs=inputs)
    assert not run.job_ran_like("validation/")
    job = job_records(run.artifact("local-cloud"))[-1]
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    args = pool["pythonPackageSpec"]["args"]
    assert args[args.index("--train-steps") + 1] == "1"
    assert pool["machineSpec"]["machineType"] == "n1-standard-8"
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4"
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert run.rc != 0
    assert not run.step_succeeded(f"deploy/train-and-deploy/{TRAIN}", "Package, stage, train")
    assert "exit status 3" in run.log  # the gate's "no", not a broken tool
    printed = run.output_of(f"deploy/train-and-deploy/{TRAIN}")
    assert "### Evaluation gate: no" in printed
    assert "serves on" not in printed  # nothing was promoted
    # A rejected candidate still gets its report.
    assert run.step_succeeded(f"deploy/train-and-deploy/{TRAIN}", "Upload the report")
    assert (run.artifact("report") / "report.md").is_file()
    # The state this run worked on, and what the next run will see, keep the same champion.
    assert ci_json(run.artifact("local-cloud"), "versions") == before
    assert sandbox.latest_cache("local-cloud-") == before_entry


@pytest.fixture(scope="module")
def released(sandbox, repo):
    """This repository's commit the second repository's callers pin."""
    return sandbox.commit(repo, "release the workflows")


def push_to(sandbox, other, workflow: str, repo, released):
    """A push to ``other``'s main running ``workflow``, which calls this repository's
    workflows at ``released``."""
    payload = {"ref": "refs/heads/main", "repository": {"default_branch": "main"}}
    return sandbox.run(
        other,
        "push",
        payload,
        workflow=f".github/workflows/{workflow}",
        reusable={f"{SLUG}@{released}": repo},
    )


def test_a_second_repository_calls_the_reusable_workflow(sandbox, repo, released):
    sha = released
    other = sandbox.create_repo(second.SLUG, files=second.files(SLUG, sha))
    run = push_to(sandbox, other, "deploy.yml", repo, sha)
    assert run.rc == 0, run.log[-6000:]
    assert jobs_succeeded(run, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    assert f"checked out {SLUG}@{sha} into .ci-tooling" in run.log
    state = sandbox.latest_cache("local-cloud-", slug=second.SLUG)
    (version,) = serving(state, cwd=other)
    assert version["traffic_percent"] == 100
    assert "parcels" in json.dumps(ci_json(state, "versions", cwd=other))
    assert sandbox.latest_cache("local-cloud-") != state  # caches stay per repository


LAID_OUT = "parcelco/parcel-model-laid-out"


def test_an_adopter_without_ci_toml_validates_and_deploys_a_subdirectory_package(
    sandbox, repo, released
):
    # Hatchling package in ml/, data in datasets/, thresholds in config/, no ci.toml: the
    # settings are inputs of both workflows; a later job reads the documented outputs.
    files = second.laid_out_files(SLUG, released)
    other = sandbox.create_repo(LAID_OUT, files=files)
    run = push_to(sandbox, other, "deploy.yml", repo, released)
    assert run.rc == 0, run.log[-6000:]
    validation = run.output_of("validation/validation/")
    # The caller's own trainer ran (never the tooling's example trainer.task).
    assert "$ python -P -m parcels.task --job-dir" in validation, validation
    assert "--train-file datasets/train.csv" in validation
    # No JUnit report here (its tests session runs no pytest), and the same layout.
    metrics = json.loads((run.artifact("validation") / "local-job" / "metrics.json").read_text())
    assert metrics["train_steps"] == 100
    assert jobs_succeeded(run, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    out = shown_outputs(run, "deploy")  # act names jobs by the workflow's name
    assert set(out) == {"platform", "job-name", "gate-decision", "metrics", "model-version"}
    assert (out["platform"], out["gate-decision"], out["model-version"]) == ("local", "yes", "1")
    assert out["job-name"].startswith("projects/local-project/locations/us-central1/customJobs/")
    assert json.loads(out["metrics"])["train_steps"] == 150
    state = sandbox.latest_cache("local-cloud-", slug=LAID_OUT)
    # With no ci.toml, `ci versions` needs the model's name too.
    (version,) = ci_json(state, "versions", "--model-name", "parcels", cwd=other)
    assert version["traffic_percent"] == 100 and version["aliases"] == ["default"]


def test_an_odd_input_fails_the_plan_with_one_error_line_before_any_job(sandbox, repo, released):
    other = sandbox.server / LAID_OUT
    if not other.is_dir():
        other = sandbox.create_repo(LAID_OUT, files=second.laid_out_files(SLUG, released))
    run = push_to(sandbox, other, "odd.yml", repo, released)
    assert run.rc != 0
    errors = [
        line
        for line in run.output_of("deploy/train-and-deploy/plan").splitlines()
        if line.startswith("Error:")
    ]
    assert errors == [
        "Error: input 'package-dir': 'ml \"$(touch pwned)\"' is not a directory of the repository"
    ], run.log[-4000:]
    assert not run.job_ran_like(f"deploy/train-and-deploy/{TRAIN}")
