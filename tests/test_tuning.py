"""Hyperparameter tuning jobs: the emulator over HTTP (discovery client and the official SDK)
and ``python -m ci tune``, with a tiny trial package that reports through cloudml-hypertune.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import tomllib

import pytest

from ci import cli, clients, tuning_config
from ci.emulator import faults, process, study
from ci.errors import UsageError
from tests.conftest import BUCKET, PARENT, ROOT, Poll, storage_client
from tests.merge_path import run_ci, settings_env, trainer_copy
from tests.test_emulator_jobs import alive
from tests.test_sdk import sdk  # noqa: F401 (the SDK's fixture, aiplatform.init)

# The trial: records when it ran and what it got, then reports ``score`` twice (the last
# report is the final measurement). ``--mode=fail`` exits 3, ``--mode=silent`` reports
# nothing, ``--seconds`` is how long it "trains".
TRIAL = """
import argparse, json, os, sys, time
import hypertune
p = argparse.ArgumentParser()
p.add_argument("--log-dir", required=True)
p.add_argument("--x", type=float, default=0.5)
p.add_argument("--units", type=int, default=1)
p.add_argument("--mode", default="ok")
p.add_argument("--seconds", type=float, default=0.0)
for flag in ("--train-steps", "--train-file", "--eval-file"):  # what ci tune passes
    p.add_argument(flag)
args = p.parse_args()
trial = os.environ.get("CLOUD_ML_TRIAL_ID", "none")
start = time.time()
pid_file = os.path.join(args.log_dir, f"pid-{trial}")
with open(pid_file + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(pid_file + ".tmp", pid_file)
time.sleep(args.seconds)
seen = {"argv": sys.argv[1:], "start": start, "end": time.time(),
        "model_dir": os.environ.get("AIP_MODEL_DIR"),
        "metric_file": os.environ.get("CLOUD_ML_HP_METRIC_FILE")}
path = os.path.join(args.log_dir, f"trial-{trial}.json")
with open(path + ".tmp", "w") as f:
    json.dump(seen, f)
os.replace(path + ".tmp", path)
if args.mode == "fail":
    sys.exit("ValueError: this trial was told to fail")
if args.mode != "silent":
    hpt = hypertune.HyperTune()
    hpt.report_hyperparameter_tuning_metric("score", -100.0, global_step=1)
    score = args.units - (args.x - 0.3) ** 2
    hpt.report_hyperparameter_tuning_metric("score", score, global_step=2)
"""


def trial_sdist() -> bytes:
    """An sdist-shaped tarball of the package ``hptrial`` (module ``hptrial.task``)."""
    files = {
        "setup.py": "from setuptools import setup\nsetup(name='hptrial', version='0.1')\n",
        "hptrial/__init__.py": "",
        "hptrial/task.py": TRIAL,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"hptrial-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def trial_package(gcs) -> str:
    gcs.bucket(BUCKET).blob("staging/hptrial-0.1.tar.gz").upload_from_string(trial_sdist())
    return f"gs://{BUCKET}/staging/hptrial-0.1.tar.gz"


def tuning_job(package: str, log_dir, params: list[dict], **extra) -> dict:
    """A HyperparameterTuningJob body maximising ``score``; ``extra`` overrides fields."""
    args = [f"--log-dir={log_dir}", *extra.pop("args", [])]
    spec = {
        "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
        "packageUris": [package],
        "pythonModule": "hptrial.task",
        "args": args,
    }
    body = {
        "displayName": "hp-test",
        "studySpec": {
            "metrics": [{"metricId": "score", "goal": "MAXIMIZE"}],
            "parameters": params,
            "algorithm": extra.pop("algorithm", "ALGORITHM_UNSPECIFIED"),
        },
        "maxTrialCount": 4,
        "parallelTrialCount": 2,
        "trialJobSpec": {
            "workerPoolSpecs": [
                {
                    "replicaCount": "1",
                    "machineSpec": {"machineType": "n1-standard-4"},
                    "pythonPackageSpec": spec,
                }
            ],
            "baseOutputDirectory": {"outputUriPrefix": f"gs://{BUCKET}/hp/{log_dir.name}"},
        },
    }
    body.update(extra)
    return body


X = {"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}
UNITS = {"parameterId": "units", "integerValueSpec": {"minValue": "1", "maxValue": "3"}}


def jobs(vertex):
    return vertex.projects().locations().hyperparameterTuningJobs()


def wait(
    vertex,
    poll,
    name: str,
    states=("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"),
    timeout=180,
) -> dict:
    return poll.until(
        lambda: (j := jobs(vertex).get(name=name).execute())["state"] in states and j,
        timeout,
        f"tuning job {name} to reach {states}",
    )


def max_overlap(runs: list[dict]) -> int:
    """The most trials that ran at the same moment (from the trials' own clocks)."""
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_four_trials_two_at_a_time_in_vertex_layout(vertex, poll, trial_package, tmp_path):
    body = tuning_job(trial_package, tmp_path, [X, UNITS], args=["--seconds=1"])
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    trials = job["trials"]
    assert [t["id"] for t in trials] == ["1", "2", "3", "4"]
    runs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")}
    assert sorted(runs) == ["trial-1", "trial-2", "trial-3", "trial-4"]
    assert max_overlap(list(runs.values())) == 2  # parallel, and never more than 2
    for trial in trials:
        assert trial["state"] == "SUCCEEDED"
        params = {p["parameterId"]: p["value"] for p in trial["parameters"]}
        assert 0.0 <= params["x"] <= 1.0 and params["units"] in (1, 2, 3)
        run = runs[f"trial-{trial['id']}"]
        # Vertex appends the parameters to the args, and each trial has its own directory.
        assert run["argv"][-2:] == [f"--x={params['x']}", f"--units={int(params['units'])}"]
        assert run["model_dir"] == f"gs://{BUCKET}/hp/{tmp_path.name}/{trial['id']}/model/"
        # The final measurement is the last value reported for the metric.
        final = trial["finalMeasurement"]
        expected = int(params["units"]) - (params["x"] - 0.3) ** 2
        assert final["metrics"] == [{"metricId": "score", "value": pytest.approx(expected)}]
        assert final["stepCount"] == "2"
        assert trial["customJob"].startswith(PARENT + "/customJobs/")
    assert len({r["metric_file"] for r in runs.values()}) == 4  # one file per trial
    listed = jobs(vertex).list(parent=PARENT).execute()["hyperparameterTuningJobs"]
    assert job["name"] in [j["name"] for j in listed]


def test_grid_search_enumerates_its_grid(vertex, poll, trial_package, tmp_path):
    mode = {"parameterId": "mode", "categoricalValueSpec": {"values": ["ok", "silent"]}}
    units = {"parameterId": "units", "discreteValueSpec": {"values": [1, 2, 5]}}
    body = tuning_job(
        trial_package,
        tmp_path,
        [units, mode],
        algorithm="GRID_SEARCH",
        maxTrialCount=10,
        parallelTrialCount=2,
        maxFailedTrialCount=0,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    seen = [{p["parameterId"]: p["value"] for p in t["parameters"]} for t in job["trials"]]
    assert seen == [
        {"units": u, "mode": m} for u in (1, 2, 5) for m in ("ok", "silent")
    ]  # six combinations, in order, then the grid is done (though 10 were allowed)
    states = [t["state"] for t in job["trials"]]
    assert states == ["SUCCEEDED", "INFEASIBLE"] * 3  # "silent" never reports its metric
    assert "reported no value for the metric 'score'" in job["trials"][1]["infeasibleReason"]


def test_a_failing_trial_within_max_failed_trial_count(vertex, poll, trial_package, tmp_path):
    mode = {"parameterId": "mode", "categoricalValueSpec": {"values": ["fail", "ok"]}}
    body = tuning_job(
        trial_package,
        tmp_path,
        [mode],
        algorithm="GRID_SEARCH",
        maxTrialCount=2,
        parallelTrialCount=1,
        maxFailedTrialCount=2,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    failed, ok = job["trials"]
    assert failed["state"] == "INFEASIBLE" and "told to fail" in failed["infeasibleReason"]
    assert ok["state"] == "SUCCEEDED"


def test_too_many_failed_trials_fail_the_job(vertex, poll, trial_package, tmp_path):
    mode = {"parameterId": "mode", "categoricalValueSpec": {"values": ["fail", "ok"]}}
    body = tuning_job(
        trial_package,
        tmp_path,
        [mode],
        algorithm="GRID_SEARCH",
        maxTrialCount=2,
        parallelTrialCount=1,
        maxFailedTrialCount=1,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    assert "maxFailedTrialCount (1)" in job["error"]["message"]
    assert len(job["trials"]) == 1  # the second trial never started


def test_cancel_stops_running_trials(vertex, poll, trial_package, tmp_path):
    body = tuning_job(trial_package, tmp_path, [X], args=["--seconds=60"])
    name = jobs(vertex).create(parent=PARENT, body=body).execute()["name"]
    poll.until(
        lambda: len(jobs(vertex).get(name=name).execute().get("trials", [])) == 2,
        60,
        "two trials to start",
    )
    jobs(vertex).cancel(name=name, body={}).execute()
    job = wait(vertex, poll, name, timeout=60)
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert len(job["trials"]) == 2  # no trial starts after a cancel
    assert all(t["state"] == "INFEASIBLE" for t in job["trials"])
    for trial in job["trials"]:
        custom = vertex.projects().locations().customJobs().get(name=trial["customJob"]).execute()
        assert custom["state"] == "JOB_STATE_CANCELLED"
    op = jobs(vertex).delete(name=name).execute()
    assert poll.operation(op).get("done")
    with pytest.raises(Exception, match="404"):
        jobs(vertex).get(name=name).execute()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"parameters": [{"parameterId": "x"}]}, "Exactly one of double_value_spec"),
        (
            {
                "parameters": [
                    {"parameterId": "x", "doubleValueSpec": {"minValue": 2, "maxValue": 1}}
                ]
            },
            "min_value (2) must not be greater than max_value (1)",
        ),
        (
            {"parameters": [{"parameterId": "m", "categoricalValueSpec": {"values": []}}]},
            # The discovery document already marks the list required.
            "categoricalValueSpec.values; Message: Required field is not set",
        ),
        ({"parallelTrialCount": 5}, "parallel_trial_count (5) must not be greater than"),
    ],
)
def test_bad_studies_are_refused_with_400(vertex, trial_package, tmp_path, change, message):
    body = tuning_job(trial_package, tmp_path, [X])
    if "parameters" in change:
        body["studySpec"]["parameters"] = change["parameters"]
    else:
        body.update(change)
    from googleapiclient.errors import HttpError

    with pytest.raises(HttpError) as caught:
        jobs(vertex).create(parent=PARENT, body=body).execute()
    assert caught.value.resp.status == 400
    assert message in json.loads(caught.value.content)["error"]["message"]


def test_the_same_study_suggests_the_same_trials():
    spec = {
        "metrics": [{"metricId": "score", "goal": "MAXIMIZE"}],
        "parameters": [
            {**X, "scaleType": "UNIT_LINEAR_SCALE"},
            {
                "parameterId": "lr",
                "doubleValueSpec": {"minValue": 1e-4, "maxValue": 1e-1},
                "scaleType": "UNIT_LOG_SCALE",
            },
        ],
    }

    def run() -> list[dict]:
        s, out = study.Study(spec), []
        for n in range(1, 13):
            params = s.suggest(n)
            s.tell(n, -((params["x"] - 0.3) ** 2))
            out.append(params)
        return out

    first = run()
    assert first == run()
    assert all(1e-4 <= p["lr"] <= 1e-1 for p in first)
    # TPE learns: the later half of the trials is nearer the optimum than the first half.
    err = [abs(p["x"] - 0.3) for p in first]
    assert sum(err[6:]) < sum(err[:6])


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


def ci_tune(tmp_path, trial_package, toml: str, *trainer_args: str, flags=()):
    config = tmp_path / "tuning.toml"
    config.write_text(toml)
    out = tmp_path / "outputs.txt"
    argv = ["tune", "--tuning-config", str(config), "--package", trial_package]
    argv += ["--outputs", str(out), *flags, "--", f"--log-dir={tmp_path}", *trainer_args]
    code = cli.main(argv)
    values = dict(x.split("=", 1) for x in out.read_text().splitlines()) if out.exists() else {}
    return code, values


def test_ci_tune_four_trials_two_at_a_time(tune_env, vertex, trial_package, tmp_path, capsys):
    toml = TOML.format(algorithm="ALGORITHM_UNSPECIFIED", max_failed=1, params=X_TOML + UNITS_TOML)
    code, values = ci_tune(tmp_path, trial_package, toml, "--seconds=1")
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
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")]
    assert len(runs) == 4 and max_overlap(runs) == 2


def test_ci_tune_grid_with_a_failing_trial(tune_env, emulator, trial_package, tmp_path, capsys):
    # Through transient errors at the wire, as Vertex gives them at times.
    faults.inject(emulator.vertex_url, "hyperparameterTuningJobs.create", 503, count=1)
    faults.inject(emulator.vertex_url, "hyperparameterTuningJobs.get", 429, count=2)
    params = '[parameters.mode]\ntype = "CATEGORICAL"\nvalues = ["fail", "ok"]\n'
    params += '[parameters.units]\ntype = "DISCRETE"\nvalues = [1, 2]\n'
    toml = TOML.format(algorithm="GRID_SEARCH", max_failed=3, params=params)
    code, values = ci_tune(tmp_path, trial_package, toml)
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


def test_ci_tune_timeout_cancels_the_job(tune_env, vertex, trial_package, tmp_path, capsys):
    toml = TOML.format(algorithm="RANDOM_SEARCH", max_failed=1, params=X_TOML)
    code, _ = ci_tune(tmp_path, trial_package, toml, "--seconds=60", flags=["--timeout", "3"])
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
values = [0.00001, 0.05]
"""


def test_pipeline_tune_promotes_the_best_trial(tmp_path):
    trainer_copy(tmp_path)
    module = "trainer.task"
    sources = "".join(p.read_text() for p in (ROOT / "trainer").glob("*.py"))
    if "hypertune" not in sources:
        (tmp_path / "trainer" / "hp_report.py").write_text(REPORTER)
        module = "trainer.hp_report"
    (tmp_path / "gate.toml").write_text('[metrics.accuracy]\ndirection = "higher"\n'
                                        "lower_bound = 0.8\n")  # fmt: skip
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
    # learning rate 1e-5 learns nothing in 200 steps: trial 2 is the best and is promoted.
    assert values["best_trial"] == "2", result.stdout
    assert json.loads(values["best_params"]) == {"learning-rate": 0.05}
    assert values["gate_decision"] == "yes" and values["model_version"] == "1"
    versions = run_ci(["versions", "--json"], env, timeout=120)
    (version,) = json.loads(versions.stdout)
    tuning_id = values["job_name"].rsplit("/", 1)[-1]
    assert version["labels"]["tuning-job"] == tuning_id
    assert version["labels"]["tuning-trial"] == "2"
    assert version["labels"]["job-id"] == values["best_trial_job"].rsplit("/", 1)[-1]
    assert version["artifact_uri"] == values["best_trial_dir"] + "/model"
    predictions = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [p["class_ids"] for p in predictions[-3:]] == [0, 1, 2]


# --- the official SDK: aiplatform.HyperparameterTuningJob ----------------------------


def sdk_custom_job(trial_package: str, tmp_path, *args: str):
    from google.cloud import aiplatform

    pool = {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "python_package_spec": {
            "executor_image_uri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-15.py310:latest",
            "package_uris": [trial_package],
            "python_module": "hptrial.task",
            "args": [f"--log-dir={tmp_path}", *args],
        },
    }
    return aiplatform.CustomJob(
        display_name="sdk-trial",
        worker_pool_specs=[pool],
        base_output_dir=f"gs://{BUCKET}/sdk-hp/{tmp_path.name}",
    )


@pytest.mark.usefixtures("sdk")
def test_sdk_four_trials_two_at_a_time(trial_package, tmp_path):
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    job = aiplatform.HyperparameterTuningJob(
        display_name="sdk-hp",
        custom_job=sdk_custom_job(trial_package, tmp_path, "--seconds=1"),
        metric_spec={"score": "maximize"},
        parameter_spec={
            "x": hpt.DoubleParameterSpec(min=0, max=1, scale="linear"),
            "units": hpt.IntegerParameterSpec(min=1, max=3, scale="linear"),
        },
        max_trial_count=4,
        parallel_trial_count=2,
    )
    job.run(sync=True)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    trials = job.trials
    assert [t.id for t in trials] == ["1", "2", "3", "4"]
    assert all(t.state.name == "SUCCEEDED" for t in trials)
    for trial in trials:
        params = {p.parameter_id: p.value for p in trial.parameters}
        expected = params["units"] - (params["x"] - 0.3) ** 2
        assert trial.final_measurement.metrics[0].value == pytest.approx(expected)
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")]
    assert len(runs) == 4 and max_overlap(runs) == 2
    assert runs[0]["model_dir"].startswith(f"gs://{BUCKET}/sdk-hp/{tmp_path.name}/")


@pytest.mark.usefixtures("sdk")
def test_sdk_grid_search_with_failing_trials_then_cancel(trial_package, tmp_path):
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    grid = aiplatform.HyperparameterTuningJob(
        display_name="sdk-grid",
        custom_job=sdk_custom_job(trial_package, tmp_path),
        metric_spec={"score": "maximize"},
        parameter_spec={
            "mode": hpt.CategoricalParameterSpec(values=["fail", "ok"]),
            "units": hpt.DiscreteParameterSpec(values=[1, 2], scale="linear"),
        },
        max_trial_count=4,
        parallel_trial_count=2,
        max_failed_trial_count=3,
        search_algorithm="grid",
    )
    grid.run(sync=True)
    assert grid.state.name == "JOB_STATE_SUCCEEDED"
    seen = [{p.parameter_id: p.value for p in t.parameters} for t in grid.trials]
    assert seen == [{"mode": m, "units": u} for m in ("fail", "ok") for u in (1, 2)]
    assert [t.state.name for t in grid.trials] == ["INFEASIBLE"] * 2 + ["SUCCEEDED"] * 2

    slow = aiplatform.HyperparameterTuningJob(
        display_name="sdk-cancel",
        custom_job=sdk_custom_job(trial_package, tmp_path / "slow", "--seconds=60"),
        metric_spec={"score": "maximize"},
        parameter_spec={"x": hpt.DoubleParameterSpec(min=0, max=1, scale="linear")},
        max_trial_count=4,
        parallel_trial_count=2,
    )
    (tmp_path / "slow").mkdir()
    slow.run(sync=False)
    slow.wait_for_resource_creation()
    slow.cancel()
    deadline = time.monotonic() + 60
    while slow.state.name not in ("JOB_STATE_CANCELLED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline, slow.state
        time.sleep(0.1)
    assert slow.state.name == "JOB_STATE_CANCELLED"


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
            "parameters.n.min: INTEGER needs a number, got 1.5",
        ),
    ],
)
def test_bad_tuning_toml_names_the_key(toml, message):
    with pytest.raises(UsageError) as caught:
        tuning_config.parse(tomllib.loads('metric = "score"\n' + toml), "t.toml")
    assert str(caught.value).startswith("t.toml: ") and message in str(caught.value)


def test_a_killed_emulator_fails_its_tuning_jobs_and_their_trials_on_restart(tmp_path):
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    first = process.start(state)
    try:
        storage_client(first).create_bucket(BUCKET).blob("p.tar.gz").upload_from_string(
            trial_sdist()
        )
        vertex = clients.vertex("us-central1", first.vertex_url, anonymous=True)
        body = tuning_job(f"gs://{BUCKET}/p.tar.gz", logs, [X], args=["--seconds=600"])
        name = jobs(vertex).create(parent=PARENT, body=body).execute()["name"]
        pids = Poll(vertex).until(
            lambda: (found := sorted(logs.glob("pid-*"))) and len(found) == 2 and found,
            60,
            "two trials to start",
        )
        pids = [int(p.read_text()) for p in pids]
    finally:
        first.kill()
    with process.start(state) as second:
        vertex = clients.vertex("us-central1", second.vertex_url, anonymous=True)
        job = jobs(vertex).get(name=name).execute()
        assert job["state"] == "JOB_STATE_FAILED"
        assert "stopped while this job was running" in job["error"]["message"]
        assert [t["state"] for t in job["trials"]] == ["INFEASIBLE", "INFEASIBLE"]
        assert not any(alive(pid) for pid in pids)  # the trials' processes were stopped


def test_ctrl_c_cancels_the_tuning_job(tune_env, vertex, trial_package, tmp_path):
    config = tmp_path / "tuning.toml"
    config.write_text(TOML.format(algorithm="RANDOM_SEARCH", max_failed=1, params=X_TOML))
    argv = [sys.executable, "-m", "ci", "tune", "--tuning-config", str(config)]
    argv += ["--package", trial_package, "--", f"--log-dir={tmp_path}", "--seconds=60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # staging lines come first
        found = (re.search(r"submitted (\S+/hyperparameterTuningJobs/\d+)", x) for x in lines)
        name = next(m for m in found if m)[1]
        Poll(vertex).until(lambda: len(list(tmp_path.glob("pid-*"))) == 2, 60, "trials to run")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        proc.wait()
    job = jobs(vertex).get(name=name).execute()
    assert job["state"] == "JOB_STATE_CANCELLED"  # nothing left running in the cloud
