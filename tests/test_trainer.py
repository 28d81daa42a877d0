"""The trainer's contract: entry point, outputs, signature, and bad data refused cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import task

ROOT = Path(__file__).resolve().parents[1]
HEADER = "120,4,setosa,versicolor,virginica\n"
GOOD_ROW = "5.1,3.5,1.4,0.2,0\n"


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """One real 500-step training run through the entry point the cloud uses."""
    job_dir = tmp_path_factory.mktemp("job")
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", str(job_dir), "--train-steps", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return job_dir


def test_training_writes_export_and_metrics(job):
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    assert metrics["num_eval_examples"] == 30
    assert metrics["train_steps"] == 500
    assert len(metrics["confusion_matrix"]) == 3
    assert (
        set(metrics["precision"]) == set(metrics["recall"]) == {"setosa", "versicolor", "virginica"}
    )
    assert metrics["tensorflow_version"].startswith("2.")
    assert (job / "model" / "saved_model.pb").is_file()


def test_signature_lists_the_four_features_and_two_outputs(job):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [
            str(cli),
            "show",
            "--dir",
            str(job / "model"),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("SepalLength", "SepalWidth", "PetalLength", "PetalWidth"):
        assert f"inputs['{name}']" in shown
    assert "outputs['class_ids']" in shown and "outputs['probabilities']" in shown


def test_aip_model_dir_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", str(tmp_path / "vertex-model"))
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "2"]) == 0
    assert (tmp_path / "vertex-model" / "saved_model.pb").is_file()
    assert not (tmp_path / "job" / "model").exists()
    assert (tmp_path / "job" / "metrics.json").is_file()


BAD_FILES = {
    "wrong column count": (
        HEADER + GOOD_ROW + "5.0,3.6,1.4,0\n",
        ":3: expected 5 columns, got 4: '5.0,3.6,1.4,0'",
    ),
    "non-numeric value": (
        HEADER + GOOD_ROW * 3 + "5.0,abc,1.4,0.2,0\n",
        ":5: non-numeric value 'abc' for SepalWidth",
    ),
    "label out of range": (
        HEADER + GOOD_ROW + "5.0,3.6,1.4,0.2,3\n",
        ":3: label '3' is not one of 0, 1, 2",
    ),
    "empty file": ("", ": empty file (expected a header line, then data rows)"),
    "header only": (HEADER, ": no data rows after the header line"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("which", ["--train-file", "--eval-file"])
def test_bad_data_is_refused_with_file_line_and_value(case, which, tmp_path, capsys):
    content, expected = BAD_FILES[case]
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    code = task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "3", which, str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == f"Error: {bad}{expected}", err
    assert not (tmp_path / "job").exists(), "no export or metrics may be written"


def test_missing_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-file", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"Error: {missing}: no such file"
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train-steps", "0"], "argument --train-steps: must be positive: '0'"),
        (["--learning-rate", "fast"], "argument --learning-rate: not a float: 'fast'"),
        (
            ["--hidden-units", "10,x"],
            "argument --hidden-units: expected positive integers like 10,10: '10,x'",
        ),
        (["--trian-steps", "5"], "unrecognized arguments: --trian-steps 5"),
    ],
)
def test_bad_flags_get_one_line(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", str(tmp_path), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {message}"
