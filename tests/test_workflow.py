"""``python -m ci workflow-plan``: train-and-deploy's inputs checked, its decisions made."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from ci import cli, workflow
from ci.errors import UsageError
from ci.tiers import TIER_NAMES
from tests.workflows_act import WORKFLOWS

ROOT = WORKFLOWS.parent.parent

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
        ({"train-steps": "0"}, "from input 'train-steps': bad value '0'"),
        ({"train-steps": "many"}, "from input 'train-steps': expected a whole number, not 'many'"),
        ({"project": "a b"}, "from input 'project': bad value 'a b' (a project id"),
        ({"bucket": "gs://b"}, "from input 'bucket': bad value 'gs://b' (a bucket name"),
        ({"region": "moon/1"}, "from input 'region': bad value 'moon/1' (a region"),
        ({"pr-comment": "maybe"}, "input 'pr-comment': 'maybe' is not true or false"),
        ({"tune": "yes"}, "input 'tune': 'yes' is not true or false"),
        ({"plaform": "local"}, "unknown workflow input 'plaform'"),
        ({"bucket": "a\nb"}, "input 'bucket' spans several lines"),
    ],
)
def test_bad_inputs_are_refused_by_name(inputs, message):
    with pytest.raises(UsageError) as info:
        workflow.plan(inputs, PUSH)
    assert message in str(info.value)


TINY_STUDY = """
metric = "accuracy"
max_trial_count = 2
parallel_trial_count = 2
train_steps = 20
[parameters.learning-rate]
type = "DISCRETE"
values = [0.01, 0.1]
"""


GATE = '[metrics.accuracy]\ndirection = "higher"\nlower_bound = 0.8\n'


def caller_repo(root, files=None):
    """A caller's checkout: a gate config and a trainer package at the top, plus ``files``."""
    for rel, text in {"gate.toml": GATE, "setup.py": "", **(files or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_tune_is_off_by_default_and_reads_no_file(tmp_path):
    caller_repo(tmp_path)
    decided = workflow.plan({"tune": False, "tuning-config": "absent.toml"}, PUSH, tmp_path)
    assert decided.outputs()["tune"] == "false" and decided.outputs()["tuning_config"] == ""
    assert "| tuning | no |" in decided.summary()


@pytest.mark.parametrize("tune", [True, "true", " true "])
def test_tune_on_checks_the_study_and_hands_its_path_on(tmp_path, tune):
    caller_repo(tmp_path, {"studies/tiny.toml": TINY_STUDY})
    inputs = {"tune": tune, "tuning-config": "studies/tiny.toml"}
    decided = workflow.plan(inputs, PUSH, tmp_path)
    assert decided.outputs()["tune"] == "true"
    assert decided.outputs()["tuning_config"] == "studies/tiny.toml"
    assert "studies/tiny.toml" in decided.summary()


def test_tune_defaults_to_the_repositorys_tuning_toml():
    decided = workflow.plan({"tune": True, "tuning-config": ""}, PUSH, ROOT)
    assert decided.outputs()["tuning_config"] == "tuning.toml"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("missing.toml", "input 'tuning-config': 'missing.toml' is not a file of the repository"),
        ("/etc/passwd", "input 'tuning-config': '/etc/passwd' is not a path inside"),
        ("../x.toml", "input 'tuning-config': '../x.toml' is not a path inside"),
        ("bad.toml", "bad.toml: parallel_trial_count"),  # the study's own check, by key
    ],
)
def test_tune_refuses_a_missing_or_bad_study_by_name(tmp_path, config, message):
    caller_repo(tmp_path)
    (tmp_path / "bad.toml").write_text(
        TINY_STUDY.replace("parallel_trial_count = 2", "parallel_trial_count = 3")
    )
    with pytest.raises(UsageError, match=message):
        workflow.plan({"tune": "true", "tuning-config": config}, PUSH, tmp_path)


def test_an_adopters_layout_passes_the_file_checks(tmp_path):
    # A hatchling trainer in a subdirectory, thresholds in another folder.
    root = caller_repo(tmp_path, {"ml/pyproject.toml": "", "config/thresholds.toml": GATE})
    (root / "gate.toml").unlink()
    (root / "setup.py").unlink()
    inputs = {"package-dir": "ml", "gate-config": "config/thresholds.toml"}
    assert workflow.plan(inputs, PUSH, root).platform == "local"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "input 'gate-config': 'gate.toml' is not a file of the repository"),
        ({"gate-config": "gates/none.toml"}, "'gates/none.toml' is not a file of the repository"),
        ({"gate-config": "../gate.toml"}, "'../gate.toml' is not a path inside the repository"),
        ({"gate-config": "/etc/passwd"}, "'/etc/passwd' is not a path inside the repository"),
        ({"gate-config": "empty.toml"}, "gate config '.*empty.toml' sets no thresholds"),
        ({"gate-config": "typo.toml"}, "unknown key 'lower' for metric 'accuracy'"),
        ({"package-dir": "src"}, "input 'package-dir': 'src' is not a directory of the repo"),
        ({"package-dir": "$(id)"}, "input 'package-dir': '\\$\\(id\\)' is not a directory"),
        ({"package-dir": "data"}, "input 'package-dir': 'data' holds no pyproject.toml or setup"),
        ({"package-dir": "../other"}, "'../other' is not a path inside the repository"),
        ({"gate-config": "g\0.toml"}, "input 'gate-config': 'g\\\\x00.toml' is not a file"),
    ],
)
def test_the_callers_files_are_checked_before_anything_trains(tmp_path, inputs, message):
    files = {
        "empty.toml": "",
        "typo.toml": "[metrics.accuracy]\nlower = 0.8\n",
        "data/train.csv": "x\n",
    }
    root = caller_repo(tmp_path, files)
    if "gate-config" not in inputs:
        (root / "gate.toml").unlink()
    inputs = {"package-dir": ".", **inputs} if "package-dir" in inputs else inputs
    if "package-dir" in inputs:
        (root / "gate.toml").write_text(GATE)
    with pytest.raises(UsageError, match=message):
        workflow.plan(inputs, PUSH, root)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"workload-identity-provider": "my-provider"}, "input 'workload-identity-provider': "),
        ({"service-account": "deployer"}, "input 'service-account': 'deployer' is not like "),
        ({"service-account": "a b@x.com"}, "input 'service-account': 'a b@x.com' is not like "),
    ],
)
def test_the_google_identity_inputs_are_checked_by_shape(inputs, message):
    with pytest.raises(UsageError) as info:
        workflow.plan({**VERTEX, **inputs}, PUSH)
    assert message in str(info.value)


def test_a_very_long_value_is_cut_in_the_one_line_error(tmp_path):
    caller_repo(tmp_path)
    with pytest.raises(UsageError) as info:
        workflow.plan({"package-dir": "x" * 5000}, PUSH, tmp_path)
    assert len(str(info.value)) < 200 and "\n" not in str(info.value)


def test_ci_yml_hands_its_dispatch_inputs_to_train_and_deploy():
    ci = YAML(typ="safe").load((WORKFLOWS / "ci.yml").read_text())
    dispatch = ci["on"]["workflow_dispatch"]["inputs"]
    assert dispatch["tune"]["default"] is False
    assert dispatch["tuning-config"]["default"] == workflow_inputs()["tuning-config"]["default"]
    passed = ci["jobs"]["deploy"]["with"]
    assert set(dispatch) <= set(passed) <= set(workflow.INPUTS)


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


def test_validation_takes_the_settings_inputs_as_train_and_deploy_does():
    # An adopter with no ci.toml passes the same values to both workflows.
    path = WORKFLOWS / "validation.yml"
    validation = YAML(typ="safe").load(path.read_text())["on"]["workflow_call"]["inputs"]
    deploy = workflow_inputs()
    shared = {"package-dir", "trainer-module", "data-dir", "train-file", "eval-file"}
    assert shared | {"instances-file", "python-version"} <= set(validation) & set(deploy)
    for name in set(validation) & set(deploy):
        assert (validation[name]["type"], validation[name].get("default")) == (
            deploy[name]["type"],
            deploy[name].get("default"),
        ), name
