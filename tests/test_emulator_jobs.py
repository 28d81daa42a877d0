"""Job mechanics with a tiny fake package: environment, cluster, failure, cancel, faults, cap."""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from pathlib import Path

import pytest
from googleapiclient.errors import HttpError

from ci import clients
from ci.emulator import faults, process
from tests.conftest import BUCKET, PARENT, Poll, stage_bytes, storage_client
from tests.sdists import sdist_bytes

# The fake package's modules. ``report`` writes what it saw to <dir>/<task type>-<index>.json
# (parameter servers then wait forever, as real ones do, and the others wait for them);
# ``fail`` exits 3 after printing
# a traceback-like error; ``hang`` starts a child and both wait to be killed.
MODULES = {
    "report": """
import json, os, sys, time
out = sys.argv[1]
task = json.loads(os.environ.get("TF_CONFIG", '{"task": {"type": "chief", "index": 0}}'))["task"]
keys = ("TF_CONFIG", "CLUSTER_SPEC", "AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR",
        "AIP_TENSORBOARD_LOG_DIR", "CLOUD_ML_JOB_ID", "STORAGE_EMULATOR_HOST", "FAKE_SETTING",
        "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
seen = {k: os.environ.get(k) for k in keys}
seen.update(argv=sys.argv[2:], pid=os.getpid(), cwd=os.getcwd())
path = os.path.join(out, f"{task['type']}-{task['index']}.json")
with open(path + ".tmp", "w") as f:
    json.dump(seen, f)
os.replace(path + ".tmp", path)
print("reported", task)
while task["type"] == "ps":
    time.sleep(1)
# Like real workers, the others need the parameter server up before they can finish.
deadline = time.time() + 60
cluster = json.loads(os.environ.get("TF_CONFIG", '{"cluster": {}}'))["cluster"]
while "ps" in cluster and time.time() < deadline:
    if os.path.exists(os.path.join(out, "ps-0.json")):
        break
    time.sleep(0.02)
""",
    "fail": """
import sys
print("starting the fake training")
print("Traceback (most recent call last):", file=sys.stderr)
print("ValueError: boom: the learning rate is negative", file=sys.stderr)
sys.exit(3)
""",
    "hang": """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
path = os.path.join(sys.argv[1], f"pids-{os.getpid()}")
with open(path + ".tmp", "w") as f:  # renamed into place: never seen half-written
    f.write(f"{os.getpid()} {child.pid}")
os.replace(path + ".tmp", path)
time.sleep(600)
""",
}


def _sdist() -> bytes:
    """An sdist-shaped tarball: fakejob-0.1/{setup.py,fakejob/...}."""
    files = {"setup.py": "from setuptools import setup\nsetup(name='fakejob', version='0.1')\n"}
    files["fakejob/__init__.py"] = ""
    files.update({f"fakejob/{name}.py": code for name, code in MODULES.items()})
    return sdist_bytes("fakejob-0.1", files)


@pytest.fixture(scope="session")
def fake_package(gcs) -> str:
    return stage_bytes(gcs, "fakejob-0.1.tar.gz", _sdist())


def fake_job(package: str, module: str, args: list[str], counts=(1,), env=None) -> dict:
    pools = []
    for count in counts:
        spec = {
            "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
            "packageUris": [package],
            "pythonModule": f"fakejob.{module}",
            "args": args,
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        }
        machine = {"machineType": "n1-standard-4"}  # Vertex requires it of every pool set
        pools.append(
            {"replicaCount": str(count), "machineSpec": machine, "pythonPackageSpec": spec}
        )
    return {
        "displayName": f"fake-{module}",
        "jobSpec": {
            "workerPoolSpecs": pools,
            "baseOutputDirectory": {"outputUriPrefix": f"gs://{BUCKET}/fake-out"},
        },
    }


def create(vertex, body: dict) -> dict:
    return vertex.projects().locations().customJobs().create(parent=PARENT, body=body).execute()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_package_that_is_not_in_cloud_storage_fails_the_job(vertex, poll, fake_package):
    missing = f"gs://{BUCKET}/staging/nothing-here-0.1.tar.gz"
    body = fake_job(fake_package, "report", ["/nonexistent"])
    body["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["packageUris"].append(missing)
    job = poll.job(create(vertex, body)["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    assert job["error"]["message"] == (
        f"Cannot use package {missing}: no such object in Cloud Storage"
    ), job["error"]


def test_requirements_this_environment_lacks_are_said_with_the_failure(vertex, poll, gcs):
    # Vertex pip-installs what the package requires; the emulator runs with what is
    # installed, so it names each requirement it cannot meet instead of leaving a bare
    # ImportError to explain.
    pkg_info = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: needy",
            "Version: 0.1",
            "Requires-Dist: no-such-distribution-here>=1",
            "Requires-Dist: google-cloud-storage<1",
            "Requires-Dist: google-api-core",  # installed: no note
            'Requires-Dist: colorama; sys_platform == "nonexistent-os"',
            'Requires-Dist: pytest-nothing; extra == "dev"',
            "",
        ]
    )
    files = {
        "PKG-INFO": pkg_info,
        "needy/__init__.py": "",
        "needy/task.py": "import no_such_distribution_here\n",
    }
    gcs.bucket(BUCKET).blob("staging/needy-0.1.tar.gz").upload_from_string(
        sdist_bytes("needy-0.1", files)
    )
    body = fake_job(f"gs://{BUCKET}/staging/needy-0.1.tar.gz", "x", [])
    body["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["pythonModule"] = "needy.task"
    job = poll.job(create(vertex, body)["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    message = job["error"]["message"]
    assert "ModuleNotFoundError: No module named 'no_such_distribution_here'" in message
    notes = [line for line in message.splitlines() if line.startswith("emulator: needy")]
    gcs_version = importlib.metadata.version("google-cloud-storage")
    assert notes == [
        "emulator: needy requires no-such-distribution-here>=1, but it is not installed here; "
        "Vertex AI would pip-install it, the emulator runs the job with this environment's "
        "packages",
        f"emulator: needy requires google-cloud-storage<1, but {gcs_version} is installed "
        "here; Vertex AI would "
        "pip-install it, the emulator runs the job with this environment's packages",
    ]


def test_replicas_get_the_vertex_environment_and_one_consistent_cluster(
    vertex, poll, emulator, fake_package, tmp_path
):
    body = fake_job(
        fake_package,
        "report",
        [str(tmp_path), "--flag=1"],
        counts=(1, 2, 1, 1),
        env={"FAKE_SETTING": "on"},
    )
    job = poll.job(create(vertex, body)["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")  # though ps never exits
    seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(seen) == ["chief-0", "evaluator-0", "ps-0", "worker-0", "worker-1"]
    configs = {name: json.loads(s["TF_CONFIG"]) for name, s in seen.items()}
    clusters = {json.dumps(c["cluster"], sort_keys=True) for c in configs.values()}
    assert len(clusters) == 1  # every replica sees the same cluster
    cluster = configs["chief-0"]["cluster"]
    assert [len(cluster[t]) for t in ("chief", "worker", "ps")] == [1, 2, 1]
    assert "evaluator" not in cluster
    addresses = [a for members in cluster.values() for a in members]
    assert len(set(addresses)) == 4 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert configs["worker-1"]["task"] == {"type": "worker", "index": 1}  # no trial: not tuning
    # Vertex's extra keys: the CustomJobSpec as a dict, and the environment.
    assert all(c["job"] == job["jobSpec"] for c in configs.values())
    assert all(c["environment"] == "cloud" for c in configs.values())
    spec = json.loads(seen["worker-1"]["CLUSTER_SPEC"])
    assert spec["task"] == {"type": "workerpool1", "index": 1}
    assert (spec["job"], spec["environment"]) == (job["jobSpec"], "cloud")
    assert sorted(spec["cluster"]) == ["workerpool0", "workerpool1", "workerpool2", "workerpool3"]
    chief = seen["chief-0"]
    assert chief["AIP_MODEL_DIR"] == f"gs://{BUCKET}/fake-out/model/"
    assert chief["AIP_CHECKPOINT_DIR"] == f"gs://{BUCKET}/fake-out/checkpoints/"
    assert chief["AIP_TENSORBOARD_LOG_DIR"] == f"gs://{BUCKET}/fake-out/logs/"
    assert chief["CLOUD_ML_JOB_ID"] == job["name"].rsplit("/", 1)[-1]
    assert chief["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert (chief["FAKE_SETTING"], chief["argv"]) == ("on", ["--flag=1"])
    assert (chief["TF_CPP_MIN_LOG_LEVEL"], chief["TF_ENABLE_ONEDNN_OPTS"]) == ("2", "0")
    assert not alive(seen["ps-0"]["pid"])  # the parameter server was stopped with the job
    headers = [line for line in faults.job_logs(emulator.vertex_url, job["name"]).splitlines()
               if line.startswith("==> ")]  # fmt: skip
    assert headers == [f"==> workerpool{p} <==" for p in ("0-0", "1-0", "1-1", "2-0", "3-0")]


def test_single_replica_gets_no_cluster(vertex, poll, fake_package, tmp_path):
    job = poll.job(create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    seen = json.loads((tmp_path / "chief-0.json").read_text())
    assert seen["TF_CONFIG"] is None and seen["CLUSTER_SPEC"] is None


def test_failing_module_fails_the_job_with_its_last_error_lines(
    vertex, poll, emulator, fake_package
):
    job = poll.job(create(vertex, fake_job(fake_package, "fail", []))["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    message = job["error"]["message"]
    assert "workerpool0-0 exited with a non-zero status of 3" in message
    assert message.rstrip().endswith("ValueError: boom: the learning rate is negative")
    assert job["endTime"] >= job["startTime"]
    logs = faults.job_logs(emulator.vertex_url, job["name"])
    assert "starting the fake training" in logs and "==> workerpool0-0 <==" in logs
    assert faults.job_logs(emulator.vertex_url, job["name"], tail=1).splitlines()[-1] == (
        "ValueError: boom: the learning rate is negative"
    )


def written_pid_files(folder: Path) -> list[Path]:
    """The replicas' complete pid files (``pids-N.tmp`` is one being written, then renamed)."""
    return sorted(p for p in folder.glob("pids-*") if p.suffix != ".tmp")


def test_cancel_stops_every_process_of_the_job(vertex, poll, fake_package, tmp_path):
    jobs = vertex.projects().locations().customJobs()
    job = create(vertex, fake_job(fake_package, "hang", [str(tmp_path)], counts=(1, 1)))

    def both_started():
        files = written_pid_files(tmp_path)
        return files if len(files) == 2 else None

    pid_files = poll.until(both_started, timeout=60, what="both replicas to start")
    pids = [int(p) for f in pid_files for p in f.read_text().split()]
    assert all(alive(p) for p in pids)
    assert poll.job(job["name"], ("JOB_STATE_RUNNING",))["state"] == "JOB_STATE_RUNNING"
    with pytest.raises(HttpError) as refused:  # a running job is not deleted: cancel it first
        jobs.delete(name=job["name"]).execute()
    assert refused.value.resp.status == 400 and "cancel it first" in str(refused.value)
    jobs.cancel(name=job["name"], body={}).execute()
    done = poll.job(job["name"])
    assert done["state"] == "JOB_STATE_CANCELLED" and done["error"]["code"] == 1
    # Replicas and the children they started: SIGKILLed, gone once the kernel has reaped them.
    poll.until(lambda: not any(alive(p) for p in pids), timeout=10, what="the processes to end")
    poll.operation(jobs.delete(name=job["name"]).execute())  # a finished one is deleted
    with pytest.raises(HttpError) as gone:
        jobs.get(name=job["name"]).execute()
    assert gone.value.resp.status == 404


def test_job_faults_fail_and_delay(vertex, poll, emulator, fake_package, tmp_path):
    faults.fail_next_job(emulator.vertex_url, "quota exceeded (injected)")
    failed = poll.job(create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))["name"])
    assert failed["state"] == "JOB_STATE_FAILED"
    assert failed["error"]["message"] == "quota exceeded (injected)"
    assert list(tmp_path.iterdir()) == []  # the module never ran

    faults.delay_job_state(emulator.vertex_url, "JOB_STATE_RUNNING", 1.5)
    started = time.monotonic()
    job = create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))
    assert job["state"] == "JOB_STATE_PENDING"
    done = poll.job(job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert time.monotonic() - started >= 1.5


def test_missing_package_fails_the_job(vertex, poll):
    body = fake_job(f"gs://{BUCKET}/staging/nope-0.1.tar.gz", "report", ["/tmp"])
    job = poll.job(create(vertex, body)["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    assert "nope-0.1.tar.gz" in job["error"]["message"]


def test_list_and_get_jobs(vertex, poll, fake_package, tmp_path):
    job = poll.job(create(vertex, fake_job(fake_package, "report", [str(tmp_path)]))["name"])
    listed = vertex.projects().locations().customJobs().list(parent=PARENT).execute()
    assert job["name"] in [j["name"] for j in listed["customJobs"]]
    other = (
        vertex.projects()
        .locations()
        .customJobs()
        .list(parent="projects/other/locations/us-central1")
        .execute()
    )
    assert other == {}


def test_max_local_replicas_caps_processes_and_says_so(tmp_path, fake_package, emulator):
    # A second emulator with a cap of 2 processes per job, using the session's package bytes.
    with process.start(tmp_path / "capped", max_local_replicas=2) as capped:
        client = storage_client(capped)
        client.create_bucket(BUCKET).blob("staging/fakejob-0.1.tar.gz").upload_from_string(_sdist())
        vertex = clients.vertex("us-central1", capped.vertex_url, anonymous=True)
        out = tmp_path / "out"
        out.mkdir()
        job = create(vertex, fake_job(fake_package, "report", [str(out)], counts=(1, 3)))
        done = Poll(vertex).job(job["name"])
        assert done["state"] == "JOB_STATE_SUCCEEDED", done.get("error")
        assert sorted(p.stem for p in out.glob("*.json")) == ["chief-0", "worker-0"]
        logs = faults.job_logs(capped.vertex_url, job["name"])
        assert "asks for 4 replicas; --max-local-replicas=2 caps it at 2" in logs
    assert os.path.isdir(capped.state_dir / "vertex")
