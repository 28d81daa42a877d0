"""``ci pipeline`` on the embedded default: it starts and stops its own emulators, and
their state (in ``--state-dir``) carries the champion from one run to the next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import cli
from tests.merge_path import ROOT, png_size, run_ci, trainer_copy

GATE = """
[metrics.accuracy]
direction = "higher"
lower_bound = 0.5
absolute_change = -0.5
"""


@pytest.fixture
def workdir(tmp_path):
    """A trainer copy, a gate config and a state dir; settings only from ci.toml + flags."""
    trainer_copy(tmp_path)
    (tmp_path / "gate.toml").write_text(GATE)
    return tmp_path


def _env(workdir: Path) -> dict[str, str]:
    # The embedded default: no project, no endpoint, no storage emulator from outside.
    return {
        "CI_STATE_DIR": str(workdir / "state"),
        "CI_POLL_INTERVAL": "0.2",
        "STORAGE_EMULATOR_HOST": "",
        "CI_PROJECT": "",
        "CI_API_ENDPOINT": "",
    }


def _pipeline(workdir: Path, *flags: str, gate: Path | None = None):
    outputs = workdir / f"out-{len(list(workdir.glob('out-*')))}.txt"
    argv = [
        "pipeline",
        "--package-dir",
        str(workdir),
        "--dist-dir",
        str(workdir / "dist"),
        "--gate-config",
        str(gate or workdir / "gate.toml"),
        "--outputs",
        str(outputs),
        "--decision-out",
        str(workdir / "decision.json"),
        *flags,
    ]
    result = run_ci(argv, _env(workdir), timeout=600)
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return result, values


def _versions(workdir: Path) -> list:
    result = run_ci(["versions", "--json"], _env(workdir), timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    return [(r["version_id"], r["aliases"], r["traffic_percent"]) for r in rows]


# The example trainer writes TensorBoard event files once it reads AIP_TENSORBOARD_LOG_DIR
# (the trainer contract); then the pipeline's report must have its training curves too.
TRAINER_WRITES_EVENTS = any(
    "AIP_TENSORBOARD_LOG_DIR" in p.read_text() for p in (ROOT / "trainer").glob("*.py")
)


def test_twice_then_rollback_then_a_gate_that_says_no(workdir):
    # The first two runs gate with the repository's gate.toml and write their report.
    report, summary = workdir / "R", workdir / "summary.md"
    shown = ("--report-dir", str(report), "--summary", str(summary))
    first, out1 = _pipeline(workdir, "--train-steps", "200", *shown, gate=ROOT / "gate.toml")
    assert first.returncode == 0, first.stderr
    assert f"{report / 'report.md'}, {report / 'index.html'}\n" in first.stdout
    assert out1["gate_decision"] == "yes" and out1["model_version"] == "1"
    predictions = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [p["class_ids"] for p in predictions[-3:]] == [0, 1, 2]
    assert json.loads(out1["predictions"]) == predictions[-3:]
    assert out1["job_name"].endswith("/customJobs/" + out1["job_id"])
    assert out1["package_uri"].startswith("gs://local-ci/staging/")

    second, out2 = _pipeline(workdir, "--train-steps", "200", *shown, gate=ROOT / "gate.toml")
    assert second.returncode == 0, second.stderr
    decision = json.loads((workdir / "decision.json").read_text())
    assert decision["champion"]["version_id"] == "1"  # gated against the first run
    assert out2["model_version"] == "2"
    assert _versions(workdir) == [("1", ["previous"], 0), ("2", ["default"], 100)]
    _assert_second_report(report, summary, second.stdout)

    back = run_ci(["rollback"], _env(workdir), timeout=120)
    assert back.returncode == 0, back.stderr
    assert _versions(workdir) == [("1", ["default"], 100), ("2", [], 0)]

    # One step and an accuracy threshold of 0.999: the gate says no, exit code 3.
    third, out3 = _pipeline(
        workdir, "--train-steps", "1", "--threshold", "accuracy.lower_bound=0.999"
    )
    assert third.returncode == 3, third.stderr
    assert third.stderr.startswith("Error: gate said no: accuracy >= 0.999")
    assert out3["gate_decision"] == "no" and "model_version" not in out3
    assert json.loads((workdir / "decision.json").read_text())["decision"] == "no"
    assert _versions(workdir) == [("1", ["default"], 100), ("2", [], 0)]  # untouched


def _assert_second_report(report: Path, summary: Path, stdout: str) -> None:
    assert f"{report / 'report.md'}, {report / 'index.html'}\n" in stdout
    text = (report / "report.md").read_text()
    assert "(version 2)** against **version 1** (champion): gate says **yes**" in text
    thresholds = [line for line in (ROOT / "gate.toml").read_text().splitlines() if "[" in line]
    for name in (t.strip("[]").removeprefix("metrics.").strip('"') for t in thresholds):
        row = next(r for r in text.splitlines() if r.startswith(f"| {name} |"))
        assert row.count("✅") >= 1 and "—" not in row.split("|")[3], row
    pngs = sorted(p.name for p in report.glob("*.png"))
    expected = ["comparison.png", "confusion_matrix.png"]
    if TRAINER_WRITES_EVENTS:
        expected.append("training_curves.png")
        assert "```mermaid\nxychart-beta" in summary.read_text()
    else:
        assert "No training curves: no TensorBoard event files" in text
    assert pngs == sorted(expected) and all(min(png_size(report / n)) > 100 for n in pngs)
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert not list(report.glob(".report-*"))  # the scratch directory is gone


def test_standard_1_trains_with_several_processes_and_serves(workdir):
    result, values = _pipeline(
        workdir,
        "--scale-tier",
        "STANDARD_1",
        "--train-steps",
        "60",
        "--local-max-replicas",
        "3",
        "--threshold",
        "accuracy.lower_bound=0",
    )
    assert result.returncode == 0, result.stderr
    assert "(5 replica(s), 60 steps)" in result.stdout  # chief + 4 workers requested
    logs = workdir / "state" / "vertex" / "jobs" / values["job_id"] / "logs"
    replicas = sorted(p.stem for p in logs.glob("workerpool*.log"))
    assert replicas == ["workerpool0-0", "workerpool1-0", "workerpool1-1"]  # capped at 3
    # One train file for three replicas: each reads all of it (the documented fallback) and
    # the strategy hands each its own batches.
    said = {}
    for name, task in zip(replicas, ("chief:0", "worker:0", "worker:1"), strict=True):
        (line,) = [x for x in (logs / f"{name}.log").read_text().splitlines() if "train file" in x]
        said[task] = line
    (uri,) = {line.rsplit(": ", 1)[1] for line in said.values()}
    assert uri.startswith("gs://local-ci/staging/") and uri.endswith("/iris_training.csv")
    assert said == {task: f"task {task} reads 1 train file(s): {uri}" for task in said}
    assert values["model_version"] == "1"
    predictions = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(predictions) == 3 and all("class_ids" in p for p in predictions)


def test_a_failed_smoke_test_promotes_nothing_and_still_reports(workdir):
    # Instances the model cannot take: the staging endpoint's smoke test fails.
    (workdir / "wrong.json").write_text('{"petal_size": 1.0}\n')
    report = workdir / "R"
    result, values = _pipeline(
        workdir,
        *("--train-steps", "20", "--threshold", "accuracy.lower_bound=0"),
        *("--instances-file", str(workdir / "wrong.json"), "--report-dir", str(report)),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "petal_size" in line, line
    assert values["gate_decision"] == "yes" and "model_version" not in values
    # Nothing serves (the version was uploaded, never deployed on the endpoint); the report
    # says what was trained and gated.
    assert all(traffic == 0 for _, _, traffic in _versions(workdir))
    assert "gate says **yes**" in (report / "report.md").read_text()
    assert "report not written" not in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-file", "missing.csv"], "file to stage not found: 'data/missing.csv'"),
        (["--gate-config", "nope.toml"], "cannot read gate config 'nope.toml'"),
        (["--instances-file", "bad.json"], "not JSON"),
        (["--scale-tier", "CUSTOM"], "needs --master-type"),
        (["--train-steps", "0"], "'train_steps' from --train-steps: bad value '0'"),
        (["--threshold", "accuracy.floor=1"], "bad --threshold 'accuracy.floor=1'"),
        # The gate config is parsed and type-checked before anything is built or trained.
        (["--gate-config", "shape.toml"], "'shape.toml': 'metrics' must be tables"),
        (["--gate-config", "empty.toml"], "'empty.toml' sets no thresholds"),
        (["--gate-config", "nested.toml"], '[metrics."precision.setosa"]'),
        (["--threshold", "accuracy.lower_bound=nan"], "nan is not a finite number"),
        (["--timeout", "nan"], "positive finite number: 'nan'"),
        (["--tf-version", "1.2"], "no prebuilt Vertex AI image for TensorFlow 1.2"),
    ],
)
def test_bad_input_fails_before_anything_starts(workdir, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(workdir)
    (workdir / "data").mkdir()
    (workdir / "data" / "bad.json").write_text("{oops\n")
    (workdir / "shape.toml").write_text('metrics = "accuracy"\n')
    (workdir / "empty.toml").write_text("")
    (workdir / "nested.toml").write_text("[metrics.precision.setosa]\nlower_bound = 0.5\n")
    for name in ("iris_training.csv", "iris_test.csv", "test.json"):
        (workdir / "data" / name).write_text((ROOT / "data" / name).read_text())
    for key, value in _env(workdir).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CI_TRAIN_FILE", "iris_training.csv")
    monkeypatch.setenv("CI_EVAL_FILE", "iris_test.csv")
    assert cli.main(["pipeline", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (workdir / "state").exists()  # no emulator was started
    assert not (workdir / "dist").exists()  # nothing was built


def test_change_thresholds_without_a_champion_refuse_before_training(workdir):
    # Only a change threshold and nothing to compare with: the gate would check nothing,
    # so the pipeline refuses before it trains, not after.
    (workdir / "gate.toml").write_text(
        '[metrics.accuracy]\ndirection = "higher"\nabsolute_change = -0.1\n'
    )
    out = workdir / "out.txt"
    argv = ["pipeline", "--package-dir", str(workdir), "--dist-dir", str(workdir / "dist")]
    argv += ["--gate-config", str(workdir / "gate.toml"), "--outputs", str(out)]
    result = run_ci(argv, _env(workdir), timeout=300)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: gate config '{workdir / 'gate.toml'}' has only change")
    assert not out.exists()  # nothing staged or trained, so nothing to report
    assert not list((workdir / "state" / "vertex").glob("jobs/*"))  # no job was created
