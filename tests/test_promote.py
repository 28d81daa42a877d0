"""``ci promote``, ``rollback``, ``versions``, ``predict`` against the running emulator.

Two real training jobs are shared by the module; each test promotes them into its own
model (its own display name), so tests do not depend on each other's registry state.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from ci import cli, tiers
from ci.emulator import faults
from ci.errors import BadInstance
from ci.promote import promote, version_labels
from ci.train import train
from ci.vertex import (
    find_endpoint,
    find_model,
    list_versions,
    staging_name,
    traffic_by_version,
    undeploy,
)
from tests.conftest import Poll
from tests.conftest import predict as raw_predict
from tests.merge_path import ROOT, cloud_for, run_ci, settings_env

INSTANCES = ROOT / "data" / "test.json"


@pytest.fixture(scope="module")
def jobs(emulator, gcs, trainer_sdist):
    """Two successful training jobs (resource names), trained once for the module."""
    env = settings_env(emulator, "promote-jobs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", emulator.storage_host)
        with cloud_for(env) as cloud:
            pools = tiers.pools("BASIC")
            return [train(cloud, pools, str(trainer_sdist), 150).job["name"] for _ in range(2)]


@pytest.fixture
def env(request, emulator, gcs, monkeypatch):
    """Settings for a model named after the test, exported to the environment too."""
    values = settings_env(emulator, f"m-{request.node.name[5:40]}".replace("_", "-"))
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def snapshot(env) -> dict:
    """Versions with aliases and job ids, and the traffic share of each version."""
    with cloud_for(env) as cloud:
        model = find_model(cloud)
        endpoint = find_endpoint(cloud)
        found = list_versions(cloud, model["name"]) if model else []
        return {
            "versions": [
                (v["versionId"], sorted(v.get("versionAliases", [])), v["labels"]["job-id"])
                for v in found
            ],
            "traffic": traffic_by_version(endpoint, model["name"]) if endpoint and model else {},
        }


def job_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def test_second_version_takes_default_and_traffic_then_rollback(env, jobs, tmp_path, capsys):
    a, b = jobs
    with cloud_for(env) as cloud:
        first = promote(cloud, a, INSTANCES)
        assert [p["class_ids"] for p in first.predictions] == [0, 1, 2]
        second = promote(cloud, b, INSTANCES)
    assert (first.version_id, second.version_id) == ("1", "2")
    state = snapshot(env)
    assert state["versions"] == [
        ("1", ["previous"], job_id(a)),
        ("2", ["default"], job_id(b)),
    ]
    assert state["traffic"] == {"2": 100}  # version 1 is undeployed once 2 passed
    with cloud_for(env) as cloud:
        labels = list_versions(cloud, find_model(cloud)["name"])[1]["labels"]
    assert labels["git-sha"] == env["CI_GIT_SHA"] and len(labels["data-hash"]) == 16

    out = tmp_path / "out.txt"
    assert cli.main(["rollback", "--outputs", str(out)]) == 0
    assert out.read_text() == "model_version=1\n"
    state = snapshot(env)
    assert state["versions"][0][1] == ["default"] and state["versions"][1][1] == []
    assert state["traffic"] == {"1": 100}
    capsys.readouterr()
    assert cli.main(["versions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version_id"], r["aliases"], r["traffic_percent"]) for r in rows] == [
        ("1", ["default"], 100),
        ("2", [], 0),
    ]
    assert rows[0]["metrics"]["accuracy"] > 0
    assert cli.main(["versions"]) == 0
    table = capsys.readouterr().out
    assert "| 1 | default | 100% |" in table and f"job-id={job_id(b)}" in table
    summary = tmp_path / "summary.md"
    assert cli.main(["predict", "--outputs", str(out), "--summary", str(summary)]) == 0
    assert "(model version 1," in capsys.readouterr().out
    predictions = json.loads(out.read_text().splitlines()[-1].removeprefix("predictions="))
    assert [p["class_ids"] for p in predictions] == [0, 1, 2]
    assert summary.read_text().startswith("### Predictions (model version 1)")
    # Nothing holds 'previous' any more: a second rollback must be explicit.
    assert cli.main(["rollback"]) == 1
    assert "give --to-version" in capsys.readouterr().err


def test_promote_again_creates_no_duplicate(env, jobs):
    a, _ = jobs
    with cloud_for(env) as cloud:
        first = promote(cloud, a, INSTANCES)
        before = snapshot(env)
        again = promote(cloud, a, INSTANCES)
    assert not again.created and again.version_id == first.version_id
    assert again.deployed_id == first.deployed_id  # the serving deployment was not touched
    assert (
        snapshot(env)
        == before
        == {
            "versions": [("1", ["default"], job_id(a))],
            "traffic": {"1": 100},
        }
    )


def test_failing_smoke_test_rolls_back(env, jobs, tmp_path):
    a, b = jobs
    bad = tmp_path / "bad.json"
    bad.write_text('{"petal_length": 1.0}\n')
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
        before = snapshot(env)
        with pytest.raises(BadInstance, match=r"predict on .* failed: HTTP 400: .*petal_length"):
            promote(cloud, b, bad)
    assert snapshot(env) == before  # version 2 deleted, alias and traffic on version 1


def test_failing_first_promotion_leaves_no_model(env, jobs, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"SepalLength": "long"}\n')
    with cloud_for(env) as cloud:
        with pytest.raises(BadInstance):
            promote(cloud, jobs[0], bad)
        assert find_model(cloud) is None  # no champion that never passed a smoke test
        assert find_endpoint(cloud).get("deployedModels", []) == []


def test_gate_command_against_the_champion(env, jobs, tmp_path, capsys):
    a, b = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
    decision, table = tmp_path / "decision.json", tmp_path / "table.md"
    argv = [
        "gate",
        "--job",
        b,
        "--config",
        str(ROOT / "gate.toml"),
        "--decision-out",
        str(decision),
        "--markdown-out",
        str(table),
    ]
    assert cli.main([*argv, "--threshold", "accuracy.lower_bound=0"]) == 0
    assert json.loads(decision.read_text())["champion"]["version_id"] == "1"
    assert cli.main([*argv, "--threshold", "accuracy.lower_bound=1.01"]) == 3
    assert capsys.readouterr().err.startswith("Error: gate said no: accuracy >= 1.01")
    assert json.loads(decision.read_text())["decision"] == "no"
    assert "| accuracy |" in table.read_text() and "champion v1" in table.read_text()


def test_survives_injected_429_and_503(env, emulator, jobs):
    a, b = jobs
    url = emulator.vertex_url
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
        faults.inject(url, "models.upload", 503)
        faults.inject(url, "deployModel", 429)
        faults.inject(url, "mergeVersionAliases", 503)
        faults.inject(url, "endpoints.predict", 429)
        result = promote(cloud, b, INSTANCES)
    assert faults.pending(url) == []
    assert result.version_id == "2"
    assert snapshot(env)["traffic"] == {"2": 100}


def test_interrupted_after_upload_converges_on_rerun(env, emulator, jobs):
    a, b = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
    # deployModel keeps failing, so the run is stuck retrying right after its upload...
    faults.inject(emulator.vertex_url, "deployModel", 503, count=100)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci", "promote", "--job", b],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with cloud_for(env) as cloud:
            model = find_model(cloud)["name"]
            Poll(cloud.vertex).until(
                lambda: len(list_versions(cloud, model)) == 2,
                timeout=60,
                what="the upload of version 2",
            )
    finally:
        proc.send_signal(signal.SIGKILL)  # ...and dies there, as if the runner was lost
        proc.wait()
    faults.clear(emulator.vertex_url)
    half = snapshot(env)
    assert half["versions"] == [("1", ["default"], job_id(a)), ("2", [], job_id(b))]
    assert half["traffic"] == {"1": 100}  # serving untouched by the half-done run
    result = run_ci(["promote", "--job", b], env)
    assert result.returncode == 0, result.stderr
    assert "already version 2; not uploading again" in result.stdout
    assert snapshot(env) == {
        "versions": [("1", ["previous"], job_id(a)), ("2", ["default"], job_id(b))],
        "traffic": {"2": 100},
    }


def test_canary_keeps_default_on_the_champion(env, jobs, tmp_path):
    a, b = jobs
    out = tmp_path / "out.txt"
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
    assert cli.main(["promote", "--job", b, "--canary", "10", "--outputs", str(out)]) == 0
    assert "model_version=2" in out.read_text().splitlines()
    state = snapshot(env)
    assert state["versions"] == [("1", ["default"], job_id(a)), ("2", ["canary"], job_id(b))]
    assert state["traffic"] == {"1": 90, "2": 10}
    # Promoting the same job without --canary completes it.
    assert cli.main(["promote", "--job", b]) == 0
    assert snapshot(env)["traffic"] == {"2": 100}


def test_bad_input_changes_nothing(env, jobs, tmp_path, capsys):
    a, _ = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
    before = snapshot(env)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json\n")
    assert cli.main(["promote", "--job", jobs[1], "--instances", str(broken)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert cli.main(["promote", "--job", "999999"]) == 1
    assert "customJobs/999999 not found" in capsys.readouterr().err
    assert cli.main(["promote", "--job", a, "--canary", "150"]) == 2
    capsys.readouterr()
    for labels, named in [("[1]", "not a JSON object: '[1]'"), ('{"Job": "1"}', "key 'Job'")]:
        assert cli.main(["promote", "--job", jobs[1], "--labels", labels]) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith("Error: python -m ci promote: argument --labels: ") and named in err
        ), err
        assert err.count("\n") == 1
    assert cli.main(["rollback", "--to-version", "7"]) == 1  # well-formed, but no such version
    assert "version '7' of " in capsys.readouterr().err
    # Well-formed ids that name nothing: exit 1, "not found" (malformed ones exit 2 before
    # connecting: tests/test_bad_input.py).
    gate_toml = str(ROOT / "gate.toml")
    for argv, named in [
        (["gate", "--config", gate_toml, "--job", "999999"], "customJobs/999999 not found"),
        (["report", "--job", "999999"], "customJobs/999999 not found"),
        (["report", "--version", "42"], "version '42' of model "),
        (["batch-predict", "--instances", str(INSTANCES), "--model-version", "42"], "'42'"),
    ]:
        if argv[0] == "report":
            argv += ["--gate-config", gate_toml, "--out", str(tmp_path / "R")]
        if argv[0] == "batch-predict":
            argv += ["--output", f"gs://{env['CI_BUCKET']}/batch"]
        assert cli.main(argv) == 1, argv
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("Error: ") and named in line and "not found" in line, line
    assert not (tmp_path / "R").exists()
    assert snapshot(env) == before


def serving(env) -> dict:
    """Each endpoint's deployed model ids and traffic split: production and staging."""
    with cloud_for(env) as cloud:
        found = {}
        for name in (cloud.settings.endpoint_display_name, staging_name(cloud)):
            endpoint = find_endpoint(cloud, name) or {}
            ids = sorted(d["id"] for d in endpoint.get("deployedModels", []))
            found[name] = (ids, endpoint.get("trafficSplit", {}))
        return found


def test_deploy_poll_lost_beyond_retries_restores_what_served(env, emulator, jobs, vertex):
    a, b = jobs
    url = emulator.vertex_url
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
        endpoint = find_endpoint(cloud)["name"]
    before, served = snapshot(env), serving(env)
    # The operations of the run (upload, staging deploy and undeploy) stay running for a
    # while, the production deploy's until this test lets it go: long enough to see it
    # running on a loaded machine and make its next polls answer 503 more often than the
    # client retries (waiting for the deployment itself would race the client's next poll).
    faults.delay_operations(url, 0.5, count=3)
    faults.delay_operations(url, 600, count=1)
    # One retry (setting api_retries), so that the client's backoff between them is a
    # second or two, not the default five retries' half a minute.
    retries = 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci", "promote", "--job", b],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env, "CI_API_RETRIES": str(retries)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        operations = vertex.projects().locations().endpoints().operations()

        def deploying() -> bool:
            listed = operations.list(name=endpoint, filter="done=false", pageSize=100).execute()
            return any(
                op["metadata"]["@type"].endswith("DeployModelOperationMetadata")
                for op in listed.get("operations", [])
            )

        Poll(vertex).until(
            lambda: proc.poll() is not None or deploying(),
            timeout=180,
            what="the production deploy of version 2 to start",
        )
        assert proc.poll() is None, "ci promote ended early: " + "".join(proc.communicate())
        faults.inject(url, "operations.wait", 503, count=retries + 1)
        seen = []
        for line in proc.stdout:  # each progress line is flushed as it is printed
            seen.append(line)
            if "restoring the previous state" in line:
                break
        # The restore waits for the deploy to settle: it need not wait out the delay.
        assert faults.release_operations(url) >= 1, "".join(seen)
        out, err = proc.communicate(timeout=180)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    assert re.fullmatch(r"Error: deploy version 2 \(poll\) failed: HTTP 503: .*\n", err)
    assert "restored: traffic and aliases are as they were" in out
    assert faults.pending(url) == []  # the lost polls did happen
    # Same deployed model serving all traffic, default/previous as before, version 2 gone.
    assert snapshot(env) == before
    assert serving(env) == served


def test_no_prediction_comes_from_a_version_before_its_smoke_test(
    env, jobs, vertex, tmp_path, capsys
):
    a, b = jobs
    with cloud_for(env) as cloud:
        first = promote(cloud, a, INSTANCES)
        endpoint = find_endpoint(cloud)["name"]
    before, served = snapshot(env), serving(env)
    instances = [json.loads(line) for line in INSTANCES.read_text().splitlines()]
    answered: list[str] = []
    stop = threading.Event()

    def predict_loop() -> None:  # production traffic during the whole promotion
        while not stop.is_set():
            answered.append(raw_predict(vertex, endpoint, instances)["deployedModelId"])

    loop = threading.Thread(target=predict_loop)
    loop.start()
    bad = tmp_path / "bad.json"
    bad.write_text('{"petal_length": 1.0}\n')  # the smoke test of version 2 fails
    try:
        Poll(vertex).until(lambda: len(answered) > 2, what="predictions before the run")
        code = cli.main(["promote", "--job", b, "--instances", str(bad)])
        seen_during = len(answered)
        Poll(vertex).until(lambda: len(answered) > seen_during + 2, what="predictions after")
    finally:
        stop.set()
        loop.join()
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("Error: predict on ")
    staged = re.search(r"deployed version 2 as (\S+) on \S+-staging", captured.out).group(1)
    assert set(answered) == {first.deployed_id} and staged not in answered
    assert snapshot(env) == before  # default/previous unchanged, version 2 deleted
    assert serving(env) == served  # production as before, nothing left on staging


def test_a_promoted_version_passed_staging_first(env, jobs, capsys):
    a, _ = jobs
    assert cli.main(["promote", "--job", a]) == 0
    out = capsys.readouterr().out
    # Smoke-tested on staging, undeployed there, and only then deployed for production.
    lines = out.splitlines()

    def at(predicate) -> int:
        return next(i for i, line in enumerate(lines) if predicate(line))

    smoke = at(lambda line: line.endswith("-staging: 3 predictions"))
    undeployed = at(lambda line: line.startswith("undeployed") and line.endswith("-staging"))
    assert smoke < undeployed < at(lambda line: line.endswith("with 100% of traffic"))
    assert snapshot(env)["traffic"] == {"1": 100}
    assert list(serving(env).values())[1] == ([], {})  # staging holds nothing afterwards


def test_labels_flag_adds_labels_to_the_new_version(env, jobs):
    # What the workflow passes on from `ci tune`'s version_labels output; "" is none.
    a, b = jobs
    assert cli.main(["promote", "--job", a, "--labels", ""]) == 0
    labels = '{"tuning-job": "4711", "tuning-trial": "2"}'
    assert cli.main(["promote", "--job", b, "--labels", labels]) == 0
    with cloud_for(env) as cloud:
        first, second = list_versions(cloud, find_model(cloud)["name"])
    assert "tuning-job" not in first["labels"]
    assert second["labels"]["tuning-job"] == "4711" and second["labels"]["tuning-trial"] == "2"
    assert second["labels"]["job-id"] == job_id(b)  # the usual labels stay


def test_version_labels_record_the_seed():
    job = {"name": "p/customJobs/7", "labels": {"git-sha": "abc", "data-hash": "d1"}}
    base = {"job-id": "7", "git-sha": "abc", "data-hash": "d1"}
    assert version_labels(None, job, {"seed": 42}) == {**base, "seed": "42"}
    assert version_labels(None, job, {}) == base
    assert version_labels(None, job, {"seed": True}) == base  # not a seed
    assert version_labels(None, job, {"seed": "x" * 64}) == base  # too long for a label


def test_a_failed_restore_says_what_is_left_and_how_to_repair(env, emulator, jobs, tmp_path):
    a, b = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
        staging = staging_name(cloud)
    before = snapshot(env)
    bad = tmp_path / "bad.json"
    bad.write_text('{"petal_length": 1.0}\n')  # the smoke test fails on staging...
    faults.inject(emulator.vertex_url, "undeployModel", 400)  # ...and so does its undo
    result = run_ci(["promote", "--job", b, "--instances", str(bad)], env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: predict on ") and "; restore incomplete (undeploy from " in line
    left = re.search(r"; left: (.*); repair: (.*)$", line)
    deployed = re.search(r"version 2 of (\S+) deployed as (\d+) on (\S+) with 100% traffic", line)
    assert deployed and f"version 2 of {deployed.group(1)} still exists" in left.group(1)
    model_id, deployed_id, endpoint_id = (deployed.group(i).rsplit("/", 1)[-1] for i in (1, 2, 3))
    assert left.group(2) == (
        f"gcloud ai endpoints undeploy-model {endpoint_id} --deployed-model-id={deployed_id} "
        f"--region=us-central1, then gcloud ai models delete-version {model_id}@2 "
        "--region=us-central1"
    )
    assert snapshot(env)["traffic"] == before["traffic"]  # production was never touched
    # The two repair steps, done through the API, leave exactly the state before the run.
    with cloud_for(env) as cloud:
        endpoint = find_endpoint(cloud, staging)
        assert endpoint["name"].endswith(f"/{endpoint_id}")
        undeploy(cloud, endpoint, deployed_id, {})
        model = find_model(cloud)["name"]
        assert model.endswith(f"/{model_id}")
        cloud.vertex.projects().locations().models().deleteVersion(name=f"{model}@2").execute()
    assert snapshot(env) == before


def test_ctrl_c_during_the_staging_deploy_restores(env, emulator, jobs, vertex):
    a, b = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
        staging = find_endpoint(cloud, staging_name(cloud))["name"]
    before, served = snapshot(env), serving(env)
    # The upload stays running a while, the staging deploy until Ctrl-C has landed and the
    # restore waits for it to settle (it would wait up to 30 s): then this test lets it go.
    faults.delay_operations(emulator.vertex_url, 1, count=1)
    faults.delay_operations(emulator.vertex_url, 600, count=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci", "promote", "--job", b],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A deployment shows on the endpoint only once its operation is done (as on
        # Vertex AI): while it runs, the endpoint's operations list has it, unfinished.
        operations = vertex.projects().locations().endpoints().operations()

        def deploying():
            listed = operations.list(name=staging).execute().get("operations", [])
            return [op for op in listed if not op.get("done")]

        Poll(vertex).until(deploying, timeout=90, what="the staging deployment of version 2")
        proc.send_signal(signal.SIGINT)
        seen = []
        for line in proc.stdout:  # each progress line is flushed as it is printed
            seen.append(line)
            if "restoring the previous state" in line:
                break
        assert faults.release_operations(emulator.vertex_url) >= 1, "".join(seen)
        out, err = proc.communicate(timeout=90)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert err.splitlines() == ["Error: interrupted"]
    assert "restored: traffic and aliases are as they were" in out
    assert snapshot(env) == before and serving(env) == served


def test_a_lost_upload_leaves_no_version(env, emulator, jobs):
    a, b = jobs
    with cloud_for(env) as cloud:
        promote(cloud, a, INSTANCES)
    before = snapshot(env)
    # The upload is carried out, but its operation cannot be followed.
    faults.delay_operations(emulator.vertex_url, 1, count=1)
    faults.inject(emulator.vertex_url, "operations.wait", 404)  # how ci follows operations
    result = run_ci(["promote", "--job", b], env)
    assert result.returncode == 1
    assert re.fullmatch(r"Error: upload model \(poll\) failed: HTTP 404: .*\n", result.stderr)
    assert "restore: deleted version 2 of the failed upload" in result.stdout
    assert snapshot(env) == before


def test_a_canary_on_another_endpoint_than_the_champion_is_refused(
    env, jobs, monkeypatch, capsys, tmp_path
):
    a, b = jobs
    assert cli.main(["promote", "--job", a]) == 0  # the champion serves on MODEL-endpoint
    before, served = snapshot(env), serving(env)
    other = {**env, "CI_ENDPOINT_NAME": "elsewhere"}
    monkeypatch.setenv("CI_ENDPOINT_NAME", "elsewhere")
    capsys.readouterr()
    # Before: the canary silently became a full promotion there, and 'default' moved.
    assert cli.main(["promote", "--job", b, "--canary", "10"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("Error: --canary 10: the champion (version 1") and "'elsewhere'" in line
    assert snapshot(env) == before and serving(env) == served  # nothing uploaded or moved
    with cloud_for(other) as cloud:
        assert find_endpoint(cloud) is None  # not even the endpoint was created
    # pipeline refuses it before training (before: a job trained, then the same silent
    # full promotion).
    argv = ["pipeline", "--canary", "10", "--package-dir", str(ROOT)]
    argv += ["--dist-dir", str(tmp_path), "--gate-config", str(ROOT / "gate.toml")]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("Error: --canary 10: the champion (version 1") and err.count("\n") == 1
    assert "submitted" not in out and "uploaded" not in out  # nothing staged or trained
    assert snapshot(env) == before and serving(env) == served
    # Without --canary it is a full promotion there: 'default' follows the version that
    # passed on the endpoint it now serves from; the old endpoint keeps serving version 1.
    assert cli.main(["promote", "--job", b]) == 0
    state = snapshot(env)
    assert state["versions"] == [("1", ["previous"], job_id(a)), ("2", ["default"], job_id(b))]
    assert state["traffic"] == before["traffic"] == {"1": 100}
    with cloud_for(other) as cloud:
        assert traffic_by_version(find_endpoint(cloud), find_model(cloud)["name"]) == {"2": 100}


def test_default_moves_only_after_the_serving_endpoint_answered(env, emulator, jobs, capsys):
    a, b = jobs
    assert cli.main(["promote", "--job", a]) == 0
    before, served = snapshot(env), serving(env)
    capsys.readouterr()
    faults.inject(emulator.vertex_url, "models.mergeVersionAliases", 400, count=1)
    assert cli.main(["promote", "--job", b]) == 1
    out, err = capsys.readouterr()
    assert "set aliases" in err and err.count("\n") == 1, err
    # The smoke test through the serving endpoint came first: the alias move was the last
    # step, and its failure restored traffic and aliases and deleted version 2.
    endpoint = env["CI_MODEL_NAME"] + "-endpoint"
    assert f"smoke test passed on {endpoint}: " in out
    assert "restored: traffic and aliases are as they were" in out
    assert snapshot(env) == before and serving(env) == served
