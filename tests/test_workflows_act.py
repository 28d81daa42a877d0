"""The workflows run for real under act, on this host, against the embedded local cloud.

One sandbox ("GitHub": repositories, artifact and cache stores) holds this repository; the
push, dispatch and gate tests share it, so the champion a push deploys is what the later
runs gate against, as on GitHub where the local cloud is kept in the Actions cache.
"""

from __future__ import annotations

import json
import re

import pytest

from tests import workflows_second_repo as second
from tests.github_stub import GitHubStub
from tests.merge_path import run_ci
from tests.workflows_act import ROOT, SLUG, Sandbox, ci_json, job_records

pytestmark = pytest.mark.act

# The validation's tests session inside act runs this file only: the whole suite already
# runs outside, and the act tests must not run themselves recursively.
NARROW_TESTS = {"PYTEST_ADDOPTS": '-m "not act" tests/test_workflows_lint.py'}
# On the local platform the merge path is one job (`ci pipeline`): nothing waits for approval.
TRAIN = "train, gate and promote (local)"
DEPLOY_JOBS = ("plan", TRAIN)
# A job that prints the called workflow's outputs (the caller's job named CALLER).
SHOW = """\
  show:
    needs: CALLER
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions: {}
    steps:
      - env:
          OUT: ${{ toJSON(needs.CALLER.outputs) }}
        run: echo "outputs $OUT"
"""


def shown_outputs(run, workflow: str) -> dict:
    """The outputs the SHOW job of ``workflow`` (its file name) printed."""
    return json.loads(run.output_of(f"{workflow}/show").split("outputs ", 1)[1])


# A minimal caller of the reusable workflow alone, for the pull request comment runs.
REHEARSE = """\
on: pull_request
permissions: {}
jobs:
  rehearsal:
    uses: ./.github/workflows/train-and-deploy.yml
    permissions: {contents: read, id-token: write, pull-requests: write}
    with: {train-steps: "200"}
"""


def pull_request(sha: str, head_repo: str, number: int = 7) -> dict:
    """A ``pull_request`` event payload from ``head_repo`` into this repository's main."""
    return {
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": "feature", "sha": sha, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": SLUG}},
        },
    }


def jobs_succeeded(run, prefix: str) -> dict:
    """``{job: succeeded?}`` for the train-and-deploy jobs called as ``prefix``."""
    return {job: run.job_succeeded_like(f"{prefix}/train-and-deploy/{job}") for job in DEPLOY_JOBS}


def serving(state_dir, cwd=ROOT) -> list[dict]:
    """Versions that hold traffic, with their aliases (``python -m ci versions --json``)."""
    rows = ci_json(state_dir, "versions", cwd=cwd)
    return [r for r in rows if r["traffic_percent"]]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(tmp_path_factory.mktemp("act-github"))


@pytest.fixture(scope="module")
def repo(sandbox):
    return sandbox.create_repo(SLUG, source=ROOT)


@pytest.fixture(scope="module")
def pushed(sandbox, repo):
    """A push to main with no cloud variables: validation, then the local train-and-deploy."""
    sha = sandbox.commit(repo, "push to main")
    payload = {"ref": "refs/heads/main", "after": sha, "repository": {"default_branch": "main"}}
    return sandbox.run(repo, "push", payload, variables=NARROW_TESTS)


def test_pull_request_runs_validation_and_the_local_rehearsal(tmp_path):
    box = Sandbox(tmp_path)
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


def test_a_pull_request_gets_one_comment_edited_on_every_run(tmp_path):
    box = Sandbox(tmp_path)
    caller = REHEARSE + SHOW.replace("CALLER", "rehearsal")
    repo = box.create_repo(SLUG, source=ROOT, files={".github/workflows/pr.yml": caller})
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


def test_push_to_main_without_cloud_variables_deploys_locally(pushed, sandbox):
    assert pushed.rc == 0, pushed.log[-6000:]
    assert pushed.job_succeeded_like("validation/validation/")
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


def test_a_dispatch_with_tune_promotes_the_best_trial(tmp_path):
    box = Sandbox(tmp_path)
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


# Platform vertex, as a push with a project deploys: Vertex AI is the session's emulator
# (an http:// api_endpoint and storage_endpoint, reached without credentials), so the two
# jobs an approval may separate, and their hand-over, run for real.
VERTEX = """\
on: push
permissions: {}
jobs:
  deploy:
    uses: ./.github/workflows/train-and-deploy.yml
    permissions: {contents: read, id-token: write, pull-requests: write}
    with:
      project: acme-project
      bucket: acme-models
      workload-identity-provider: >-
        projects/123456789/locations/global/workloadIdentityPools/github/providers/acme
      service-account: deployer@acme-project.iam.gserviceaccount.com
      train-steps: "200"
""" + SHOW.replace("CALLER", "deploy")


def test_a_push_with_a_project_trains_then_promotes_in_two_jobs_on_vertex(tmp_path, emulator):
    from ci import clients

    clients.storage("acme-project", emulator.storage_host).create_bucket("acme-models")
    box = Sandbox(tmp_path)
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


def test_a_second_repository_calls_the_reusable_workflow(sandbox, repo):
    sha = sandbox.commit(repo, "release the workflows")
    other = sandbox.create_repo(second.SLUG, files=second.files(SLUG, sha))
    payload = {"ref": "refs/heads/main", "repository": {"default_branch": "main"}}
    run = sandbox.run(
        other,
        "push",
        payload,
        workflow=".github/workflows/deploy.yml",
        reusable={f"{SLUG}@{sha}": repo},
    )
    assert run.rc == 0, run.log[-6000:]
    assert jobs_succeeded(run, "deploy") == dict.fromkeys(DEPLOY_JOBS, True)
    assert f"checked out {SLUG}@{sha} into .ci-tooling" in run.log
    state = sandbox.latest_cache("local-cloud-", slug=second.SLUG)
    (version,) = serving(state, cwd=other)
    assert version["traffic_percent"] == 100
    assert "parcels" in json.dumps(ci_json(state, "versions", cwd=other))
    assert sandbox.latest_cache("local-cloud-") != state  # caches stay per repository
