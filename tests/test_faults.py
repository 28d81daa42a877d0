"""Faults at the wire against the commands: each is absorbed, or is one ``Error:`` line
with the documented exit code, production as it was, no duplicate resource, no job left
running.

Faults come from the emulator's own injection (``ci.emulator.faults``), and for an answer
lost after the server acted, from a proxy between the command and the emulator that
forwards a request and then drops the connection instead of answering.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import re
import threading
import urllib.parse

import pytest

from ci.emulator import faults
from ci.vertex import find_endpoint, staging_name
from tests.conftest import BUCKET, FINAL_JOB_STATES, run_job, trainer_job
from tests.merge_path import ROOT, cloud_for, run_ci, settings_env
from tests.test_promote import snapshot as promotion_state

INSTANCES = ROOT / "data" / "test.json"
# One retry: a fault with count RETRIES + 1 is beyond the client's retries.
RETRIES = 1


class LosingProxy:
    """An HTTP proxy to ``target`` that, for the next ``count`` requests matching
    ``(method, path regex)``, forwards the request (the server acts on it) and then closes
    the connection without answering: an answer lost on the way back."""

    def __init__(self, target: str):
        self.target = urllib.parse.urlsplit(target)
        self.rules: list[list] = []
        self.lost: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body, headers)
                response = conn.getresponse()
                content = response.read()
                conn.close()
                lost = proxy.take(self.command, self.path)
                if lost == "drop":
                    self.close_connection = True  # the server acted; its answer is lost
                    return
                if lost:  # the server acted, and the answer is an error all the same
                    content = b'{"error": {"code": %d, "message": "lost (proxy)"}}' % lost
                    self.send_response(lost)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits up to one (the default 0.5 s, at every test's end).
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()

    def lose(self, method: str, path: str, count: int = 1, skip: int = 0, status=None) -> None:
        """Lose the answers of the ``count`` matching requests after the first ``skip``:
        the connection drops, or with ``status`` that error is answered instead."""
        rule = {"method": method, "path": re.compile(path), "skip": skip, "count": count}
        with self.lock:
            self.rules.append({**rule, "lost": status or "drop"})

    def take(self, method: str, path: str):
        """What becomes of this request's answer: None (delivered), "drop", or a status."""
        with self.lock:
            for rule in self.rules:
                if rule["method"] != method or not rule["path"].search(path.split("?")[0]):
                    continue
                if rule["skip"]:
                    rule["skip"] -= 1
                elif rule["count"]:
                    rule["count"] -= 1
                    self.lost.append(f"{method} {path}")
                    return rule["lost"]
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(emulator):
    losing = LosingProxy(emulator.vertex_url)
    yield losing
    losing.close()


@pytest.fixture(scope="module")
def second(vertex, poll, staged) -> dict:
    """Another finished job (a second version to promote over the first)."""
    return run_job(vertex, poll, trainer_job(staged, f"gs://{BUCKET}/runs/faults-b", steps=20))


@pytest.fixture
def env(request, emulator, gcs):
    name = re.sub(r"[^a-z0-9-]", "-", f"f-{request.node.name[5:45]}".lower())
    return settings_env(emulator, name, CI_API_RETRIES=str(RETRIES))


def snapshot(env) -> dict:
    """test_promote's snapshot (versions, traffic), and the endpoints' deployments."""
    with cloud_for(env) as cloud:
        endpoint = find_endpoint(cloud)
        staging = find_endpoint(cloud, staging_name(cloud))
    return {
        **promotion_state(env),
        "deployed": len((endpoint or {}).get("deployedModels", [])),
        "staging": len((staging or {}).get("deployedModels", [])),
    }


def one_error_line(result, code: int, *needles: str) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def promote(env, job: dict, **extra):
    return run_ci(["promote", "--job", job["name"]], {**env, **extra})


# The promotion of a second version, with a fault on one of its calls: (method, status,
# count, what the error line names). A count of RETRIES + 1 is beyond the retries.
BEYOND = RETRIES + 1
PROMOTE_FAULTS = [
    ("models.upload", 503, 1, None),
    ("models.upload", 500, BEYOND, "upload model failed: HTTP 500"),
    ("endpoints.deployModel", 503, 1, None),
    ("endpoints.deployModel", 429, BEYOND, "deploy version 2 failed: HTTP 429"),
    ("endpoints.predict", 503, 1, None),
    ("endpoints.predict", 500, BEYOND, "predict on "),
    ("endpoints.undeployModel", 503, BEYOND, "undeploy "),
    ("models.mergeVersionAliases", 503, BEYOND, "set aliases "),
    ("endpoints.get", 429, BEYOND, "get endpoint failed: HTTP 429"),
    ("operations.wait", 503, BEYOND, "(poll) failed: HTTP 503"),
    ("models.listVersions", 503, BEYOND, "list versions failed: HTTP 503"),
]


@pytest.mark.parametrize(("method", "status", "count", "error"), PROMOTE_FAULTS)
def test_promote_matrix(env, emulator, trained, second, method, status, count, error):
    assert promote(env, trained["job"]).returncode == 0
    before = snapshot(env)
    faults.inject(emulator.vertex_url, method, status, count=count)
    result = promote(env, second)
    assert faults.pending(emulator.vertex_url) == []
    after = snapshot(env)
    if error is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert after["versions"][-1][1] == ["default"] and len(after["versions"]) == 2
        assert after["traffic"] == {"2": 100} and after["deployed"] == 1
        assert after["staging"] == 0
    else:
        one_error_line(result, 1, error)
        assert after == before


def jobs_named(vertex, display_name: str) -> list[dict]:
    listed = (
        vertex.projects()
        .locations()
        .customJobs()
        .list(
            parent="projects/test-project/locations/us-central1",
            filter=f'display_name="{display_name}"',
        )
        .execute()
    )
    return listed.get("customJobs", [])


def train(env, trainer_sdist, display_name: str, *more: str, **extra):
    argv = ["train", "--train-steps", "20", "--package", str(trainer_sdist)]
    argv += ["--job-display-name", display_name, *more]
    return run_ci(argv, {**env, **extra})


def test_a_job_that_fails_is_one_line(env, emulator, trainer_sdist, vertex, request):
    name = f"fails-{request.node.name[-8:].strip('_')}"
    faults.fail_next_job(emulator.vertex_url, "out of quota (injected)")
    result = train(env, trainer_sdist, name)
    one_error_line(result, 1, "ended JOB_STATE_FAILED: out of quota (injected)")
    [job] = jobs_named(vertex, name)
    assert job["state"] == "JOB_STATE_FAILED"


def test_create_job_refused_beyond_retries_creates_none(env, emulator, trainer_sdist, vertex):
    faults.inject(emulator.vertex_url, "customJobs.create", 500, count=BEYOND)
    result = train(env, trainer_sdist, "create-refused")
    one_error_line(result, 1, "create job failed: HTTP 500")
    assert jobs_named(vertex, "create-refused") == []


def test_polls_lost_beyond_retries_cancel_the_job(env, emulator, trainer_sdist, vertex, poll):
    # The job stays PENDING (injected delay) while its polls fail beyond the retries.
    faults.delay_job_state(emulator.vertex_url, "JOB_STATE_RUNNING", 600)
    faults.inject(emulator.vertex_url, "customJobs.get", 503, count=BEYOND)
    result = train(env, trainer_sdist, "polls-lost")
    one_error_line(result, 1, "get job failed: HTTP 503")
    [job] = jobs_named(vertex, "polls-lost")
    assert poll.job(job["name"], timeout=60)["state"] == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize("lost", [None, 503], ids=["dropped", "503-after-acting"])
def test_a_lost_create_answer_makes_one_job(env, proxy, trainer_sdist, vertex, lost):
    name = f"lost-create-{lost or 'dropped'}"
    proxy.lose("POST", r"/customJobs$", status=lost)
    result = train(env, trainer_sdist, name, CI_API_ENDPOINT=proxy.url)
    assert proxy.lost, "the create was never sent"
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = jobs_named(vertex, name)
    assert len(jobs) == 1, [j["name"] + " " + j["state"] for j in jobs]


@pytest.mark.parametrize("lost", [None, 500], ids=["dropped", "500-after-acting"])
def test_a_lost_upload_answer_makes_one_version(env, proxy, trained, lost):
    proxy.lose("POST", r"/models:upload$", status=lost)
    result = promote(env, trained["job"], CI_API_ENDPOINT=proxy.url)
    assert proxy.lost and result.returncode == 0, result.stdout + result.stderr
    after = snapshot(env)
    assert after["versions"] == [("1", ["default"], trained["job"]["name"].rsplit("/", 1)[-1])]
    assert after["traffic"] == {"1": 100} and after["deployed"] == 1 and after["staging"] == 0


@pytest.mark.parametrize("deploy", [1, 2], ids=["staging", "serving"])
def test_a_lost_deploy_answer_deploys_once(env, proxy, trained, second, deploy):
    assert promote(env, trained["job"]).returncode == 0
    proxy.lose("POST", r":deployModel$", skip=deploy - 1)  # 1: on staging, 2: serving
    result = promote(env, second, CI_API_ENDPOINT=proxy.url)
    assert proxy.lost and result.returncode == 0, result.stdout + result.stderr
    after = snapshot(env)
    assert [v[:2] for v in after["versions"]] == [("1", ["previous"]), ("2", ["default"])]
    assert after["traffic"] == {"2": 100} and after["deployed"] == 1 and after["staging"] == 0


def test_a_lost_endpoint_create_answer_makes_one_endpoint(env, proxy, trained, second):
    proxy.lose("POST", r"/endpoints$", count=2)  # the staging endpoint's and the serving one's
    result = promote(env, trained["job"], CI_API_ENDPOINT=proxy.url)
    assert proxy.lost and result.returncode == 0, result.stdout + result.stderr
    again = promote(env, second)  # finds each endpoint by its name: one of each
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(env)["traffic"] == {"2": 100}


def test_a_lost_undeploy_answer(env, proxy, trained, second):
    assert promote(env, trained["job"]).returncode == 0
    proxy.lose("POST", r":undeployModel$")
    result = promote(env, second, CI_API_ENDPOINT=proxy.url)
    assert proxy.lost and result.returncode == 0, result.stdout + result.stderr
    after = snapshot(env)
    assert after["traffic"] == {"2": 100} and after["deployed"] == 1 and after["staging"] == 0


@pytest.mark.parametrize(
    ("method", "status", "count", "error"),
    [
        ("endpoints.deployModel", 503, 1, None),
        ("endpoints.deployModel", 500, BEYOND, "deploy version 1 failed: HTTP 500"),
        ("models.mergeVersionAliases", 503, BEYOND, "set aliases default, -previous on "),
        ("endpoints.undeployModel", 429, BEYOND, "failed: HTTP 429"),
    ],
)
def test_rollback_matrix(env, emulator, trained, second, method, status, count, error):
    for job in (trained["job"], second):
        assert promote(env, job).returncode == 0
    before = snapshot(env)
    assert [v[:2] for v in before["versions"]] == [("1", ["previous"]), ("2", ["default"])]
    faults.inject(emulator.vertex_url, method, status, count=count)
    result = run_ci(["rollback"], env)
    assert faults.pending(emulator.vertex_url) == []
    after = snapshot(env)
    if error is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert [v[:2] for v in after["versions"]] == [("1", ["default"]), ("2", [])]
        assert after["traffic"] == {"1": 100} and after["deployed"] == 1
    else:
        one_error_line(result, 1, error)
        assert after == before  # production as it was: traffic and aliases


def batch_jobs(vertex, display_name: str) -> list[dict]:
    listed = (
        vertex.projects()
        .locations()
        .batchPredictionJobs()
        .list(parent="projects/test-project/locations/us-central1")
        .execute()
    )
    return [j for j in listed.get("batchPredictionJobs", []) if j["displayName"] == display_name]


@pytest.mark.parametrize("fault", ["polls lost", "create answer lost"])
def test_batch_predict_faults(env, emulator, proxy, trained, vertex, poll, tmp_path, fault):
    assert promote(env, trained["job"]).returncode == 0
    instances = tmp_path / "long.jsonl"  # long enough to be running when its polls fail
    line = INSTANCES.read_text().splitlines()[0]
    instances.write_text((line + "\n") * (50_000 if fault == "polls lost" else 3))
    argv = ["batch-predict", "--instances", str(instances), "--batch-size", "1"]
    argv += ["--output", f"gs://{BUCKET}/batch-out/{env['CI_MODEL_NAME']}"]
    if fault == "polls lost":
        faults.inject(emulator.vertex_url, "batchPredictionJobs.get", 503, count=BEYOND)
        result = run_ci(argv, env)
        one_error_line(result, 1, "get batch prediction job failed: HTTP 503")
    else:
        proxy.lose("POST", r"/batchPredictionJobs$")
        result = run_ci(argv, {**env, "CI_API_ENDPOINT": proxy.url})
        assert proxy.lost and result.returncode == 0, result.stdout + result.stderr
    [job] = batch_jobs(vertex, f"{env['CI_MODEL_NAME']}-batch")
    batches = vertex.projects().locations().batchPredictionJobs()

    def ended():
        got = batches.get(name=job["name"]).execute()
        return got if got["state"] in FINAL_JOB_STATES else None

    final = poll.until(ended, timeout=60, what="the batch job to end")  # none left running
    expected = "JOB_STATE_CANCELLED" if fault == "polls lost" else "JOB_STATE_SUCCEEDED"
    assert final["state"] == expected


def test_a_timeout_whose_cancel_is_refused_says_so(env, emulator, trainer_sdist, vertex):
    faults.delay_job_state(emulator.vertex_url, "JOB_STATE_RUNNING", 600)  # held PENDING
    faults.inject(emulator.vertex_url, "customJobs.cancel", 503, count=BEYOND)
    result = train(env, trainer_sdist, "cancel-refused", "--timeout", "1")
    line = one_error_line(result, 1, "timed out after 1s and could not be cancelled")
    assert "cancel job failed: HTTP 503" in line and line.endswith("cancel it by hand")
    [job] = jobs_named(vertex, "cancel-refused")
    assert job["state"] == "JOB_STATE_PENDING"
    vertex.projects().locations().customJobs().cancel(name=job["name"], body={}).execute()
