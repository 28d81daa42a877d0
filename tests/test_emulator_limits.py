"""CustomJobs and HyperparameterTuningJobs at their limits and on bad input, over HTTP.

What Vertex refuses is a 400 in Google's error format; what Vertex would run on thousands
of machines (replicaCount 99999, a 2**31-point grid, 50 parallel trials) runs here on a
bounded number of local processes, with a note in the job's log.
"""

from __future__ import annotations

import json
import time

import pytest
from googleapiclient.errors import HttpError

from ci import clients
from ci.emulator import faults, process, replicas, study
from tests.conftest import BUCKET, PARENT, Poll, stage_bytes, storage_client
from tests.test_emulator_jobs import _sdist, alive, create, fake_job, written_pid_files
from tests.test_tuning import jobs, max_overlap, trial_sdist, tuning_job, wait

LOCATION = PARENT.rsplit("/", 1)[-1]


@pytest.fixture(scope="session")
def package(gcs) -> str:
    """The fake job package of test_emulator_jobs (``report``, ``fail``, ``hang``)."""
    return stage_bytes(gcs, "limits-fakejob-0.1.tar.gz", _sdist())


@pytest.fixture(scope="session")
def hp_package(gcs) -> str:
    """The trial package of test_tuning (``hptrial.task``, reports ``score``)."""
    return stage_bytes(gcs, "limits-hptrial-0.1.tar.gz", trial_sdist())


def error_of(call) -> tuple[int, dict]:
    """The HTTP status and the ``error`` object of a call that must fail."""
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def custom_jobs(vertex):
    return vertex.projects().locations().customJobs()


# --- CustomJobs: limits ------------------------------------------------------------------


def test_a_huge_replica_count_runs_a_bounded_number_of_processes_and_says_so(
    vertex, poll, emulator, package, tmp_path
):
    body = fake_job(package, "report", [str(tmp_path)], counts=(1, 99999))
    done = poll.job(create(vertex, body)["name"], timeout=120)
    assert done["state"] == "JOB_STATE_SUCCEEDED", done.get("error")
    reported = sorted(p.stem for p in tmp_path.glob("*.json"))
    limit = replicas.LOCAL_REPLICA_LIMIT
    assert len(reported) == limit  # the chief and limit - 1 workers, no more
    assert reported[0] == "chief-0" and f"worker-{limit - 2}" in reported
    assert done["jobSpec"]["workerPoolSpecs"][1]["replicaCount"] == "99999"  # as asked
    logs = faults.job_logs(emulator.vertex_url, done["name"])
    assert f"asks for 100000 replicas; the emulator's limit of {limit} local processes" in logs


def test_replica_count_plan_is_bounded_without_a_cap():
    started = time.monotonic()
    plan, notes = replicas.plan([{}, {"replicaCount": str(2**62)}, {"replicaCount": "5"}])
    assert len(plan) == replicas.LOCAL_REPLICA_LIMIT and time.monotonic() - started < 5
    assert [r.pool for r in plan].count(2) == 0  # the last pools lose their replicas first
    assert f"asks for {2**62 + 6} replicas" in notes[0]


def test_jobs_beyond_the_process_limit_wait_pending_and_can_be_cancelled(tmp_path):
    # --max-local-replicas=1: one process a job, two at once in all (jobs.JOBS_AT_FULL_SIZE).
    with process.start(tmp_path / "state", max_local_replicas=1) as emu:
        storage_client(emu).create_bucket(BUCKET).blob("p.tar.gz").upload_from_string(_sdist())
        vertex = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
        poll = Poll(vertex)
        package = f"gs://{BUCKET}/p.tar.gz"
        out = tmp_path / "out"
        out.mkdir()
        running = [create(vertex, fake_job(package, "hang", [str(out)])) for _ in range(2)]
        for job in running:
            poll.job(job["name"], ("JOB_STATE_RUNNING",), timeout=60)
        poll.until(lambda: len(written_pid_files(out)) == 2, 30, "both processes to start")
        waiting = create(vertex, fake_job(package, "hang", [str(out)]))
        poll.until(
            lambda: "wait for room" in faults.job_logs(emu.vertex_url, waiting["name"]),
            30,
            "the third job to wait for room",
        )
        assert custom_jobs(vertex).get(name=waiting["name"]).execute()["state"] == (
            "JOB_STATE_PENDING"
        )
        assert len(written_pid_files(out)) == 2  # its process never started
        custom_jobs(vertex).cancel(name=waiting["name"], body={}).execute()
        cancelled = poll.job(waiting["name"], timeout=30)
        assert cancelled["state"] == "JOB_STATE_CANCELLED" and cancelled["error"]["code"] == 1
        assert "startTime" not in cancelled  # it never ran
        # Room again once a running job ends: a new job runs.
        custom_jobs(vertex).cancel(name=running[0]["name"], body={}).execute()
        poll.job(running[0]["name"], timeout=30)
        later = create(vertex, fake_job(package, "hang", [str(out)]))
        poll.job(later["name"], ("JOB_STATE_RUNNING",), timeout=60)
        poll.until(lambda: len(written_pid_files(out)) >= 3, 30, "the new job's process")
        assert len(written_pid_files(out)) == 3  # the cancelled job never ran


def test_a_job_over_its_scheduling_timeout_fails_and_its_processes_are_stopped(
    vertex, poll, package, tmp_path
):
    body = fake_job(package, "hang", [str(tmp_path)])
    body["jobSpec"]["scheduling"] = {"timeout": "1.5s", "restartJobOnWorkerRestart": True}
    job = create(vertex, body)
    files = poll.until(lambda: written_pid_files(tmp_path), 60, "the replica to start")
    pids = [int(p) for p in files[0].read_text().split()]
    done = poll.job(job["name"], timeout=60)
    assert done["state"] == "JOB_STATE_FAILED"
    assert done["error"]["code"] == 4  # DEADLINE_EXCEEDED
    assert "scheduling.timeout (1.5s)" in done["error"]["message"]
    assert done["endTime"] >= done["startTime"]
    poll.until(lambda: not any(alive(p) for p in pids), 10, "the processes to end")


# --- CustomJobs: bad input -----------------------------------------------------------


def _pools(package: str, *counts) -> list[dict]:
    return fake_job(package, "report", ["/nonexistent"], counts=counts)["jobSpec"][
        "workerPoolSpecs"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda spec, pkg: spec.update(workerPoolSpecs=[{}]), "worker_pool_specs[0]"),
        (
            lambda spec, pkg: spec.update(workerPoolSpecs=[*_pools(pkg, 1), {}, {}, {}, {}]),
            "at most 4 worker pools",
        ),
        (lambda spec, pkg: spec.update(workerPoolSpecs=_pools(pkg, 2)), "exactly 1 replica"),
        (lambda spec, pkg: spec.update(workerPoolSpecs=_pools(pkg, 0)), "exactly 1 replica"),
        (lambda spec, pkg: spec.update(workerPoolSpecs=_pools(pkg, 1, -1)), "non-negative int64"),
        (
            lambda spec, pkg: spec.update(workerPoolSpecs=_pools(pkg, 1, 2**63)),
            "non-negative int64",
        ),
        (
            lambda spec, pkg: spec["workerPoolSpecs"][0].update(containerSpec={"imageUri": "i"}),
            "not both",
        ),
        (lambda spec, pkg: spec.update(scheduling={"timeout": "ten minutes"}), "timeout"),
        (lambda spec, pkg: spec.update(scheduling={"timeout": "0s"}), "must be positive"),
        (
            lambda spec, pkg: spec.update(baseOutputDirectory={"outputUriPrefix": "/tmp/out"}),
            "gs://bucket/path",
        ),
        (
            lambda spec, pkg: spec["workerPoolSpecs"][0]["pythonPackageSpec"].update(
                packageUris=[pkg] * 101
            ),
            "at most 100 package URIs",
        ),
        (
            lambda spec, pkg: spec["workerPoolSpecs"][0]["pythonPackageSpec"].update(
                env=[{"name": f"V{i}", "value": "x"} for i in range(101)]
            ),
            "at most 100 environment variables",
        ),
    ],
)
def test_bad_job_specs_are_refused_with_400(vertex, package, change, message):
    body = fake_job(package, "report", ["/nonexistent"])
    change(body["jobSpec"], package)
    before = len(custom_jobs(vertex).list(parent=PARENT).execute().get("customJobs", []))
    status, error = error_of(custom_jobs(vertex).create(parent=PARENT, body=body))
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert message in error["message"]
    after = len(custom_jobs(vertex).list(parent=PARENT).execute().get("customJobs", []))
    assert after == before  # nothing was created


# --- CustomJobs: names, cancel, delete ------------------------------------------------


def test_a_job_is_found_by_project_number_and_only_in_its_location(vertex, poll, package, tmp_path):
    job = poll.job(create(vertex, fake_job(package, "report", [str(tmp_path)]))["name"])
    job_id = job["name"].rsplit("/", 1)[-1]
    by_number = f"projects/123456789/locations/{LOCATION}/customJobs/{job_id}"
    got = custom_jobs(vertex).get(name=by_number).execute()
    assert got["name"] == job["name"] and got["state"] == "JOB_STATE_SUCCEEDED"
    listed = custom_jobs(vertex).list(parent=f"projects/123456789/locations/{LOCATION}")
    assert job["name"] in [j["name"] for j in listed.execute()["customJobs"]]
    status, error = error_of(custom_jobs(vertex).cancel(name=by_number, body={}))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    for elsewhere in (
        f"projects/emulator-tests/locations/europe-west4/customJobs/{job_id}",
        f"projects/another-project/locations/{LOCATION}/customJobs/{job_id}",
    ):
        status, error = error_of(custom_jobs(vertex).get(name=elsewhere))
        assert (status, error["status"]) == (404, "NOT_FOUND")


def test_cancel_walks_cancelling_to_cancelled_and_a_finished_job_refuses_it(
    vertex, poll, package, tmp_path
):
    job = create(vertex, fake_job(package, "hang", [str(tmp_path)]))
    running = poll.job(job["name"], ("JOB_STATE_RUNNING",), timeout=60)
    status, error = error_of(custom_jobs(vertex).delete(name=job["name"]))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    assert custom_jobs(vertex).cancel(name=job["name"], body={}).execute() == {}
    right_after = custom_jobs(vertex).get(name=job["name"]).execute()
    assert right_after["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    assert right_after["updateTime"] > running["updateTime"]
    done = poll.job(job["name"], timeout=30)
    assert done["state"] == "JOB_STATE_CANCELLED"
    assert done["error"]["code"] == 1 and "endTime" in done
    assert done["createTime"] <= done["startTime"] <= done["endTime"] <= done["updateTime"]
    status, error = error_of(custom_jobs(vertex).cancel(name=job["name"], body={}))
    assert (status, error["code"], error["status"]) == (400, 400, "FAILED_PRECONDITION")
    listed = custom_jobs(vertex).list(
        parent=PARENT, filter='state="JOB_STATE_CANCELLED" AND display_name="fake-hang"'
    )
    assert job["name"] in [j["name"] for j in listed.execute()["customJobs"]]


# --- HyperparameterTuningJobs: limits ----------------------------------------------------


HUGE = {"parameterId": "units", "integerValueSpec": {"minValue": "0", "maxValue": str(2**31 - 1)}}


def test_a_grid_of_two_billion_points_runs_its_first_trials(vertex, poll, hp_package, tmp_path):
    x = {"parameterId": "x", "discreteValueSpec": {"values": [0.25, 0.5]}}
    body = tuning_job(
        hp_package,
        tmp_path,
        [HUGE, x],
        algorithm="GRID_SEARCH",
        maxTrialCount=3,
        parallelTrialCount=3,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    seen = [{p["parameterId"]: p["value"] for p in t["parameters"]} for t in job["trials"]]
    assert seen == [{"units": 0, "x": 0.25}, {"units": 0, "x": 0.5}, {"units": 1, "x": 0.25}]
    for trial in job["trials"]:
        assert {"id", "state", "parameters", "finalMeasurement", "startTime", "endTime"} <= set(
            trial
        )
        assert trial["startTime"] <= trial["endTime"]


def test_grid_study_enumerates_lazily():
    spec = {
        "metrics": [{"metricId": "m", "goal": "MINIMIZE"}],
        "algorithm": "GRID_SEARCH",
        "parameters": [HUGE, {**HUGE, "parameterId": "other"}],
    }
    started = time.monotonic()
    s = study.Study(spec)
    first = [s.suggest(n) for n in range(1, 4)]
    assert first == [{"units": 0, "other": v} for v in (0, 1, 2)]
    assert time.monotonic() - started < 2  # 2**62 points were never built


def test_more_parallel_trials_than_the_local_limit_run_in_turn(
    vertex, poll, emulator, hp_package, tmp_path
):
    from ci.emulator.tuning import LOCAL_PARALLEL_LIMIT

    count = LOCAL_PARALLEL_LIMIT + 2
    mode = {"parameterId": "units", "integerValueSpec": {"minValue": "1", "maxValue": "100"}}
    body = tuning_job(
        hp_package,
        tmp_path,
        [mode],
        algorithm="GRID_SEARCH",
        args=["--seconds=1"],
        maxTrialCount=count,
        parallelTrialCount=count,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    assert len(job["trials"]) == count
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")]
    assert len(runs) == count and max_overlap(runs) <= LOCAL_PARALLEL_LIMIT
    note = faults.job_logs(emulator.vertex_url, job["name"])
    assert f"parallelTrialCount {count} is more than the emulator's limit" in note


def test_a_trial_gets_its_id_in_tf_config(vertex, poll, package, tmp_path):
    # The fake "report" module as a two-replica trial: it reports its environment (and no
    # metric, so the trial is infeasible and the job fails; the environment is the point).
    spec = fake_job(package, "report", [str(tmp_path)], counts=(1, 1))["jobSpec"]
    body = {
        "displayName": "tf-config-trial",
        "studySpec": {
            "metrics": [{"metricId": "score", "goal": "MAXIMIZE"}],
            "parameters": [{"parameterId": "flag", "categoricalValueSpec": {"values": ["a"]}}],
            "algorithm": "GRID_SEARCH",
        },
        "maxTrialCount": 1,
        "parallelTrialCount": 1,
        "trialJobSpec": spec,
    }
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_FAILED"  # no metric reported
    seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(seen) == ["chief-0", "worker-0"]
    for name, kind in (("chief-0", "chief"), ("worker-0", "worker")):
        config = json.loads(seen[name]["TF_CONFIG"])
        assert config["task"] == {"type": kind, "index": 0, "trial": "1"}
        assert config["environment"] == "cloud"
        assert config["job"]["workerPoolSpecs"][0]["pythonPackageSpec"]["args"][-1] == "--flag=a"
        assert json.loads(seen[name]["CLUSTER_SPEC"])["task"]["trial"] == "1"


# --- HyperparameterTuningJobs: conditional parameters, bad input, names ---------------


def test_conditional_parameters_are_set_only_where_their_parent_allows(
    vertex, poll, hp_package, tmp_path
):
    mode = {
        "parameterId": "mode",
        "categoricalValueSpec": {"values": ["ok", "silent"]},
        "conditionalParameterSpecs": [
            {
                "parentCategoricalValues": {"values": ["ok"]},
                "parameterSpec": {"parameterId": "x", "discreteValueSpec": {"values": [0.1, 0.3]}},
            }
        ],
    }
    body = tuning_job(
        hp_package,
        tmp_path,
        [mode],
        algorithm="GRID_SEARCH",
        maxTrialCount=5,
        parallelTrialCount=1,
    )
    job = wait(vertex, poll, jobs(vertex).create(parent=PARENT, body=body).execute()["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    seen = [{p["parameterId"]: p["value"] for p in t["parameters"]} for t in job["trials"]]
    assert seen == [{"mode": "ok", "x": 0.1}, {"mode": "ok", "x": 0.3}, {"mode": "silent"}]
    runs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("trial-*.json")}
    assert runs["trial-2"]["argv"][-2:] == ["--mode=ok", "--x=0.3"]
    assert runs["trial-3"]["argv"][-1] == "--mode=silent"
    # A random search draws the child only under its parent's value too.
    spec = {**body["studySpec"], "algorithm": "RANDOM_SEARCH"}
    spec["parameters"][0]["conditionalParameterSpecs"][0]["parameterSpec"] = {
        "parameterId": "x",
        "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0},
    }
    s = study.Study(spec)
    for n in range(1, 21):
        params = s.suggest(n)
        assert ("x" in params) == (params["mode"] == "ok"), params
        s.tell(n, 1.0)


def _param(**fields) -> list[dict]:
    return [{"parameterId": "p", **fields}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"parameters": _param(doubleValueSpec={"minValue": 0, "maxValue": 1})},
            "GRID_SEARCH needs INTEGER, CATEGORICAL or DISCRETE parameters, not DOUBLE",
        ),
        (
            {
                "parameters": _param(
                    categoricalValueSpec={"values": ["a", "b"]}, scaleType="UNIT_LINEAR_SCALE"
                )
            },
            "must be unset for a CATEGORICAL parameter",
        ),
        (
            {"parameters": _param(integerValueSpec={"minValue": "5", "maxValue": "1"})},
            "min_value (5) must not be greater than max_value (1)",
        ),
        (
            {
                "parameters": _param(
                    discreteValueSpec={"values": [0, 1]}, scaleType="UNIT_LOG_SCALE"
                )
            },
            "UNIT_LOG_SCALE needs every value > 0",
        ),
        (
            {
                "parameters": _param(
                    categoricalValueSpec={"values": ["a", "b"]},
                    conditionalParameterSpecs=[
                        {
                            "parentCategoricalValues": {"values": ["c"]},
                            "parameterSpec": {
                                "parameterId": "q",
                                "categoricalValueSpec": {"values": ["x"]},
                            },
                        }
                    ],
                )
            },
            "'c' is not a value of the parent parameter 'p'",
        ),
        (
            {
                "parameters": _param(
                    categoricalValueSpec={"values": ["a", "b"]},
                    conditionalParameterSpecs=[
                        {
                            "parentIntValues": {"values": ["1"]},
                            "parameterSpec": {
                                "parameterId": "q",
                                "categoricalValueSpec": {"values": ["x"]},
                            },
                        }
                    ],
                )
            },
            "needs exactly the condition parent_categorical_values",
        ),
        (
            {
                "parameters": _param(
                    categoricalValueSpec={"values": ["a"]},
                    conditionalParameterSpecs=[
                        {
                            "parentCategoricalValues": {"values": ["a"]},
                            "parameterSpec": {
                                "parameterId": "p",
                                "categoricalValueSpec": {"values": ["x"]},
                            },
                        }
                    ],
                )
            },
            "must be non-empty, unique",
        ),
        (
            {"parameters": _param(doubleValueSpec={"minValue": float("-inf"), "maxValue": 1})},
            "must be finite numbers",
        ),
        ({"metricId": "my score"}, "without whitespace"),
        ({"maxTrialCount": 2**31}, "more than an int32 holds"),
        ({"parallelTrialCount": 3, "maxTrialCount": 2}, "must not be greater than"),
        ({"maxFailedTrialCount": -1}, "must not be negative"),
        ({"pools": [{}]}, "worker_pool_specs[0]"),
        ({"replicas": "-3"}, "non-negative int64"),
    ],
)
def test_bad_tuning_jobs_are_refused_with_400(vertex, hp_package, tmp_path, change, message):
    grid = {"parameterId": "p", "categoricalValueSpec": {"values": ["a"]}}
    body = tuning_job(hp_package, tmp_path, [grid], algorithm="GRID_SEARCH")
    change = dict(change)
    if "parameters" in change:
        body["studySpec"]["parameters"] = change.pop("parameters")
    if "metricId" in change:
        body["studySpec"]["metrics"][0]["metricId"] = change.pop("metricId")
    if "pools" in change:
        body["trialJobSpec"]["workerPoolSpecs"] = change.pop("pools")
    if "replicas" in change:
        pool = dict(body["trialJobSpec"]["workerPoolSpecs"][0], replicaCount=change.pop("replicas"))
        body["trialJobSpec"]["workerPoolSpecs"].append(pool)
    body.update(change)
    status, error = error_of(jobs(vertex).create(parent=PARENT, body=body))
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert message in error["message"], error


def test_a_tuning_job_by_project_number_cancel_and_finished_states(
    vertex, poll, hp_package, tmp_path
):
    body = tuning_job(hp_package, tmp_path, [HUGE], args=["--seconds=60"])
    name = jobs(vertex).create(parent=PARENT, body=body).execute()["name"]
    by_number = "projects/987654321/" + name.split("/", 2)[2]
    poll.until(
        lambda: len(jobs(vertex).get(name=by_number).execute().get("trials", [])) == 2,
        60,
        "two trials to start",
    )
    status, error = error_of(jobs(vertex).delete(name=name))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    jobs(vertex).cancel(name=by_number, body={}).execute()
    job = wait(vertex, poll, name, timeout=60)
    assert job["state"] == "JOB_STATE_CANCELLED" and job["error"]["code"] == 1
    assert job["startTime"] <= job["endTime"] <= job["updateTime"]
    assert all(t["state"] == "INFEASIBLE" and "endTime" in t for t in job["trials"])
    status, error = error_of(jobs(vertex).cancel(name=name, body={}))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    elsewhere = name.replace(f"/locations/{LOCATION}/", "/locations/europe-west4/")
    status, error = error_of(jobs(vertex).get(name=elsewhere))
    assert (status, error["status"]) == (404, "NOT_FOUND")
