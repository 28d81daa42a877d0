"""Error answers as Google's frontends give them, checked over raw HTTP as a client written
from the Vertex AI REST reference would see them: every error carries a canonical
google.rpc.Code name, a method that does not exist is 404 "Method not found.", a location
Vertex AI does not serve is refused, ``locations.get``/``list`` answer, and a bad field is
named by its request path in proto names ("List of found errors:\t1.Field: ...") with a
google.rpc.BadRequest detail, which the official SDK surfaces as InvalidArgument."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from ci.emulator import faults
from ci.emulator.httpd import RPC_CODES, STATUS_NAMES, ApiError, bad_request
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


# --- bad fields: Vertex's "List of found errors" and google.rpc.BadRequest -------------

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
REQUIRED = "Required field is not set."
PACKAGE = {
    "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
    "packageUris": ["gs://b/trainer-0.1.tar.gz"],
    "pythonModule": "trainer.task",
}


def _violation(field: str, description: str) -> list[dict]:
    return [
        {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": description}]}
    ]


@pytest.mark.parametrize(
    "path, body, field",
    [
        # body: "endpoint": the path starts with the request field the body fills.
        (f"/v1/{PARENT}/endpoints", {}, "endpoint.display_name"),
        # Nested and repeated: the pool's index, as google.rpc.BadRequest.FieldViolation has it.
        (
            f"/v1/{PARENT}/customJobs",
            {
                "displayName": "no-machine",
                "jobSpec": {"workerPoolSpecs": [{"pythonPackageSpec": PACKAGE}]},
            },
            "custom_job.job_spec.worker_pool_specs[0].machine_spec.machine_type",
        ),
        (
            f"/v1/{PARENT}/customJobs",
            {
                "displayName": "no-module",
                "jobSpec": {
                    "workerPoolSpecs": [
                        {
                            "machineSpec": {"machineType": "n1-standard-4"},
                            "pythonPackageSpec": {**PACKAGE, "pythonModule": ""},
                        }
                    ]
                },
            },
            "custom_job.job_spec.worker_pool_specs[0].python_package_spec.python_module",
        ),
        # body: "*" (UploadModelRequest): the path starts at the request's own fields.
        (f"/v1/{PARENT}/models:upload", {"model": {}}, "model.display_name"),
        (f"/v1/{PARENT}/models:upload", {}, "model"),
        (
            f"/v1/{PARENT}/batchPredictionJobs",
            {"displayName": "b", "inputConfig": {}, "outputConfig": {}},
            "batch_prediction_job.input_config.instances_format",
        ),
    ],
    ids=["top-level", "nested-repeated", "package-module", "body-star", "body-star-top", "batch"],
)
def test_a_missing_required_field_is_named_by_its_request_path(emulator, path, body, field):
    status, answer = call(emulator.vertex_url, "POST", path, body)
    assert status == 400, answer
    assert answer["error"] == {
        "code": 400,
        "message": f"List of found errors:\t1.Field: {field}; Message: {REQUIRED}\t",
        "status": "INVALID_ARGUMENT",
        "details": _violation(field, REQUIRED),
    }


def test_a_patch_that_empties_a_required_field_names_it_under_the_resource(emulator):
    url = emulator.vertex_url
    status, created = call(url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "emptied"})
    assert status == 200, created
    name = created["name"].split("/operations/")[0]  # the operation of the new endpoint
    status, answer = call(url, "PATCH", f"/v1/{name}", {}, updateMask="display_name")
    assert status == 400, answer
    assert answer["error"]["details"] == _violation("endpoint.display_name", REQUIRED)
    status, answer = call(url, "PATCH", f"/v1/{name}", {"displayName": "x"})
    assert status == 400, answer
    assert answer["error"]["details"] == _violation("update_mask", REQUIRED)


def test_a_bad_label_names_the_labels_field(emulator):
    body = {"displayName": "labelled", "labels": {"Team": "a"}}
    status, answer = call(emulator.vertex_url, "POST", f"/v1/{PARENT}/endpoints", body)
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT"), answer
    message = answer["error"]["message"]
    assert message.startswith("List of found errors:\t1.Field: endpoint.labels; Message: ")
    assert "invalid label key 'Team'" in message
    [detail] = answer["error"]["details"]
    assert detail["@type"] == BAD_REQUEST
    assert [v["field"] for v in detail["fieldViolations"]] == ["endpoint.labels"]


def test_a_payload_error_keeps_its_wording_and_gets_a_bad_request_detail(emulator):
    body = {"displayName": "x", "jobSpec": {"colour": "blue"}}
    status, answer = call(emulator.vertex_url, "POST", f"/v1/{PARENT}/customJobs", body)
    assert status == 400, answer
    message = answer["error"]["message"]
    assert message == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'jobSpec': Cannot find field."
    )
    assert answer["error"]["details"] == _violation("custom_job.job_spec", message)
    # At the top of a body: "*" request, the violation names no field (as Google's do).
    body = {"instances": [1], "colour": "blue"}
    status, answer = call(emulator.vertex_url, "POST", f"/v1/{PARENT}/endpoints/1:predict", body)
    assert status == 400, answer
    [detail] = answer["error"]["details"]
    assert detail["fieldViolations"] == [{"description": answer["error"]["message"]}]


def test_an_operation_error_carries_the_details_of_its_api_error():
    error = ApiError(400, "bad", details=[bad_request("bad", "endpoint.labels")])
    assert error.rpc_status() == {"code": 3, "message": "bad", "details": error.details}
    assert "details" not in ApiError(404, "gone").body()["error"]
    assert "details" not in ApiError(404, "gone").rpc_status()


def test_the_sdk_raises_bad_request_with_the_message_and_the_field_violation(emulator):
    # The official SDK's REST transport, as `aiplatform.init(api_transport="rest")` uses it:
    # google.api_core picks the exception by HTTP status (400: BadRequest, InvalidArgument's
    # base class) and keeps the JSON details as they are.
    client = aiplatform_v1.EndpointServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator.vertex_url},
    )
    with pytest.raises(gexc.BadRequest) as caught:
        client.create_endpoint(parent=PARENT, endpoint=aiplatform_v1.Endpoint())
    field = "endpoint.display_name"
    assert caught.value.code == 400
    assert caught.value.message.endswith(
        f": List of found errors:\t1.Field: {field}; Message: {REQUIRED}\t"
    )
    assert caught.value.details == _violation(field, REQUIRED)
