"""``python -m ci workflow-plan``: train-and-deploy's inputs checked, its decisions made."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from ci import cli, workflow
from ci.errors import UsageError
from ci.tiers import TIER_NAMES
from tests.workflows_act import WORKFLOWS

REPO = "acme/models"
PUSH = workflow.Event("push", REPO, "refs/heads/main")
SAME_REPO_PR = workflow.Event("pull_request", REPO, "refs/pull/7/merge", REPO)
FORK_PR = workflow.Event("pull_request", REPO, "refs/pull/8/merge", "someone/fork")
VERTEX = {
    "project": "my-project",
    "bucket": "my-bucket",
    "workload-identity-provider": "projects/1/locations/global/workloadIdentityPools/g/providers/p",
    "service-account": "deployer@my-project.iam.gserviceaccount.com",
}


def workflow_inputs() -> dict:
    path = WORKFLOWS / "train-and-deploy.yml"
    return YAML(typ="safe").load(path.read_text())["on"]["workflow_call"]["inputs"]


def test_the_plan_knows_exactly_the_workflows_inputs():
    assert set(workflow.INPUTS) == set(workflow_inputs())


def test_the_workflows_defaults_make_a_local_plan():
    defaults = {name: spec.get("default") for name, spec in workflow_inputs().items()}
    decided = workflow.plan(defaults, PUSH)
    assert (decided.platform, decided.project, decided.environment) == ("local", "", "")
    assert decided.pr_comment is False


def test_a_project_means_vertex_on_push_with_its_approval_environment():
    decided = workflow.plan({**VERTEX, "environment": "production", "model-name": "iris"}, PUSH)
    assert decided.platform == "vertex"
    assert decided.project == "my-project"
    assert decided.environment == "production"
    assert decided.promote_group == "promote-my-project-iris"
    assert decided.outputs()["pr_comment"] == "false"


def test_a_pull_request_rehearses_locally_and_comments():
    decided = workflow.plan({**VERTEX, "environment": "production"}, SAME_REPO_PR)
    assert (decided.platform, decided.project, decided.environment) == ("local", "", "")
    assert decided.pr_comment is True
    # The local cloud is cached per branch: promotions queue per repository and ref.
    assert decided.promote_group == f"promote-local-{REPO}-refs/pull/7/merge-"


def test_a_forks_pull_request_gets_no_comment_and_a_notice():
    decided = workflow.plan({}, FORK_PR)
    assert decided.platform == "local"
    assert decided.pr_comment is False
    assert "fork" in decided.summary() and "read-only token" in decided.summary()
    assert workflow.plan({"pr-comment": False}, SAME_REPO_PR).pr_comment is False


def test_explicit_vertex_on_a_forks_pull_request_says_the_jobs_are_skipped():
    decided = workflow.plan({**VERTEX, "platform": "vertex"}, FORK_PR)
    assert decided.platform == "vertex"
    assert any("never reaches the cloud" in n for n in decided.notes)


@pytest.mark.parametrize("missing", workflow.VERTEX_NEEDS)
def test_vertex_names_each_missing_input(missing):
    inputs = {**VERTEX, "platform": "vertex", missing: ""}
    with pytest.raises(UsageError, match=f"needs the inputs {missing}$"):
        workflow.plan(inputs, PUSH)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"platform": "gcp"}, "input 'platform': 'gcp'"),
        ({"scale-tier": "BASIC_XL"}, "input 'scale-tier': 'BASIC_XL'"),
        ({"train-steps": "0"}, "input 'train-steps': '0'"),
        ({"train-steps": "many"}, "input 'train-steps': 'many'"),
        ({"pr-comment": "maybe"}, "input 'pr-comment'"),
        ({"plaform": "local"}, "unknown workflow input 'plaform'"),
        ({"bucket": "a\nb"}, "input 'bucket' spans several lines"),
    ],
)
def test_bad_inputs_are_refused_by_name(inputs, message):
    with pytest.raises(UsageError, match=message):
        workflow.plan(inputs, PUSH)


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_every_tier_of_the_code_is_accepted(tier):
    assert workflow.plan({"scale-tier": tier, "train-steps": 900}, PUSH).platform == "local"


def test_main_writes_outputs_and_summary_from_the_environment(tmp_path, monkeypatch, capsys):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"repo": {"full_name": "x/fork"}}}}))
    for key, value in {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_REF": "refs/pull/9/merge",
        "CI_WORKFLOW_INPUTS": json.dumps({**VERTEX, "pr-comment": True, "train-steps": ""}),
    }.items():
        monkeypatch.setenv(key, value)
    out, summary = tmp_path / "out", tmp_path / "summary.md"
    assert cli.main(["workflow-plan", "--outputs", str(out), "--summary", str(summary)]) == 0
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert lines["platform"] == "local"
    assert lines["pr_comment"] == "false"
    assert "::notice::No pull request comment" in capsys.readouterr().out
    assert "### Plan" in summary.read_text()


def test_main_refuses_inputs_that_are_not_a_json_object(capsys):
    assert cli.main(["workflow-plan", "--inputs-json", "[1]"]) == 2
    assert capsys.readouterr().err == "Error: workflow inputs must be a JSON object\n"
    assert cli.main(["workflow-plan", "--inputs-json", "{"]) == 2
    assert capsys.readouterr().err.startswith("Error: workflow inputs are not JSON")
