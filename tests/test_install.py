"""The tooling installs with one command from a commit, then runs in another repository.

The distribution (``tooling/``) is installed into a fresh virtual environment from a git
clone of this tree, pinned to a commit, exactly as the docs tell an adopter to (``uv pip``
stands in for ``pip`` only because it installs TensorFlow from its cache; the adopter's
processes write bytecode as they import, as on any machine). The adopting
repository is made in a temp dir: its own hatchling-built trainer, settings and gate, and a
decoy ``ci`` package that must not be what runs. Its ``git status`` must stay clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ci.package import build_sdist
from tests import workflows_second_repo
from tests.merge_path import QUIET_TF, ROOT
from tests.workflows_act import git as _git


def _commit_tree(dest: Path) -> str:
    """This working tree (tracked and new files, not ignored ones) as a commit in ``dest``."""
    listed = _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "tooling")
    return _git(dest, "rev-parse", "HEAD")


def _adopter(dest: Path) -> Path:
    files = workflows_second_repo.files("tooling/repo", "0" * 40)
    del files["setup.py"]
    files["pyproject.toml"] = workflows_second_repo.HATCH_PYPROJECT
    for rel, text in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "adopter")
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``bin`` directory of a fresh venv with the tooling installed from a commit."""
    if not shutil.which("uv"):
        pytest.fail("uv is needed to install TensorFlow from its cache (pip install uv)")
    base = tmp_path_factory.mktemp("install")
    (base / "tooling").mkdir()
    sha = _commit_tree(base / "tooling")
    venv = base / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    spec = f"tf-vertex-ci @ git+file://{base / 'tooling'}@{sha}#subdirectory=tooling"
    proc = subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            spec,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return venv / "bin"


def _clean_env() -> dict[str, str]:
    # An adopter's shell: none of this repository's settings, paths or emulators.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CI_") and k not in ("PYTHONPATH", "STORAGE_EMULATOR_HOST")
    }
    return {**env, **QUIET_TF, "CI_POLL_INTERVAL": "0.2", "PYTHONDONTWRITEBYTECODE": ""}


def test_installed_tooling_runs_the_pipeline_in_another_repository(installed, tmp_path):
    # The distribution holds the tooling only: the example trainer stays this repo's sdist.
    probe = subprocess.run(
        [
            installed / "python",
            "-P",
            "-c",
            "import ci.cli, importlib.util as u;print(u.find_spec('trainer') is None)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "True", probe.stderr
    repo = _adopter(tmp_path / "parcels")
    out = tmp_path / "outputs.txt"
    argv = ["pipeline", "--train-steps", "150", "--outputs", str(out)]
    result = subprocess.run(
        [installed / "tf-vertex-ci", *argv],
        cwd=repo,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert values["gate_decision"] == "yes" and values["model_version"] == "1"
    assert values["sdist"].endswith("dist/parcels-0.1.0.tar.gz")
    assert len(json.loads(values["predictions"])) == 2  # data/instances.json, from ci.toml
    # It said where it wrote, and git sees nothing new in the adopter's tree.
    assert "created .local-cloud/" in result.stdout and f"built {values['sdist']}" in result.stdout
    assert _git(repo, "status", "--porcelain") == ""


def test_installed_local_predict_reads_instances_from_settings(installed, tmp_path):
    repo = _adopter(tmp_path / "parcels")
    job = tmp_path / "job"
    env = _clean_env()
    trained = subprocess.run(
        [installed / "python", "-m", "parcels.task", "--job-dir", str(job), "--train-steps", "50"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    # No --json-instances: data_dir/instances_file from ci.toml (data/instances.json, 2 rows).
    argv = ["local-predict", "--model-dir", str(job / "model")]
    result = subprocess.run(
        [installed / "tf-vertex-ci", *argv], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    predictions = json.loads(result.stdout.strip().splitlines()[-1])["predictions"]
    assert [sorted(p) for p in predictions] == [["express", "probability"]] * 2


def test_tooling_sdist_builds_a_complete_wheel_on_its_own(tmp_path):
    """The sdist carries ci/ and the dependency groups, so its wheel needs no checkout."""
    sdist = build_sdist(ROOT / "tooling", tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (src,) = (tmp_path / "unpacked").iterdir()
    assert (src / "ci" / "cli.py").is_file() and (src / "repository-pyproject.toml").is_file()
    built = subprocess.run(
        ["uv", "build", "-q", "--wheel", str(src), "-o", str(tmp_path / "wheel")],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "ci/cli.py" in names and "ci/emulator/app.py" in names
    assert "Requires-Dist: google-cloud-storage==" in metadata
    assert not any(n.startswith(("trainer/", "tests/")) for n in names)
