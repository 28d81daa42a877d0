"""Sessions a pull request runs (`nox -l` lists them). Dependencies: pyproject.toml groups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
# Where local_train leaves its job (export + metrics.json) for local_predict and artifacts.
LOCAL_JOB_DIR = Path(os.environ.get("LOCAL_JOB_DIR", ROOT / "build" / "local-job"))
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
# local_train's steps when no posargs are given: what every pull request trains and then
# checks with local_predict. tests/test_trainer.py reads this line and proves that the
# check holds for seeds 0-9 at these steps, so the verdict never depends on the seed.
PR_TRAIN_STEPS = 300


# What the sessions' processes run with. Bytecode is written as modules are first imported
# (PYTHONDONTWRITEBYTECODE="" overrides a machine's "1" inside the sessions): where Python may
# not write it, every process would compile each module it imports from source,
# TensorFlow's ~1,800 among them (12 s a start instead of 4.4). Compiling every file of every
# package at install time takes a fresh clone as long in all (docs/testing.md), and is not
# what other machines do.
SESSION_ENV = {**QUIET_TF, "PYTHONDONTWRITEBYTECODE": ""}


def install(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check (no posargs: in `nox -s lint tests -- ARGS` they are pytest's)."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, emulator and workflow tests (pytest; posargs go to pytest)."""
    install(session, "dev")
    # One worker per core; a test file stays on one worker (its module fixtures are built
    # once), and the slowest files start first (tests/conftest.py orders them).
    # `nox -s tests -- -n 0` runs in this process instead.
    parallel = ["-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder"]
    session.run("pytest", *parallel, *session.posargs, env=SESSION_ENV)


@nox.session
def local_train(session: nox.Session) -> None:
    """A short real training run through the entry point the cloud uses."""
    install(session, "ci")
    steps = session.posargs or ["--train-steps", str(PR_TRAIN_STEPS)]
    session.run(
        "python", "-m", "trainer.task", "--job-dir", str(LOCAL_JOB_DIR), *steps, env=SESSION_ENV
    )
    session.log(f"export: {LOCAL_JOB_DIR / 'model'}; metrics: {LOCAL_JOB_DIR / 'metrics.json'}")


@nox.session
def local_predict(session: nox.Session) -> None:
    """Predict data/test.json with local_train's export, as the endpoint would; expect 0, 1, 2."""
    install(session, "ci")
    out = session.run(
        "python",
        "-m",
        "ci",
        "local-predict",
        "--model-dir",
        str(LOCAL_JOB_DIR / "model"),
        "--json-instances",
        "data/test.json",
        silent=True,
        env=SESSION_ENV,
    )
    if out is None:  # --install-only: nothing ran
        return
    print(out.strip())
    classes = [p["class_ids"] for p in json.loads(out.strip().splitlines()[-1])["predictions"]]
    if classes != [0, 1, 2]:
        session.error(f"expected classes [0, 1, 2] for data/test.json, got {classes}")


@nox.session
def pipeline(session: nox.Session) -> None:
    """The whole merge path (package, stage, train, gate, promote) on the configured cloud."""
    install(session, "ci")
    session.run("python", "-m", "ci", "pipeline", *session.posargs, env=SESSION_ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; writes BENCHMARKS.md (posargs: names of the benchmarks to run)."""
    install(session, "bench")
    session.run("python", "-m", "tests.bench", *session.posargs, env=SESSION_ENV)
