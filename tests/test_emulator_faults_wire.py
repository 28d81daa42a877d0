"""Faults at the wire on the Vertex port: an error or a closed connection before the call
acts (nothing done) or after it (done, the answer lost), the admin API's checks and listing.

A lost answer is what a proxy between client and server makes of a timeout: the server
carried the call out, the client cannot tell. Each test shows it with a real client: the
discovery client (without its retries, so one request is one call) or ``http.client``.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from googleapiclient.errors import HttpError

from ci.emulator import faults
from tests.conftest import PARENT
from tests.test_emulator_jobs import fake_job

JOB_PATH = f"/v1/{PARENT}/customJobs"


def custom_jobs(vertex):
    return vertex.projects().locations().customJobs()


def jobs_named(vertex, display_name: str) -> list[dict]:
    """The custom jobs of PARENT with this display name."""
    listed = custom_jobs(vertex).list(parent=PARENT, filter=f'display_name="{display_name}"')
    return listed.execute().get("customJobs", [])


def job_body(display_name: str) -> dict:
    """A custom job that would run the fake package; held PENDING by the caller's fault,
    or failing at once on its missing package: what it runs does not matter here."""
    body = fake_job("gs://test-bucket/staging/no-such-0.1.tar.gz", "report", ["/tmp"])
    return {**body, "displayName": display_name}


def raw_post(url: str, path: str, body: dict) -> http.client.HTTPResponse:
    """One POST on a fresh connection, sent once (no client retries, no resend)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return conn.getresponse()


def admin(url: str, method: str, spec=None) -> tuple[int, dict]:
    """``/_emulator/faults`` called directly: its status and JSON answer."""
    data = json.dumps(spec).encode() if spec is not None else None
    request = urllib.request.Request(
        url + "/_emulator/faults", data, {"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_error_after_acting_leaves_the_job_created(emulator, vertex):
    faults.answer_error_after(emulator.vertex_url, "customJobs.create", 503)
    with pytest.raises(HttpError) as caught:
        custom_jobs(vertex).create(parent=PARENT, body=job_body("after-503")).execute(num_retries=0)
    assert caught.value.resp.status == 503
    error = json.loads(caught.value.content)["error"]
    assert error["status"] == "UNAVAILABLE" and "customJobs.create" in error["message"]
    assert len(jobs_named(vertex, "after-503")) == 1  # carried out all the same
    assert faults.pending(emulator.vertex_url) == []


def test_an_error_before_acting_creates_nothing(emulator, vertex):
    faults.inject(emulator.vertex_url, "customJobs.create", 500)
    with pytest.raises(HttpError) as caught:
        custom_jobs(vertex).create(parent=PARENT, body=job_body("before-500")).execute(
            num_retries=0
        )
    assert caught.value.resp.status == 500
    assert jobs_named(vertex, "before-500") == []


def test_a_dropped_answer_after_acting_leaves_the_job_created(emulator, vertex):
    faults.drop_connection(emulator.vertex_url, "customJobs.create", after=True)
    with pytest.raises(http.client.RemoteDisconnected):
        raw_post(emulator.vertex_url, JOB_PATH, job_body("after-drop"))
    assert len(jobs_named(vertex, "after-drop")) == 1


def test_a_drop_before_acting_does_nothing(emulator, vertex):
    faults.drop_connection(emulator.vertex_url, "customJobs.create")
    with pytest.raises(http.client.RemoteDisconnected):
        raw_post(emulator.vertex_url, JOB_PATH, job_body("before-drop"))
    assert jobs_named(vertex, "before-drop") == []
    # The fault was one call's: the next is served.
    answer = raw_post(emulator.vertex_url, JOB_PATH, job_body("before-drop"))
    assert answer.status == 200 and len(jobs_named(vertex, "before-drop")) == 1


def test_an_error_after_acting_on_a_long_running_create(emulator, vertex, poll):
    """endpoints.create answers an operation: the endpoint is there although the client
    heard 429 and never saw the operation."""
    faults.answer_error_after(emulator.vertex_url, "endpoints.create", 429, message="slow down")
    endpoints = vertex.projects().locations().endpoints()
    with pytest.raises(HttpError) as caught:
        endpoints.create(parent=PARENT, body={"displayName": "after-429"}).execute(num_retries=0)
    assert caught.value.resp.status == 429
    assert json.loads(caught.value.content)["error"]["message"] == "slow down"

    def created():
        listed = endpoints.list(parent=PARENT, filter='display_name="after-429"').execute()
        return listed.get("endpoints")

    assert len(poll.until(created, what="the endpoint")) == 1


def test_an_error_after_acting_replaces_an_error_answer_too(emulator, vertex):
    """The answer is lost whatever it was: a 404 becomes the injected 503."""
    faults.answer_error_after(emulator.vertex_url, "customJobs.get", 503)
    with pytest.raises(HttpError) as caught:
        custom_jobs(vertex).get(name=f"{PARENT}/customJobs/999999999").execute(num_retries=0)
    assert caught.value.resp.status == 503


def test_the_discovery_client_retries_an_error_after_acting_into_a_second_job(emulator, vertex):
    """Why the shape exists: a client that retries a non-idempotent create on 503 makes
    the job twice (``ci`` looks its creates up by label instead)."""
    faults.answer_error_after(emulator.vertex_url, "customJobs.create", 503)
    custom_jobs(vertex).create(parent=PARENT, body=job_body("retried")).execute(num_retries=1)
    assert len(jobs_named(vertex, "retried")) == 2


BAD_SPECS = [
    ({"method": "customJobs.create", "drop": True, "status": 503}, "takes no status"),
    ({"method": "customJobs.create", "status": 503, "after": "yes"}, "after must be"),
    ({"method": "customJobs.create", "drop": 1}, "drop must be"),
    ({"method": "customJobs.create"}, "status must be one of"),
    ({"method": "customJobs.create", "status": 302}, "status must be one of"),
    ({"method": "", "status": 503}, "method must be"),
    ({"job": "fail", "kind": "pipelines"}, "kind must be one of"),
    ({"job": "fail", "trial": "2"}, 'trial applies to kind "trials" only'),
    ({"job": "fail", "kind": "trials", "trial": "two"}, "trial must be a trial id"),
    ({"job": "hang", "count": 0}, "count must be a positive integer"),
    ({"job": "delay", "kind": "batchPredictionJobs", "seconds": 1}, "state must be one of"),
    ({"job": "explode"}, 'a fault needs "method"'),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_malformed_faults_are_refused_with_400(emulator, spec, message):
    status, answer = admin(emulator.vertex_url, "POST", spec)
    assert status == 400 and message in answer["error"]["message"], answer
    assert faults.pending(emulator.vertex_url) == []


def test_every_shape_is_listed_and_cleared_with_storage_faults(emulator):
    url = emulator.vertex_url
    faults.inject(url, "predict", 429, count=2)
    faults.answer_error_after(url, "customJobs.create", 503)
    faults.drop_connection(url, "storage.objects.insert", after=True)
    faults.drop_connection(url, "objects.get")
    faults.fail_next_job(url, "boom", kind="trials", trial=2)
    faults.delay_job_state(url, "JOB_STATE_RUNNING", 5, kind="batchPredictionJobs")
    faults.hang_next_job(url, kind="hyperparameterTuningJobs")
    faults.fail_next_job(url)  # the shape before kinds: a custom job's
    listed = faults.pending(url)
    assert listed == [
        {"method": "predict", "status": 429, "count": 2},
        {"method": "customJobs.create", "status": 503, "count": 1, "after": True},
        {"method": "storage.objects.insert", "drop": True, "after": True, "count": 1},
        {"method": "objects.get", "drop": True, "after": False, "count": 1},
        {"job": "fail", "count": 1, "kind": "trials", "trial": "2", "message": "boom"},
        {
            "job": "delay",
            "state": "JOB_STATE_RUNNING",
            "seconds": 5,
            "count": 1,
            "kind": "batchPredictionJobs",
        },
        {"job": "hang", "count": 1, "kind": "hyperparameterTuningJobs"},
        {
            "job": "fail",
            "count": 1,
            "kind": "customJobs",
            "message": "Injected failure (emulator fault injection).",
        },
    ]
    faults.clear(url)
    assert faults.pending(url) == []
