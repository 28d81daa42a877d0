"""Hyperparameter tuning jobs in the emulator, over HTTP (the discovery client and the
official SDK), with a tiny trial package that reports through cloudml-hypertune.

``python -m ci tune`` and ``pipeline --tune`` are in ``tests/test_tune.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ci import clients
from ci.emulator import process, study
from tests.conftest import BUCKET, PARENT, Poll, storage_client
from tests.sdists import sdist_bytes
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
    return sdist_bytes("hptrial-0.1", files)


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
            "Field: hyperparameter_tuning_job.study_spec.parameters[0]"
            ".categorical_value_spec.values; Message: Required field is not set",
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


def _pid_files(folder: Path) -> list[Path]:
    """The trials' complete pid files (``pid-N.tmp`` is one being written, then renamed)."""
    return sorted(p for p in folder.glob("pid-*") if p.suffix != ".tmp")


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
            lambda: len(found := _pid_files(logs)) == 2 and found,
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


@pytest.mark.usefixtures("sdk")
def test_sdk_conditional_parameters_in_a_grid(trial_package, tmp_path):
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    child = hpt.DiscreteParameterSpec(values=[1, 3], scale="linear", parent_values=["ok"])
    job = aiplatform.HyperparameterTuningJob(
        display_name="sdk-conditional",
        custom_job=sdk_custom_job(trial_package, tmp_path),
        metric_spec={"score": "maximize"},
        parameter_spec={
            "mode": hpt.CategoricalParameterSpec(
                values=["ok", "silent"], conditional_parameter_spec={"units": child}
            )
        },
        max_trial_count=4,
        parallel_trial_count=3,
        search_algorithm="grid",
    )
    job.run(sync=True)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    seen = [{p.parameter_id: p.value for p in t.parameters} for t in job.trials]
    assert seen == [{"mode": "ok", "units": 1}, {"mode": "ok", "units": 3}, {"mode": "silent"}]
    runs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")}
    assert runs["trial-2"]["argv"][-2:] == ["--mode=ok", "--units=3"]
    assert [t.state.name for t in job.trials] == ["SUCCEEDED", "SUCCEEDED", "INFEASIBLE"]
