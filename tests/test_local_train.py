"""``python -m ci local-train``: the trainer's entry point run here, its contract checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import cli, local_train
from ci.errors import UsageError
from ci.settings import resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository root, where ci.toml names the example trainer and data."""
    monkeypatch.chdir(ROOT)
    for name in ("CI_TRAIN_FILE", "CI_EVAL_FILE", "CI_TRAINER_MODULE", "CI_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_the_command_is_the_cloud_entry_point_with_the_settings_data(in_repo, tmp_path):
    cmd = local_train.command(resolve(env={}), tmp_path, ["--train-steps", "5"])
    assert cmd[1:] == [
        "-P",
        "-m",
        "trainer.task",
        "--job-dir",
        str(tmp_path),
        "--train-file",
        "data/iris_training.csv",
        "--eval-file",
        "data/iris_test.csv",
        "--train-steps",
        "5",
    ]


def test_a_real_run_leaves_the_export_and_metrics(in_repo, tmp_path):
    out, summary = tmp_path / "out", tmp_path / "summary.md"
    argv = ["local-train", "--job-dir", str(tmp_path / "job"), "--trainer-args", "--train-steps 40"]
    assert cli.main([*argv, "--outputs", str(out), "--summary", str(summary)]) == 0
    assert (tmp_path / "job" / "model" / "saved_model.pb").is_file()
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["train_steps"] == 40
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert json.loads(written["metrics"]) == metrics
    assert "| accuracy |" in summary.read_text()


def test_a_failing_trainer_is_one_error_line(in_repo, tmp_path, capfd):
    bad = tmp_path / "bad.csv"
    bad.write_text("3,4,a,b,c\n1,abc,3,4,0\n")
    argv = ["local-train", "--job-dir", str(tmp_path / "job"), "--train-file", str(bad)]
    assert cli.main(argv) == 1
    err = capfd.readouterr().err  # the trainer's stderr (a child process's) included
    # The trainer's own "Error: ..." line is folded into ci's: one Error line, with why.
    [line] = [x for x in err.splitlines() if x.startswith("Error:")]
    assert line.startswith("Error: the trainer trainer.task exited with status 1: ")
    assert f"{bad}:1: unexpected header '3,4,a,b,c'" in line
    assert "Traceback" not in err
    assert not (tmp_path / "job" / "metrics.json").exists()


def test_trainer_args_the_trainer_refuses_are_one_usage_error(in_repo, tmp_path, capfd):
    # The trainer's argparse says what is wrong (exit 2): one Error line, exit 2, no job dir.
    argv = ["local-train", "--job-dir", str(tmp_path / "job"), "--trainer-args", "--no-such 1"]
    assert cli.main(argv) == 2
    err = capfd.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("Error:")]
    assert line.startswith("Error: the trainer trainer.task exited with status 2: ")
    assert "--no-such" in line
    assert not (tmp_path / "job" / "metrics.json").exists()


def test_a_job_dir_that_looks_like_a_flag_is_still_a_path(in_repo):
    cmd = local_train.command(resolve(env={}), Path("-out"), [])
    assert cmd[cmd.index("--job-dir") + 1] == "./-out"


def test_bad_trainer_args_exit_2_naming_the_value(in_repo, tmp_path, capsys):
    argv = ["local-train", "--job-dir", str(tmp_path / "job"), "--trainer-args", "--steps '3"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith('Error: --trainer-args "--steps \'3"')


def test_a_missing_package_directory_is_named(in_repo, tmp_path):
    with pytest.raises(UsageError, match="package directory not found: 'no/such/dir'"):
        local_train.local_train(resolve(env={}), Path("no/such/dir"), tmp_path, [])


FAKE_TRAINER = """
import argparse, json, pathlib, sys
parser = argparse.ArgumentParser()
parser.add_argument("--job-dir")
parser.add_argument("--train-file")
parser.add_argument("--eval-file")
args = parser.parse_args()
job = pathlib.Path(args.job_dir)
(job / "model").mkdir(parents=True, exist_ok=True)
(job / "model" / "saved_model.pb").write_bytes(b"")
(job / "metrics.json").write_text(json.dumps({"accuracy": 1.0, "who": WHO}))
"""


def _adopter(tmp_path, layout: str) -> Path:
    """An adopter's tree whose package (module ``trainer.task``, as the example's) is in
    ``ml/`` (flat) or ``ml/src/`` (src layout), with a pure-Python stand-in trainer."""
    root = tmp_path / "ml"
    package = (root / "src" if layout == "src" else root) / "trainer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(FAKE_TRAINER.replace("WHO", repr(f"adopter-{layout}")))
    (root / "pyproject.toml").write_text("[project]\nname = 'parcels'\nversion = '1'\n")
    return root


@pytest.mark.parametrize("layout", ["flat", "src"])
def test_the_package_dir_trainer_runs_never_the_toolings_own(
    in_repo, tmp_path, monkeypatch, layout
):
    # The tooling's root (which holds the example `trainer`) is on the inherited path, as in
    # the workflows (PYTHONPATH=.ci-tooling): the adopter's same-named module must win.
    package_dir = _adopter(tmp_path, layout)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    job = tmp_path / "job"
    argv = ["local-train", "--package-dir", str(package_dir), "--job-dir", str(job)]
    assert cli.main(argv) == 0
    assert json.loads((job / "metrics.json").read_text())["who"] == f"adopter-{layout}"
    path = local_train.python_path(package_dir, "trainer.task", str(ROOT))
    expected = package_dir / "src" if layout == "src" else package_dir
    assert path.split(":") == [str(expected.resolve())]


def test_a_module_neither_in_the_package_dir_nor_installed_is_named(in_repo, tmp_path, capsys):
    package_dir = _adopter(tmp_path, "flat")
    argv = ["local-train", "--package-dir", str(package_dir), "--trainer-module", "parcels.task"]
    assert cli.main([*argv, "--job-dir", str(tmp_path / "job")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("Error: trainer module 'parcels.task': no package 'parcels'")
    assert str(package_dir) in line
    assert not (tmp_path / "job").exists()
