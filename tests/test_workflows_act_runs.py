"""The workflows run for real under act, each run in a sandbox of its own: pull requests
(validation and the local rehearsal, the comment), a tuning dispatch, and platform vertex
against the session's emulator. The runs that share one sandbox are test_workflows_act.py.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.github_stub import GitHubStub
from tests.merge_path import run_ci
from tests.workflows_act import (
    DEPLOY_JOBS,
    NARROW_TESTS,
    REHEARSAL_INPUTS,
    ROOT,
    SLUG,
    TRAIN,
    Sandbox,
    caller,
    job_records,
    jobs_succeeded,
    pull_request,
    serving,
    shown_outputs,
)

pytestmark = pytest.mark.act


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    """One act cache (actions, the runner's tool cache) for the runs of this file, as a
    runner image keeps its own between runs."""
    return tmp_path_factory.mktemp("act-tool-cache")


def test_pull_request_runs_validation_and_the_local_rehearsal(tmp_path, tools):
    box = Sandbox(tmp_path, tools)
    repo = box.create_repo(SLUG, source=ROOT)
    sha = box.commit(repo, "a change under review")
    payload = pull_request(sha, "someone/fork")
    run = box.run(repo, "pull_request", payload, variables=NARROW_TESTS)
    assert run.rc == 0, run.log[-6000:]
    assert run.job_succeeded_like("validation/validation/lint, tests, local train and predict")
    # The plan makes every pull request a local rehearsal: no credentials anywhere.
    assert jobs_succeeded(run, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    assert "platform: local" in run.output_of("deploy/train-and-deploy/plan")
    assert "Authenticate to Google Cloud" not in run.steps_run()
    export = run.artifact("validation")
    assert (export / "local-job" / "model" / "saved_model.pb").is_file()
    assert json.loads((export / "local-job" / "metrics.json").read_text())["accuracy"] >= 0.9
    assert "<testsuite" in (export / "reports" / "junit.xml").read_text()
    # The report: the job summary shows the gate's table once and the training curve as an
    # inline chart (the trainer writes TensorBoard event files); plots and page in the artifact.
    summary = run.summary_of(f"deploy/train-and-deploy/{TRAIN}")
    assert summary.count("| accuracy |") == 1, summary
    report = run.artifact("report")
    text = (report / "report.md").read_text()
    assert "| accuracy |" in text
    assert "(no event files)" not in text
    assert "```mermaid" in summary and "xychart-beta" in summary, summary
    assert (report / "index.html").is_file()
    assert {p.name for p in report.glob("*.png")} >= {
        "training_curves.png",
        "confusion_matrix.png",
        "comparison.png",
    }
    # A fork's token cannot comment: the comment job never starts, the plan says why.
    assert not run.job_ran_like("deploy/train-and-deploy/comment")
    assert "read-only token" in run.summary_of("deploy/train-and-deploy/plan")
    # A fork's pull request: no cloud, and nothing of it reaches main's cache; the version
    # it promoted serves in the local cloud cached for the pull request's own ref.
    assert box.latest_cache("local-cloud-") is None
    (entry,) = [p for p in (box.cache_store / SLUG).rglob("local-cloud-*") if p.is_dir()]
    assert serving(entry)[0]["aliases"] == ["default"]


def test_a_pull_request_gets_one_comment_edited_on_every_run(tmp_path, tools):
    box = Sandbox(tmp_path, tools)
    shown = caller("pull_request", "rehearsal", REHEARSAL_INPUTS, show=True)
    repo = box.create_repo(SLUG, source=ROOT, files={".github/workflows/pr.yml": shown})
    with GitHubStub() as github:
        runs = []
        for change in ("first push to the branch", "second push to the branch"):
            sha = box.commit(repo, change)
            runs.append(
                box.run(
                    repo,
                    "pull_request",
                    pull_request(sha, SLUG),
                    workflow=".github/workflows/pr.yml",
                    secrets={"GITHUB_TOKEN": "same-repo-token"},
                    env={"GITHUB_API_URL": github.url},
                )
            )
        for number, run in enumerate(runs, 1):
            assert run.rc == 0, run.log[-6000:]
            assert run.job_succeeded_like("rehearsal/train-and-deploy/comment")
            # The local job's outputs are the workflow's, as the vertex jobs' are.
            out = shown_outputs(run, "pr.yml")
            assert (out["platform"], out["gate-decision"]) == ("local", "yes")
            assert out["model-version"] == str(number)  # the second run gated against the first
            assert out["job-name"].startswith("projects/local-project/locations/")
        writes = github.writes()
    assert [w.method for w in writes] == ["POST", "PATCH"]
    created, edited = writes
    assert created.path == f"/repos/{SLUG}/issues/7/comments"
    comment_id = github.comments[(SLUG, 7)][0]["id"]
    assert edited.path == f"/repos/{SLUG}/issues/comments/{comment_id}"
    assert len(github.comments[(SLUG, 7)]) == 1
    assert "| accuracy |" in edited.body["body"]
    assert {w.headers.get("Authorization") for w in writes} == {"Bearer same-repo-token"}


TINY_STUDY = """\
metric = "accuracy"
algorithm = "GRID_SEARCH"
max_trial_count = 2
parallel_trial_count = 2
train_steps = 200
[parameters.learning-rate]
type = "DISCRETE"
values = [0.03, 0.1]
"""
# Unseeded trials: the gate checks that the trial reported, not how well 200 steps learned.
ANY_ACCURACY = '[metrics.accuracy]\ndirection = "higher"\nlower_bound = 0.0\n'


def test_a_dispatch_with_tune_promotes_the_best_trial(tmp_path, tools):
    box = Sandbox(tmp_path, tools)
    files = {"studies/tiny.toml": TINY_STUDY, "gate.toml": ANY_ACCURACY}
    repo = box.create_repo(SLUG, source=ROOT, files=files)
    inputs = {"tune": "true", "tuning-config": "studies/tiny.toml", "scale-tier": "BASIC"}
    run = box.run(repo, "workflow_dispatch", {"inputs": inputs}, inputs=inputs)
    assert run.rc == 0, run.log[-6000:]
    assert jobs_succeeded(run, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    printed = run.output_of(f"deploy/train-and-deploy/{TRAIN}")
    tuning = re.search(r"submitted \S+/hyperparameterTuningJobs/(\d+) \(2 trials, 2 at a", printed)
    best = re.search(r"best trial (\d+): (\S+/customJobs/(\d+))", printed)
    assert tuning and best, printed
    trial_job = next(j for j in job_records(run.artifact("local-cloud")) if j["name"] == best[2])
    assert trial_job["state"] == "JOB_STATE_SUCCEEDED"
    (version,) = serving(box.latest_cache("local-cloud-"))
    assert version["aliases"] == ["default"]
    labels = version["labels"]
    assert (labels["tuning-job"], labels["tuning-trial"]) == (tuning[1], best[1])
    assert labels["job-id"] == best[3]  # the best trial's export is what serves


# Platform vertex, as a push with a project deploys: Vertex AI is the session's emulator
# (an http:// api_endpoint and storage_endpoint, reached without credentials), so the two
# jobs an approval may separate, and their hand-over, run for real.
VERTEX = caller(
    "push",
    "deploy",
    {
        "project": "acme-project",
        "bucket": "acme-models",
        "workload-identity-provider": (
            "projects/123456789/locations/global/workloadIdentityPools/github/providers/acme"
        ),
        "service-account": "deployer@acme-project.iam.gserviceaccount.com",
        "train-steps": "200",
    },
    show=True,
)


def test_a_push_with_a_project_trains_then_promotes_in_two_jobs_on_vertex(
    tmp_path, emulator, tools
):
    from ci import clients

    clients.storage("acme-project", emulator.storage_host).create_bucket("acme-models")
    box = Sandbox(tmp_path, tools)
    repo = box.create_repo(SLUG, source=ROOT, files={".github/workflows/deploy.yml": VERTEX})
    sha = box.commit(repo, "push to main")
    payload = {"ref": "refs/heads/main", "after": sha, "repository": {"default_branch": "main"}}
    cloud = {"CI_API_ENDPOINT": emulator.vertex_url, "CI_STORAGE_ENDPOINT": emulator.storage_host}
    run = box.run(repo, "push", payload, workflow=".github/workflows/deploy.yml", env=cloud)
    assert run.rc == 0, run.log[-6000:]
    assert "platform: vertex" in run.output_of("deploy/train-and-deploy/plan")
    assert run.job_succeeded_like("deploy/train-and-deploy/train and gate")
    assert run.job_succeeded_like("deploy/train-and-deploy/promote")
    assert not run.job_ran_like("deploy/train-and-deploy/local")
    assert "Authenticate to Google Cloud" in run.steps_run()  # both jobs; the stand-in's file
    out = shown_outputs(run, "deploy.yml")
    assert (out["platform"], out["gate-decision"], out["model-version"]) == ("vertex", "yes", "1")
    assert out["job-name"].startswith("projects/acme-project/locations/us-central1/customJobs/")
    assert json.loads(out["metrics"])["accuracy"] >= 0.5
    env = {"CI_PROJECT": "acme-project", **cloud, "CI_STATE_DIR": str(tmp_path / "unused")}
    listed = run_ci(["versions", "--json"], env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    (version,) = json.loads(listed.stdout)
    assert version["traffic_percent"] == 100 and version["aliases"] == ["default"]
    assert version["labels"]["job-id"] == out["job-name"].rsplit("/", 1)[-1]
    assert (run.artifact("report") / "report.md").is_file()
