"""Error answers as Google's frontends give them, checked over raw HTTP as a client written
from the Vertex AI REST reference would see them: every error carries a canonical
google.rpc.Code name, a method that does not exist is 404 "Method not found.", a location
Vertex AI does not serve is refused, and ``locations.get``/``list`` answer."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from ci.emulator import faults
from ci.emulator.httpd import RPC_CODES, STATUS_NAMES, ApiError
from ci.limits import VERTEX_REGIONS
from tests.conftest import PARENT
from tests.test_emulator_docs import call

NOWHERE = "projects/emulator-tests/locations/nowhere-1"


def test_every_http_status_the_emulator_answers_has_a_canonical_name():
    for code, name in STATUS_NAMES.items():
        assert ApiError(code, "x").status == name != "UNKNOWN"
        assert name in RPC_CODES
    assert ApiError(400, "x", "FAILED_PRECONDITION").rpc_code == 9
    assert ApiError(404, "x").rpc_code == 5


@pytest.mark.parametrize(
    "method, path",
    [
        ("PUT", f"/v1/{PARENT}/models"),
        ("DELETE", f"/v1/{PARENT}/customJobs"),
        ("PATCH", f"/v1/{PARENT}/customJobs/1"),
        ("GET", f"/v1/{PARENT}/endpoints/1:predict"),
    ],
)
def test_a_method_the_path_does_not_have_is_404_method_not_found(emulator, method, path):
    # Google routes on HTTP method and path together: no 405, no "UNKNOWN".
    status, body = call(emulator.vertex_url, method, path, body={} if method != "GET" else None)
    assert status == 404, body
    assert body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404
    assert body["error"]["message"].startswith("Method not found.")


def test_a_head_request_gets_the_json_404_headers_without_a_body(emulator):
    address = urlsplit(emulator.vertex_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request("HEAD", f"/v1/{PARENT}/models")
    answer = connection.getresponse()
    assert answer.status == 404
    assert answer.getheader("Content-Type").startswith("application/json")
    assert int(answer.getheader("Content-Length")) > 0 and answer.read() == b""
    connection.request("GET", f"/v1/{PARENT}/models")  # the connection is still in step
    assert connection.getresponse().status == 200
    connection.close()


@pytest.mark.parametrize(
    "method, path, method_id",
    [
        ("GET", f"/v1/{PARENT}/models/m@", "models.get"),
        ("DELETE", f"/v1/{PARENT}/models/m@", "models.delete"),
    ],
)
def test_a_bad_name_for_a_served_method_is_400_not_unimplemented(emulator, method, path, method_id):
    status, body = call(emulator.vertex_url, method, path)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT"), body
    assert method_id in body["error"]["message"] and "not emulated" not in body["error"]["message"]
    status, body = call(emulator.vertex_url, "POST", f"/v1/{PARENT}/endpoints/e:explain", {})
    assert (status, body["error"]["status"]) == (501, "UNIMPLEMENTED")


@pytest.mark.parametrize("status, name", [(403, "PERMISSION_DENIED"), (504, "DEADLINE_EXCEEDED")])
def test_injected_faults_carry_their_canonical_status(emulator, status, name):
    faults.inject(emulator.vertex_url, "models.list", status)
    got, body = call(emulator.vertex_url, "GET", f"/v1/{PARENT}/models")
    assert (got, body["error"]["status"]) == (status, name)


@pytest.mark.parametrize(
    "method, path, field",
    [
        ("GET", f"/v1/{NOWHERE}/models", "parent"),
        ("GET", f"/v1/{NOWHERE}/customJobs/7", "name"),
        ("POST", f"/v1/{NOWHERE}/endpoints/7:predict", "endpoint"),
        ("GET", f"/v1/{NOWHERE}/operations", "name"),
        ("GET", f"/ui/{NOWHERE}/operations/7", "name"),
        ("GET", "/v1/projects/emulator-tests/locations/global/endpoints", "parent"),
        ("POST", f"/v1/{NOWHERE}/endpoints/7:explain", "endpoint"),  # not emulated either
    ],
)
def test_a_location_vertex_does_not_serve_is_refused_naming_the_field(
    emulator, method, path, field
):
    body = {"instances": [1]} if method == "POST" else None
    status, answer = call(emulator.vertex_url, method, path, body=body)
    assert status == 400, answer
    error = answer["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert f"Field: {field}; Message: The provided location ID is not valid" in error["message"]
    assert path.split("/")[5] in error["message"]


def test_a_create_in_an_unserved_location_creates_nothing(emulator):
    status, _ = call(
        emulator.vertex_url, "POST", f"/v1/{NOWHERE}/endpoints", {"displayName": "nowhere"}
    )
    assert status == 400
    status, listed = call(emulator.vertex_url, "GET", f"/v1/{PARENT}/endpoints")
    assert status == 200
    assert all(e["displayName"] != "nowhere" for e in listed.get("endpoints", []))


def test_every_vertex_region_is_served(emulator):
    for region in VERTEX_REGIONS:
        path = f"/v1/projects/emulator-tests/locations/{region}/batchPredictionJobs"
        status, body = call(emulator.vertex_url, "GET", path)
        assert status == 200, (region, body)


def test_locations_get_and_list(emulator):
    url = emulator.vertex_url
    for prefix in ("v1", "ui"):
        status, got = call(url, "GET", f"/{prefix}/projects/emulator-tests/locations/europe-west4")
        assert status == 200
        assert got == {
            "name": "projects/emulator-tests/locations/europe-west4",
            "locationId": "europe-west4",
        }
    status, missing = call(url, "GET", f"/v1/{NOWHERE}")
    assert (status, missing["error"]["status"]) == (404, "NOT_FOUND")

    seen, token = [], None
    while True:
        query = {"pageSize": "10", **({"pageToken": token} if token else {})}
        status, page = call(url, "GET", "/v1/projects/emulator-tests/locations", **query)
        assert status == 200 and len(page["locations"]) <= 10
        seen += [loc["locationId"] for loc in page["locations"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == list(VERTEX_REGIONS)
    status, europe = call(url, "GET", "/v1/projects/p/locations", filter='location_id:"europe-*"')
    assert status == 200
    assert {loc["locationId"] for loc in europe["locations"]} == {
        r for r in VERTEX_REGIONS if r.startswith("europe-")
    }
