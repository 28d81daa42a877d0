"""The README is the front door and the docs state facts: tests keep both true.

The Quickstart is what a fresh machine runs and CI runs its test command; the adoption
snippet is a valid caller of the real inputs; every workflow input is documented; every
list of scale tiers is the code's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ci.tiers import TIER_NAMES
from tests.test_workflows_lint import actionlint, run, tool
from tests.workflows_act import WORKFLOWS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The pages this test owns the facts of (others' pages bring their own tests).
PAGES = [README, *(DOCS / n for n in ("index.md", "workflows.md", "gcp-setup.md", "testing.md"))]
# A scale tier's name as ML Engine spelled them; a line naming two or more is a list of tiers.
TIER_WORD = re.compile(r"\b(?:BASIC(?:_[A-Z0-9]+)?|STANDARD_\d+|PREMIUM_\d+|CUSTOM|[A-Z]+_MODEL)\b")


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def quickstart_commands() -> list[str]:
    quickstart = section(README.read_text(), "Quickstart")
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", quickstart, re.S)]


def adoption_snippet() -> str:
    (block,) = re.findall(r"```yaml\n(.*?)```", section(README.read_text(), "Adopt it"), re.S)
    return block


def test_quickstart_has_exactly_two_one_line_commands():
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), commands
    assert "nox -s pipeline" in commands[0]


def test_ci_runs_the_readme_test_command():
    run_script = (ROOT / ".ci" / "run").read_text().splitlines()
    lines = [line.strip() for line in run_script if not line.startswith("#")]
    assert quickstart_commands()[1] in lines


def test_the_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert diagram.startswith("flowchart")
    # The picture names every job that runs, and the three events that start them.
    jobs = [*load(WORKFLOWS / "train-and-deploy.yml")["jobs"], "validation"]
    for name in jobs:
        assert f"<b>{name}" in diagram, f"the diagram lacks the job {name}"
    for event in ("pull request", "push to main", "manual run"):
        assert event in diagram


def test_the_adoption_snippet_is_a_short_valid_caller(tmp_path):
    snippet = adoption_snippet()
    assert len(snippet.splitlines()) <= 20
    caller = YAML(typ="safe").load(snippet)
    assert caller["permissions"] == {}
    assert set(caller["on"]) == {"pull_request", "push", "workflow_dispatch"}
    assert set(caller["on"]["workflow_dispatch"]["inputs"]) == {"train-steps", "scale-tier"}
    validation, deploy = caller["jobs"]["validation"], caller["jobs"]["deploy"]
    assert validation["uses"].split("@")[0].endswith("/.github/workflows/validation.yml")
    assert deploy["uses"].split("@")[0].endswith("/.github/workflows/train-and-deploy.yml")
    inputs = load(WORKFLOWS / "train-and-deploy.yml")["on"]["workflow_call"]["inputs"]
    assert set(deploy["with"]) <= set(inputs)
    # The grants are what the called jobs declare: a smaller ceiling fails the run.
    assert deploy["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }
    path = tmp_path / "caller.yml"
    path.write_text(snippet)
    schema = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path))
    assert schema.returncode == 0, schema.stdout + schema.stderr
    lint = actionlint(path)
    assert (lint.returncode, lint.stdout) == (0, ""), lint.stdout + lint.stderr


@pytest.mark.parametrize("workflow", ["train-and-deploy.yml", "validation.yml"])
def test_every_workflow_input_and_output_is_documented(workflow):
    call = load(WORKFLOWS / workflow)["on"]["workflow_call"]
    page = section((DOCS / "workflows.md").read_text(), workflow.removesuffix(".yml") + "\n")
    for name in {**call["inputs"], **call.get("outputs", {})}:
        assert f"| `{name}` |" in page, f"docs/workflows.md does not document {name}"
    for name, spec in call["inputs"].items():
        typed = f"| `{name}` | {spec['type']} |"
        (row,) = [line for line in page.splitlines() if line.startswith(typed)] or [typed]
        default = spec.get("default")
        shown = "true" if default is True else "false" if default is False else str(default)
        assert f"| `{shown}` |" in row or (shown == "" and '| `""` |' in row), row


def test_workflow_tier_lists_are_the_codes():
    call = load(WORKFLOWS / "train-and-deploy.yml")["on"]["workflow_call"]["inputs"]
    assert set(TIER_WORD.findall(call["scale-tier"]["description"])) == set(TIER_NAMES)
    dispatch = load(WORKFLOWS / "ci.yml")["on"]["workflow_dispatch"]["inputs"]
    assert tuple(dispatch["scale-tier"]["options"]) == TIER_NAMES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_tier_list_in_the_docs_is_the_codes(page):
    for line in page.read_text().splitlines():
        named = set(TIER_WORD.findall(line))
        if len(named) >= 2:
            assert named == set(TIER_NAMES), f"{page.name}: {line}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_to_these_pages_and_files_resolve(page):
    mine = {p.resolve() for p in PAGES}
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        path = (page.parent / target).resolve()
        # Other engineers' pages land with their own work; ours and the files must exist.
        if path in mine or not path.is_relative_to(DOCS):
            assert path.exists(), f"{page.name}: broken link {target}"
