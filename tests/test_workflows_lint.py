"""The workflows and local actions pass actionlint, zizmor and GitHub's schemas, and keep the
security rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.workflows_act import ACTIONS, STAND_IN_DIRS, STAND_INS, WORKFLOWS, pinned_actions

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(WORKFLOWS.glob("*.yml"))
# Local composite actions; actionlint reads workflows only, zizmor and the schema take these.
ACTION_FILES = sorted(ACTIONS.glob("*/action.yml"))
SETUP = "./.ci-tooling/.github/actions/setup-tooling"
SHA_PIN = re.compile(r"uses:\s*(\S+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+\s*$")


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (requirements: pyproject.toml group dev)"
    return found


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def test_there_are_the_three_workflows():
    assert {p.name for p in FILES} >= {"validation.yml", "train-and-deploy.yml", "ci.yml"}
    assert ACTIONS / "setup-tooling" / "action.yml" in ACTION_FILES


def local_action(uses: str) -> dict | None:
    """The metadata of a ``./.ci-tooling/.github/actions/NAME`` step (this repository's)."""
    prefix = "./.ci-tooling/.github/actions/"
    return load(ACTIONS / uses[len(prefix) :] / "action.yml") if uses.startswith(prefix) else None


def authenticates(step: dict) -> bool:
    """Whether a step is, or is a local composite action that can run, the Google auth.

    The setup action authenticates only for ``platform: vertex`` (its default is local), so
    a step that passes no platform never requests a token.
    """
    uses = step.get("uses", "")
    action = local_action(uses)
    if action is not None:
        inner = any(authenticates(s) for s in action["runs"]["steps"])
        return inner and "platform" in step.get("with", {})
    return "google-github-actions/auth@" in uses


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    """actionlint with the shellcheck of the dev group, named explicitly: without one it
    would skip checking ``run:`` scripts, and the result would depend on the machine."""
    return run(tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), *map(str, files))


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path):
    unquoted = tmp_path / "unquoted.yml"
    unquoted.write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo $ARGS\n        env:\n          ARGS: a b\n"
    )
    result = actionlint(unquoted)
    assert result.returncode == 1 and "SC2086" in result.stdout, result.stdout + result.stderr


def test_actionlint_finds_nothing():
    result = actionlint(*FILES)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_zizmor_offline_finds_nothing():
    # All of .github: the workflows, the local actions and dependabot.yml.
    result = run(tool("zizmor"), "--offline", "--no-progress", str(ROOT / ".github"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.github-workflows", FILES),
        ("vendor.github-actions", ACTION_FILES),
        ("vendor.dependabot", [ROOT / ".github/dependabot.yml"]),
    ],
    ids=["workflows", "actions", "dependabot"],
)
def test_files_match_githubs_schemas(schema, files):
    result = run(tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


@pytest.mark.parametrize("path", FILES + ACTION_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_remote_actions_are_pinned_by_sha_with_a_version(path):
    for line in path.read_text().splitlines():
        if "uses:" in line and "uses: ./" not in line and "#" not in line.split("uses:")[0]:
            assert SHA_PIN.search(line), f"{path.name}: not pinned by SHA + # vX.Y.Z: {line}"


@pytest.mark.parametrize("path", ACTION_FILES, ids=lambda p: p.parent.name)
def test_local_actions_document_their_inputs(path):
    action = load(path)
    assert action["description"] and action["runs"]["using"] == "composite"
    for name, spec in action.get("inputs", {}).items():
        assert spec.get("description"), f"{name}: no description"
        assert "default" in spec or spec.get("required") is True, f"{name}: no default"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_least_privilege_and_timeouts(path):
    workflow = load(path)
    assert workflow["permissions"] == {}, "no default grants at the top"
    for name, job in workflow["jobs"].items():
        perms = job.get("permissions")
        assert perms is not None, f"{name}: grants are per job"
        if "uses" in job:  # a call: the nested jobs declare and bound their own timeouts
            continue
        assert isinstance(job.get("timeout-minutes"), int), f"{name}: no timeout-minutes"
        auth = any(authenticates(s) for s in job["steps"])
        assert (perms.get("id-token") == "write") == auth, f"{name}: id-token grant"


def test_cloud_jobs_skip_fork_pull_requests():
    jobs = load(WORKFLOWS / "train-and-deploy.yml")["jobs"]
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert same_repo in jobs["train"]["if"]
    assert "needs.plan.outputs.platform == 'vertex'" in jobs["train"]["if"]
    # The local platform's one job never authenticates (no platform input: the default).
    assert jobs["local"]["if"] == "needs.plan.outputs.platform == 'local'"
    assert not any(authenticates(s) for s in jobs["local"]["steps"])

    def upstream(name: str) -> set:
        needs = jobs[name].get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        return set(needs).union(*(upstream(n) for n in needs))

    credentialed = [n for n, job in jobs.items() if job["permissions"].get("id-token")]
    assert set(credentialed) == {"train", "promote"}
    for name, job in jobs.items():
        for step in job["steps"]:
            assert "google-github-actions/auth@" not in step.get("uses", ""), f"{name}: {SETUP}"
            if authenticates(step):  # the platform comes from the plan, never decided here
                assert step["with"]["platform"] == "${{ needs.plan.outputs.platform }}", name
        if name in credentialed:
            assert name == "train" or "train" in upstream(name), f"{name} must wait for train's if"
    # The composite action authenticates for platform vertex only.
    (auth,) = [
        s
        for s in load(ACTIONS / "setup-tooling" / "action.yml")["runs"]["steps"]
        if "google-github-actions/auth@" in s.get("uses", "")
    ]
    assert auth["if"] == "inputs.platform == 'vertex'"


def test_promotion_is_never_cancelled_and_one_at_a_time():
    # The group names the project (or branch) and model: tests/test_workflow.py checks it.
    jobs = load(WORKFLOWS / "train-and-deploy.yml")["jobs"]
    for promoting in (jobs["promote"], jobs["local"]):
        assert promoting["concurrency"]["cancel-in-progress"] is False
        assert promoting["concurrency"]["group"] == "${{ needs.plan.outputs.promote-group }}"
    promote = jobs["promote"]
    assert promote["environment"] == "${{ needs.plan.outputs.environment }}"
    assert "plan" in promote["needs"] and "train" in promote["needs"]


def test_decisions_are_the_plans_not_the_yamls():
    # Platform, approval, concurrency and the comment are decided by `ci workflow-plan`.
    text = (WORKFLOWS / "train-and-deploy.yml").read_text()
    jobs_text = text.split("\njobs:\n", 1)[1]
    for decided in ("inputs.platform", "inputs.environment", "inputs.project"):
        assert decided not in jobs_text, f"{decided}: wire the plan's output instead"
    plan = load(WORKFLOWS / "train-and-deploy.yml")["jobs"]["plan"]
    (step,) = [s for s in plan["steps"] if "workflow-plan" in s.get("run", "")]
    assert step["env"]["CI_WORKFLOW_INPUTS"] == "${{ toJSON(inputs) }}"


def test_only_the_comment_job_writes_to_pull_requests():
    writers = []
    for path in FILES:
        for name, job in load(path)["jobs"].items():
            if "uses" not in job and job["permissions"].get("pull-requests") == "write":
                writers.append(f"{path.name}/{name}")
    assert writers == ["train-and-deploy.yml/comment"]
    comment = load(WORKFLOWS / "train-and-deploy.yml")["jobs"]["comment"]
    assert "needs.plan.outputs.pr-comment == 'true'" in comment["if"]
    assert set(comment["permissions"]) == {"contents", "pull-requests"}
    assert not any(authenticates(s) for s in comment["steps"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_job_reads_in_one_screen(path):
    # Jobs are wiring: checkouts, one setup, a few `python -m ci` lines.
    text = path.read_text().split("\njobs:\n", 1)[1]
    for block in re.split(r"\n(?=  [\w-]+:\n)", "\n" + text):
        if block.strip():
            name = block.strip().split(":", 1)[0]
            assert len(block.strip().splitlines()) <= 80, f"{path.name}/{name} is too long"


def test_no_expression_is_expanded_inside_run_scripts():
    for path in FILES:
        for name, job in load(path)["jobs"].items():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), f"{path.name}/{name}: use env:"
    for path in ACTION_FILES:
        for step in load(path)["runs"]["steps"]:
            assert "${{" not in step.get("run", ""), f"{path.parent.name}: use env:"


TOOLING_JOBS = [
    ("train-and-deploy.yml", n) for n in ("plan", "local", "train", "promote", "comment")
]


@pytest.mark.parametrize(
    ("workflow", "name"), [*TOOLING_JOBS, ("validation.yml", "validate")], ids=str
)
def test_tooling_comes_from_the_workflows_own_commit(workflow, name):
    jobs = load(WORKFLOWS / workflow)["jobs"]
    assert workflow != "train-and-deploy.yml" or set(jobs) == {n for _, n in TOOLING_JOBS}
    steps = jobs[name]["steps"]
    checkout = [s for s in steps if s.get("with", {}).get("path") == ".ci-tooling"]
    assert len(checkout) == 1, name
    assert "job.workflow_sha" in checkout[0]["with"]["ref"]
    assert "job.workflow_repository" in checkout[0]["with"]["repository"]
    # The setup comes from that checkout, right after it, never from the caller's tree.
    at = steps.index(checkout[0])
    assert steps[at + 1]["uses"] == SETUP, name
    assert [s.get("uses") for s in steps].count(SETUP) == 1, name
    runs = [s["run"] for s in steps if "ci " in s.get("run", "")]
    assert runs and all("python -P -m ci " in r for r in runs), name


def test_validation_runs_the_callers_sessions_before_the_tooling_arrives():
    steps = load(WORKFLOWS / "validation.yml")["jobs"]["validate"]["steps"]
    runs = [s.get("run", "") for s in steps]
    tooling = next(i for i, s in enumerate(steps) if s.get("with", {}).get("path") == ".ci-tooling")
    # Only lint and tests come from the caller's noxfile, and its linters never see .ci-tooling.
    assert [r for r in runs if r.startswith("nox ")] == ["nox -s lint", "nox -s tests"]
    assert max(runs.index("nox -s lint"), runs.index("nox -s tests")) < tooling
    assert any("python -P -m ci local-train" in r for r in runs[tooling:])
    assert any("python -P -m ci local-predict" in r for r in runs[tooling:])


def test_every_pinned_action_has_a_local_stand_in():
    for action, _sha in pinned_actions():
        assert action in STAND_IN_DIRS, f"no stand-in for {action} (tests/actions)"
        assert list((STAND_INS / STAND_IN_DIRS[action]).rglob("action.yml")), action
