"""``python -m ci tune`` and ``pipeline --tune`` against the emulator, and ``tuning.toml``.

Trials run the tiny ``hptrial`` package of :mod:`tests.test_tuning` (it reports ``score``
through cloudml-hypertune), except ``pipeline --tune``, which trains the example trainer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib

import pytest

from ci import cli, tuning_config
from ci.emulator import faults
from ci.errors import UsageError
from tests.conftest import BUCKET, ROOT, Poll
from tests.merge_path import run_ci, settings_env, trainer_copy
from tests.test_tuning import _pid_files, jobs, max_overlap, trial_sdist


@pytest.fixture(scope="session")
def hp_package(gcs) -> str:
    """The ``hptrial`` sdist, staged."""
    gcs.bucket(BUCKET).blob("staging/tune/hptrial-0.1.tar.gz").upload_from_string(trial_sdist())
    return f"gs://{BUCKET}/staging/tune/hptrial-0.1.tar.gz"


# --- python -m ci tune ----------------------------------------------------------------

TOML = """
metric = "score"
goal = "MAXIMIZE"
algorithm = "{algorithm}"
max_trial_count = 4
parallel_trial_count = 2
max_failed_trial_count = {max_failed}
train_steps = 5
{params}
"""
X_TOML = '[parameters.x]\ntype = "DOUBLE"\nmin = 0.0\nmax = 1.0\n'
UNITS_TOML = '[parameters.units]\ntype = "INTEGER"\nmin = 1\nmax = 3\n'


@pytest.fixture
def tune_env(emulator, gcs, monkeypatch):
    values = settings_env(emulator, "tune-test", CI_TRAINER_MODULE="hptrial.task")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def ci_tune(tmp_path, hp_package, toml: str, *trainer_args: str, flags=()):
    config = tmp_path / "tuning.toml"
    config.write_text(toml)
    out = tmp_path / "outputs.txt"
    argv = ["tune", "--tuning-config", str(config), "--package", hp_package]
    argv += ["--outputs", str(out), *flags, "--", f"--log-dir={tmp_path}", *trainer_args]
    code = cli.main(argv)
    values = dict(x.split("=", 1) for x in out.read_text().splitlines()) if out.exists() else {}
    return code, values


def test_ci_tune_four_trials_two_at_a_time(tune_env, vertex, hp_package, tmp_path, capsys):
    toml = TOML.format(algorithm="ALGORITHM_UNSPECIFIED", max_failed=1, params=X_TOML + UNITS_TOML)
    code, values = ci_tune(tmp_path, hp_package, toml, "--seconds=1")
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = [x for x in printed.splitlines() if re.match(r"trial \d: ", x)]
    assert len(lines) == 4 and all("best so far: trial" in x for x in lines)
    job = jobs(vertex).get(name=values["job_name"]).execute()
    best = max(job["trials"], key=lambda t: t["finalMeasurement"]["metrics"][0]["value"])
    assert values["best_trial"] == best["id"]
    assert json.loads(values["best_params"]) == {
        p["parameterId"]: p["value"] for p in best["parameters"]
    }
    assert f"best_trial={best['id']}" in printed and f"job_name={job['name']}" in printed
    assert values["best_trial_dir"].endswith(f"/{best['id']}")
    assert json.loads(values["version_labels"]) == {
        "tuning-job": job["name"].rsplit("/", 1)[-1],
        "tuning-trial": best["id"],
    }
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")]
    assert len(runs) == 4 and max_overlap(runs) == 2


def test_ci_tune_grid_with_a_failing_trial(tune_env, emulator, hp_package, tmp_path, capsys):
    # Through transient errors at the wire, as Vertex gives them at times.
    faults.inject(emulator.vertex_url, "hyperparameterTuningJobs.create", 503, count=1)
    faults.inject(emulator.vertex_url, "hyperparameterTuningJobs.get", 429, count=2)
    params = '[parameters.mode]\ntype = "CATEGORICAL"\nvalues = ["fail", "ok"]\n'
    params += '[parameters.units]\ntype = "DISCRETE"\nvalues = [1, 2]\n'
    toml = TOML.format(algorithm="GRID_SEARCH", max_failed=3, params=params)
    code, values = ci_tune(tmp_path, hp_package, toml)
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = [x for x in printed.splitlines() if re.match(r"trial \d: ", x)]
    assert [x.split(" ->")[0] for x in lines] == [
        "trial 1: mode=fail units=1.0",
        "trial 2: mode=fail units=2.0",
        "trial 3: mode=ok units=1.0",
        "trial 4: mode=ok units=2.0",
    ]
    assert "failed (" in lines[0] and "best so far: none yet" in lines[0]
    assert values["best_trial"] == "4"
    assert json.loads(values["best_params"]) == {"mode": "ok", "units": 2.0}
    assert faults.pending(emulator.vertex_url) == []  # the errors happened, and were retried


def test_ci_tune_timeout_cancels_the_job(tune_env, vertex, hp_package, tmp_path, capsys):
    toml = TOML.format(algorithm="RANDOM_SEARCH", max_failed=1, params=X_TOML)
    code, _ = ci_tune(tmp_path, hp_package, toml, "--seconds=60", flags=["--timeout", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "timed out after 3s (JOB_STATE_CANCELLED)" in captured.err
    name = re.search(r"submitted (\S+/hyperparameterTuningJobs/\d+)", captured.out)[1]
    job = jobs(vertex).get(name=name).execute()
    assert job["state"] == "JOB_STATE_CANCELLED"
    for trial in job["trials"]:
        custom = vertex.projects().locations().customJobs().get(name=trial["customJob"])
        assert custom.execute()["state"] == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize(
    ("params", "extra", "message"),
    [
        (
            '[parameters.x]\ntype = "FLOAT"\nmin = 0\nmax = 1\n',
            "",
            "parameters.x.type: unknown parameter type 'FLOAT'",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = 2.0\nmax = 1.0\n',
            "",
            "parameters.x: min_value (2.0) must not be greater than max_value (1.0)",
        ),
        (
            '[parameters.m]\ntype = "CATEGORICAL"\nvalues = []\n',
            "",
            "parameters.m.values: CATEGORICAL needs a non-empty list",
        ),
        (
            X_TOML,
            "parallel_trial_count = 9\n",
            "parallel_trial_count: parallel_trial_count (9) must not be greater than",
        ),
        (X_TOML, "colour = 1\n", "colour: unknown key"),
    ],
)
def test_ci_tune_refuses_a_bad_study_before_submitting(
    tune_env, vertex, tmp_path, capsys, params, extra, message
):
    toml = TOML.format(algorithm="RANDOM_SEARCH", max_failed=1, params=params)
    toml = toml.replace("parallel_trial_count = 2\n", "") if "parallel" in extra else toml
    before = jobs(vertex).list(parent="projects/test-project/locations/us-central1").execute()
    code, _ = ci_tune(tmp_path, "gs://test-bucket/none.tar.gz", extra + toml)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("Error: ") and message in err, err
    after = jobs(vertex).list(parent="projects/test-project/locations/us-central1").execute()
    assert after == before  # nothing was submitted


# --- python -m ci train --tuning-config: the workflows' switch --------------------------


def test_train_with_a_tuning_config_names_the_best_trial_as_its_job(
    tune_env, vertex, hp_package, tmp_path, capsys
):
    toml = TOML.format(algorithm="GRID_SEARCH", max_failed=1, params=UNITS_TOML)
    config = tmp_path / "tuning.toml"
    config.write_text(toml.replace("max_trial_count = 4", "max_trial_count = 2"))
    out = tmp_path / "outputs.txt"
    argv = ["train", "--tuning-config", str(config), "--package", hp_package]
    argv += ["--outputs", str(out), "--", f"--log-dir={tmp_path}"]
    assert cli.main(argv) == 0, capsys.readouterr()
    values = dict(x.split("=", 1) for x in out.read_text().splitlines())
    tuning = jobs(vertex).get(name=values["tuning_job"]).execute()
    best = max(tuning["trials"], key=lambda t: t["finalMeasurement"]["metrics"][0]["value"])
    # job_name is what gate, report and promote take: the best trial's CustomJob.
    assert values["job_name"] == best["customJob"] == values["best_trial_job"]
    assert json.loads(values["version_labels"]) == {
        "tuning-job": tuning["name"].rsplit("/", 1)[-1],
        "tuning-trial": best["id"],
    }
    custom = vertex.projects().locations().customJobs().get(name=values["job_name"]).execute()
    assert custom["state"] == "JOB_STATE_SUCCEEDED"


def test_train_refuses_a_missing_tuning_config_before_building(tune_env, tmp_path, capsys):
    missing = str(tmp_path / "nope.toml")
    assert cli.main(["train", "--tuning-config", missing, "--dist-dir", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"Error: cannot read tuning file {missing!r}: No such file or directory\n"
    )
    assert list(tmp_path.iterdir()) == []  # no sdist was built


# --- python -m ci pipeline --tune -----------------------------------------------------

# Until the example trainer reports its accuracy through cloudml-hypertune itself, trials
# run it through this wrapper, which reports the accuracy the trainer wrote.
REPORTER = """
import json, os, sys
import hypertune
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from trainer import task
code = task.main(sys.argv[1:])
if code:
    sys.exit(code)
job_dir = os.environ["AIP_MODEL_DIR"].rstrip("/").rsplit("/", 1)[0]
bucket, _, name = job_dir.removeprefix("gs://").partition("/")
client = storage.Client(project="local", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]})
metrics = json.loads(client.bucket(bucket).blob(name + "/metrics.json").download_as_text())
hypertune.HyperTune().report_hyperparameter_tuning_metric("accuracy", metrics["accuracy"])
"""
PIPELINE_TOML = """
metric = "accuracy"
algorithm = "GRID_SEARCH"
max_trial_count = 2
parallel_trial_count = 2
train_steps = 200
[parameters.learning-rate]
type = "DISCRETE"
values = [0.00001, 0.03]
"""


def test_pipeline_tune_promotes_the_best_trial(tmp_path):
    trainer_copy(tmp_path)
    module = "trainer.task"
    sources = "".join(p.read_text() for p in (ROOT / "trainer").glob("*.py"))
    if "hypertune" not in sources:
        (tmp_path / "trainer" / "hp_report.py").write_text(REPORTER)
        module = "trainer.hp_report"
    # Training is not seeded here: the gate must not make this test depend on luck.
    (tmp_path / "gate.toml").write_text('[metrics.accuracy]\ndirection = "higher"\n'
                                        "lower_bound = 0.0\n")  # fmt: skip
    (tmp_path / "tuning.toml").write_text(PIPELINE_TOML)
    out = tmp_path / "outputs.txt"
    env = {
        "CI_STATE_DIR": str(tmp_path / "state"),
        "CI_POLL_INTERVAL": "0.2",
        "STORAGE_EMULATOR_HOST": "",
        "CI_PROJECT": "",
        "CI_API_ENDPOINT": "",
        "CI_TRAINER_MODULE": module,
    }
    argv = ["pipeline", "--tune", "--tuning-config", str(tmp_path / "tuning.toml")]
    argv += ["--package-dir", str(tmp_path), "--dist-dir", str(tmp_path / "dist")]
    argv += ["--gate-config", str(tmp_path / "gate.toml"), "--outputs", str(out)]
    result = run_ci(argv, env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    values = dict(line.split("=", 1) for line in out.read_text().splitlines())
    # The promoted trial is the one with the best accuracy among those printed.
    done = re.findall(r"^trial (\d): learning-rate=(\S+) -> accuracy=(\S+);", result.stdout, re.M)
    assert len(done) == 2, result.stdout
    best = max(done, key=lambda d: float(d[2]))
    assert values["best_trial"] == best[0]
    assert json.loads(values["best_params"]) == {"learning-rate": float(best[1])}
    assert values["gate_decision"] == "yes" and values["model_version"] == "1"
    versions = run_ci(["versions", "--json"], env, timeout=120)
    (version,) = json.loads(versions.stdout)
    tuning_id = values["tuning_job"].rsplit("/", 1)[-1]
    assert version["labels"]["tuning-job"] == tuning_id
    assert version["labels"]["tuning-trial"] == best[0]
    # job_name is the candidate, as `ci train --tuning-config` writes it: the best trial's.
    assert values["job_name"] == values["best_trial_job"]
    assert version["labels"]["job-id"] == values["best_trial_job"].rsplit("/", 1)[-1]
    assert version["artifact_uri"] == values["best_trial_dir"] + "/model"
    predictions = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(predictions) == 3 and all(p["class_ids"] in (0, 1, 2) for p in predictions)


# --- tuning.toml, parsed and checked offline ------------------------------------------


def test_tuning_toml_becomes_the_study_spec():
    config = tuning_config.load(ROOT / "tuning.toml")
    assert config.metric == "accuracy" and config.goal == "MAXIMIZE"
    assert config.job_fields()["maxTrialCount"] == 4
    assert config.job_fields()["parallelTrialCount"] == 2
    lr, units = config.study_spec["parameters"]
    assert lr == {
        "parameterId": "learning-rate",
        "doubleValueSpec": {"minValue": 0.003, "maxValue": 0.3},
        "scaleType": "UNIT_LOG_SCALE",
    }
    assert units == {
        "parameterId": "hidden-units",
        "categoricalValueSpec": {"values": ["10,10", "20,10", "32"]},
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[parameters.u]\ntype = "DISCRETE"\nvalues = [2, 1]\n',
            "parameters.u: must be in strictly increasing order",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = 0.0\nmax = 1.0\nscale = "UNIT_LOG_SCALE"\n',
            "parameters.x: UNIT_LOG_SCALE needs min_value > 0",
        ),
        ('algorithm = "GRID_SEARCH"\n' + X_TOML, "parameters.x: GRID_SEARCH needs INTEGER"),
        ('goal = "BIGGER"\n' + X_TOML, "goal: goal must be one of MAXIMIZE, MINIMIZE"),
        (
            '[parameters.n]\ntype = "INTEGER"\nmin = 1.5\nmax = 3\n',
            "parameters.n.min: INTEGER needs a whole number within int64, got 1.5",
        ),
        (
            '[parameters.n]\ntype = "INTEGER"\nmin = 1\nmax = 9223372036854775808\n',
            "parameters.n.max: INTEGER needs a whole number within int64, got 9223372036854775808",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = nan\nmax = 1.0\n',
            "parameters.x.min: DOUBLE needs a finite number, got nan",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = 0.0\nmax = inf\n',
            "parameters.x.max: DOUBLE needs a finite number, got inf",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = "0"\nmax = 1\n',
            "parameters.x.min: DOUBLE needs a finite number, got '0'",
        ),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = 0.5\nmax = 0.5\n',
            "parameters.x: min (0.5) must be less than max (0.5)",
        ),
        ("display_name = 5\n" + X_TOML, "display_name: expected a string of 1 to 128 characters"),
        (f'display_name = "{"n" * 129}"\n' + X_TOML, "display_name: expected a string of 1 to"),
        ("goal = 5\n" + X_TOML, "goal: expected a string, got 5"),
        ("[parameters.x]\ntype = 1\nmin = 0\nmax = 1\n", "parameters.x.type: expected a string"),
        (
            '[parameters.x]\ntype = "DOUBLE"\nmin = 0\nmax = 1\nscale = []\n',
            "parameters.x.scale: expected a string, got []",
        ),
        (
            '[parameters.c]\ntype = "CATEGORICAL"\nvalues = [[1], {a=1}]\n',
            "parameters.c.values: CATEGORICAL values must be non-empty strings, got [1]",
        ),
        (
            '[parameters.c]\ntype = "CATEGORICAL"\nvalues = ["a", "a"]\n',
            "parameters.c.values: CATEGORICAL values must not repeat",
        ),
        (
            '[parameters.d]\ntype = "DISCRETE"\nvalues = [1, nan]\n',
            "parameters.d.values: DISCRETE values must be finite numbers, got nan",
        ),
        (
            '[parameters.d]\ntype = "DISCRETE"\nvalues = [1, "2"]\n',
            "parameters.d.values: DISCRETE values must be finite numbers, got '2'",
        ),
        (
            "max_trial_count = 100000000\n" + X_TOML,
            "max_trial_count: 100000000 is more than Vertex's 1000 trials a study",
        ),
        (
            "max_trial_count = 1000\nparallel_trial_count = 100000000\n" + X_TOML,
            "parallel_trial_count: 100000000 is more than Vertex's 1000 trials a study",
        ),
        (
            "max_trial_count = 3\nparallel_trial_count = 4\n" + X_TOML,
            "parallel_trial_count: parallel_trial_count (4) must not be greater than",
        ),
        ("max_failed_trial_count = 1001\n" + X_TOML, "max_failed_trial_count: 1001 is more"),
        ("train_steps = 1.5\n" + X_TOML, "train_steps: expected an integer, got 1.5"),
        (
            '[parameters.c]\ntype = "CATEGORICAL"\nvalues = [' + "1" * 500 + "]\n",
            "got " + "1" * 77 + "...",
        ),
    ],
)
def test_bad_tuning_toml_names_the_key(toml, message):
    with pytest.raises(UsageError) as caught:
        tuning_config.parse(tomllib.loads('metric = "score"\n' + toml), "t.toml")
    assert str(caught.value).startswith("t.toml: ") and message in str(caught.value)
    assert len(str(caught.value)) < 200


def test_the_largest_study_vertex_takes_is_accepted():
    toml = "max_trial_count = 1000\nparallel_trial_count = 1000\n" + X_TOML
    config = tuning_config.parse(tomllib.loads('metric = "score"\n' + toml), "t.toml")
    assert config.job_fields()["maxTrialCount"] == config.job_fields()["parallelTrialCount"]


def test_a_binary_tuning_file_is_one_line_exit_2(tmp_path, capsys):
    binary = tmp_path / "t-bin.toml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not utf-8\n" * 50)
    assert cli.main(["tune", "--tuning-config", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err == f"Error: tuning file {str(binary)!r} is not UTF-8 text (byte 0)\n"


def test_ctrl_c_cancels_the_tuning_job(tune_env, vertex, hp_package, tmp_path):
    config = tmp_path / "tuning.toml"
    config.write_text(TOML.format(algorithm="RANDOM_SEARCH", max_failed=1, params=X_TOML))
    argv = [sys.executable, "-m", "ci", "tune", "--tuning-config", str(config)]
    argv += ["--package", hp_package, "--", f"--log-dir={tmp_path}", "--seconds=60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # staging lines come first
        found = (re.search(r"submitted (\S+/hyperparameterTuningJobs/\d+)", x) for x in lines)
        name = next(m for m in found if m)[1]
        Poll(vertex).until(lambda: len(_pid_files(tmp_path)) == 2, 60, "trials to run")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        proc.wait()
    job = jobs(vertex).get(name=name).execute()
    assert job["state"] == "JOB_STATE_CANCELLED"  # nothing left running in the cloud
