"""The REST surface: validation against the discovery schemas, Google errors, models and
endpoints rules, operations, injected faults. Driven through google-api-python-client."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from googleapiclient.errors import HttpError

from ci.emulator import faults
from tests.conftest import DEDICATED, PARENT, create_endpoint, deploy, predict, upload

INSTANCE = {"PetalLength": 1.7, "PetalWidth": 0.5, "SepalLength": 5.1, "SepalWidth": 3.3}
PACKAGE_SPEC = {
    "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
    "packageUris": ["gs://test-bucket/staging/x.tar.gz"],
    "pythonModule": "x.task",
}


def error_of(call) -> tuple[int, dict]:
    """The HTTP status and Google error body of a request expected to fail."""
    with pytest.raises(HttpError) as caught:
        call.execute(num_retries=0)
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def job_body(**spec_extra) -> dict:
    pool = {
        "replicaCount": "1",
        "machineSpec": {"machineType": "n1-standard-4"},
        "pythonPackageSpec": dict(PACKAGE_SPEC),
    }
    return {"displayName": "x", "jobSpec": {"workerPoolSpecs": [pool], **spec_extra}}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**job_body(), "colour": "blue"}, 'Unknown name "colour"'),
        (job_body(bogusField=1), "Unknown name \"bogusField\" at 'jobSpec'"),
        (
            {
                "displayName": "x",
                "jobSpec": {"workerPoolSpecs": [{"containerSpec": {"imageUri": "i"}}]},
            },
            "needs a pythonPackageSpec",
        ),
        ({"jobSpec": job_body()["jobSpec"]}, "Field: custom_job.display_name; Message: Required"),
        ({**job_body(), "labels": ["a"]}, "'labels': expected an object"),
        (job_body(enableWebAccess="yes"), "'jobSpec.enableWebAccess': expected a boolean"),
        (
            {"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"replicaCount": "many"}]}},
            "replicaCount': expected an integer",
        ),
    ],
)
def test_bad_job_bodies_get_400_invalid_argument(vertex, body, fragment):
    status, error = error_of(
        vertex.projects().locations().customJobs().create(parent=PARENT, body=body)
    )
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert fragment in error["message"]


def test_malformed_json_gets_a_google_error(emulator):
    request = urllib.request.Request(
        f"{emulator.vertex_url}/v1/{PARENT}/customJobs",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["status"] == "INVALID_ARGUMENT"


def test_missing_resources_get_404_not_found(vertex):
    locations = vertex.projects().locations()
    for call in [
        locations.customJobs().get(name=f"{PARENT}/customJobs/424242"),
        locations.models().get(name=f"{PARENT}/models/424242"),
        locations.endpoints().get(name=f"{PARENT}/endpoints/424242"),
        locations.operations().get(name=f"{PARENT}/operations/424242"),
    ]:
        status, error = error_of(call)
        assert (status, error["status"]) == (404, "NOT_FOUND")


def test_documented_methods_it_does_not_serve_are_501_and_evaluations_are_none(
    emulator, vertex, poll
):
    models = vertex.projects().locations().models()
    model = upload(vertex, poll, "gs://test-bucket/nowhere", model={"displayName": "evals"})
    name = model["model"]
    assert models.evaluations().list(parent=name).execute() == {}
    for call in [
        models.evaluations().get(name=f"{name}/evaluations/1"),
        models.evaluations().list(parent=f"{PARENT}/models/424242"),
    ]:
        assert error_of(call)[1]["status"] == "NOT_FOUND"
    for call, method in [
        (models.export(name=name, body={"outputConfig": {}}), "models.export"),
        (
            vertex.projects()
            .locations()
            .endpoints()
            .explain(endpoint=f"{PARENT}/endpoints/1", body={"instances": [INSTANCE]}),
            "endpoints.explain",
        ),
    ]:
        status, error = error_of(call)
        assert (status, error["status"]) == (501, "UNIMPLEMENTED")
        assert f"aiplatform.projects.locations.{method} is not emulated" in error["message"]
    with pytest.raises(urllib.error.HTTPError) as caught:  # a path Vertex has not either
        urllib.request.urlopen(f"{emulator.vertex_url}/v1/{PARENT}/nothings", timeout=10)
    assert caught.value.code == 404


def test_model_ids_aliases_and_version_deletion_rules(vertex, poll):
    models = vertex.projects().locations().models()
    first = upload(vertex, poll, "gs://test-bucket/nowhere", modelId="rules-model")
    assert first["model"] == f"{PARENT}/models/rules-model"
    status, error = error_of(
        models.upload(
            parent=PARENT,
            body={
                "modelId": "rules-model",
                "model": {"displayName": "again", "containerSpec": {"imageUri": "x"}},
            },
        )
    )
    assert (status, error["status"]) == (409, "ALREADY_EXISTS")
    for model_id in ["1model", "-model", "Model", "a.b", "m" * 64]:
        body = {
            "modelId": model_id,
            "model": {"displayName": "x", "containerSpec": {"imageUri": "x"}},
        }
        status, error = error_of(models.upload(parent=PARENT, body=body))
        assert status == 400 and f"Invalid modelId {model_id!r}" in error["message"]
    endpoints = vertex.projects().locations().endpoints()
    for endpoint_id in ["0123", "1234567890", "abc-", "Abc", "a_b", "e" * 64]:
        call = endpoints.create(parent=PARENT, endpointId=endpoint_id, body={"displayName": "x"})
        status, error = error_of(call)
        assert status == 400 and f"Invalid endpointId {endpoint_id!r}" in error["message"]

    name = first["model"]
    upload(
        vertex,
        poll,
        "gs://test-bucket/nowhere",
        parentModel=name,
        model={"versionAliases": ["staging"]},
    )
    assert models.get(name=f"{name}@staging").execute()["versionId"] == "2"
    assert models.get(name=f"{name}@1").execute()["versionAliases"] == ["default"]
    merged = models.mergeVersionAliases(
        name=f"{name}@2", body={"versionAliases": ["-staging", "blue"]}
    ).execute()
    assert merged["versionAliases"] == ["blue"]
    status, error = error_of(models.get(name=f"{name}@staging"))
    assert status == 404
    status, error = error_of(
        models.mergeVersionAliases(name=f"{name}@1", body={"versionAliases": ["-default"]})
    )
    assert status == 400 and "default" in error["message"]
    status, error = error_of(
        models.mergeVersionAliases(name=f"{name}@1", body={"versionAliases": ["Bad_Alias"]})
    )
    assert status == 400
    status, error = error_of(models.deleteVersion(name=f"{name}@1"))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")  # the default version
    poll.operation(models.deleteVersion(name=f"{name}@2").execute())
    assert [v["versionId"] for v in models.listVersions(name=name).execute()["models"]] == ["1"]
    found = models.list(parent=PARENT, filter='display_name="iris" AND labels.git-sha="abc123"')
    assert name in [m["name"] for m in found.execute()["models"]]


@pytest.mark.parametrize(
    "artifact_uri, why",
    [
        ("gs://test-bucket/nowhere/", "No files under artifactUri gs://test-bucket/nowhere/."),
        ("gs://no-such-bucket/model", "The bucket of artifactUri gs://no-such-bucket/model"),
    ],
)
def test_deploying_an_unloadable_model_fails_the_operation(vertex, poll, gcs, artifact_uri, why):
    model = upload(vertex, poll, artifact_uri)["model"]
    endpoint = create_endpoint(vertex, poll, "broken")
    op = deploy(vertex, poll, endpoint, model)
    assert op["done"] and op["error"]["code"] == 9  # FAILED_PRECONDITION
    assert why in op["error"]["message"]
    got = vertex.projects().locations().endpoints().get(name=endpoint).execute()
    assert "deployedModels" not in got


def test_traffic_split_rules_deploy_undeploy_and_delete(vertex, poll, trained):
    endpoints = vertex.projects().locations().endpoints()
    model = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "split"})["model"]
    endpoint = create_endpoint(vertex, poll, "split")
    status, error = error_of(endpoints.predict(endpoint=endpoint, body={"instances": [INSTANCE]}))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    first = deploy(vertex, poll, endpoint, model)["response"]["deployedModel"]["id"]
    wanted = {"model": model, "dedicatedResources": DEDICATED}
    body = {"deployedModel": wanted, "trafficSplit": {"0": 50, first: 40}}
    status, error = error_of(endpoints.deployModel(endpoint=endpoint, body=body))
    assert status == 400 and "add up to 100" in error["message"]
    # A model served by a prebuilt container supports dedicated resources only.
    for resources, message in [
        ({}, "Field: deployed_model.dedicated_resources; Message: dedicated_resources is required"),
        ({"automaticResources": {"minReplicaCount": 1}}, "does not support AUTOMATIC_RESOURCES"),
        (
            {"dedicatedResources": {"minReplicaCount": 1}},
            "Field: deployed_model.dedicated_resources.machine_spec; Message",
        ),
        ({"dedicatedResources": {**DEDICATED, "minReplicaCount": 0}}, "at least 1, not 0"),
        (
            {"dedicatedResources": {"machineSpec": {"machineType": "n1-standard-2"}}},
            "min_replica_count must be at least 1",
        ),
        (
            {"dedicatedResources": {**DEDICATED, "minReplicaCount": 2, "maxReplicaCount": 1}},
            "max_replica_count (1) must not be less than min_replica_count (2)",
        ),
    ]:
        body = {"deployedModel": {"model": model, **resources}}
        status, error = error_of(endpoints.deployModel(endpoint=endpoint, body=body))
        assert status == 400 and message in error["message"], (resources, error)
    second = deploy(vertex, poll, endpoint, model, {"0": 0, first: 100})
    second_id = second["response"]["deployedModel"]["id"]
    got = endpoints.get(name=endpoint).execute()
    assert got["trafficSplit"] == {first: 100} and len(got["deployedModels"]) == 2

    status, error = error_of(
        endpoints.undeployModel(endpoint=endpoint, body={"deployedModelId": first})
    )
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")  # it still has traffic
    status, error = error_of(vertex.projects().locations().models().delete(name=model))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")  # it is deployed
    body = {"deployedModelId": first, "trafficSplit": {second_id: 100}}
    poll.operation(endpoints.undeployModel(endpoint=endpoint, body=body).execute())
    assert predict(vertex, endpoint, [INSTANCE])["deployedModelId"] == second_id
    body = {"deployedModelId": second_id}
    poll.operation(endpoints.undeployModel(endpoint=endpoint, body=body).execute())
    got = endpoints.get(name=endpoint).execute()
    assert "deployedModels" not in got and "trafficSplit" not in got  # proto3 JSON: empty omitted
    poll.operation(endpoints.delete(name=endpoint).execute())
    assert error_of(endpoints.get(name=endpoint))[0] == 404


def raw_predict(emulator, endpoint: str, payload: bytes):
    """POST ``payload`` to ``:rawPredict`` as curl does: (status, JSON answer, headers)."""
    request = urllib.request.Request(
        f"{emulator.vertex_url}/v1/{endpoint}:rawPredict",
        data=payload,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def test_raw_predict_passes_the_containers_request_and_answer(emulator, vertex, poll, trained):
    model = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "raw"})["model"]
    endpoint = create_endpoint(vertex, poll, "raw")
    rows = json.dumps({"instances": [INSTANCE]}).encode()
    status, answer, _ = raw_predict(emulator, endpoint, rows)
    assert (status, answer["error"]["status"]) == (400, "FAILED_PRECONDITION")  # Vertex's own
    deployed = deploy(vertex, poll, endpoint, model)["response"]["deployedModel"]["id"]

    status, answer, headers = raw_predict(emulator, endpoint, rows)
    assert status == 200
    assert answer == {"predictions": predict(vertex, endpoint, [INSTANCE])["predictions"]}
    assert headers["X-Vertex-AI-Deployed-Model-Id"] == deployed
    assert headers["X-Vertex-AI-Endpoint-Id"] == endpoint.rsplit("/", 1)[-1]
    # A gRPC-transcoding client sends the RawPredictRequest message: the body is in httpBody.
    wrapped = {
        "httpBody": {"contentType": "application/json", "data": base64.b64encode(rows).decode()}
    }
    assert raw_predict(emulator, endpoint, json.dumps(wrapped).encode())[:2] == (200, answer)
    columns = {"inputs": {name: [value] for name, value in INSTANCE.items()}}
    status, columnar, _ = raw_predict(emulator, endpoint, json.dumps(columns).encode())
    assert status == 200 and columnar["outputs"]["class_ids"] == [
        answer["predictions"][0]["class_ids"]
    ]

    # The container's errors come back as it answers them, and the endpoint still serves.
    status, answer, _ = raw_predict(emulator, endpoint, b"{not json")
    assert status == 400 and "JSON Parse error" in answer["error"]
    status, answer, _ = raw_predict(emulator, endpoint, b'{"instances": [{"Colour": 1}]}')
    assert status == 400 and "unknown field 'Colour'" in answer["error"]
    faults.inject(emulator.vertex_url, "endpoints.rawPredict", 503)
    status, answer, _ = raw_predict(emulator, endpoint, rows)
    assert (status, answer["error"]["status"]) == (503, "UNAVAILABLE")
    assert raw_predict(emulator, endpoint, rows)[0] == 200
    status, answer, _ = raw_predict(emulator, endpoint.replace("/endpoints/", "/endpoints/x"), rows)
    assert (status, answer["error"]["status"]) == (404, "NOT_FOUND")


def test_injected_faults_on_create_and_delayed_operations(vertex, poll, emulator):
    jobs = vertex.projects().locations().customJobs()
    faults.inject(emulator.vertex_url, "customJobs.list", 503, count=1)
    status, error = error_of(jobs.list(parent=PARENT))
    assert (status, error["status"]) == (503, "UNAVAILABLE")
    faults.inject(emulator.vertex_url, "aiplatform.projects.locations.customJobs.list", 429, 2)
    jobs.list(parent=PARENT).execute(num_retries=3)  # raises unless a retry got through
    assert faults.pending(emulator.vertex_url) == []

    faults.delay_operations(emulator.vertex_url, 1.0)
    started = time.monotonic()
    op = (
        vertex.projects()
        .locations()
        .endpoints()
        .create(parent=PARENT, body={"displayName": "slow"})
        .execute()
    )
    assert op["done"] is False
    done = poll.operation(op)
    assert done["done"] and time.monotonic() - started >= 1.0
    assert done["response"]["displayName"] == "slow"

    # Held for ten minutes, then released: it finishes now, with its result.
    faults.delay_operations(emulator.vertex_url, 600)
    create = vertex.projects().locations().endpoints().create
    op = create(parent=PARENT, body={"displayName": "held"}).execute()
    ops = vertex.projects().locations().endpoints().operations()
    assert ops.get(name=op["name"]).execute()["done"] is False
    assert faults.release_operations(emulator.vertex_url) >= 1
    done = poll.operation(op, timeout=30)
    assert done["done"] and done["response"]["displayName"] == "held"


def test_bad_fault_specs_are_refused(emulator):
    with pytest.raises(urllib.error.HTTPError) as caught:
        faults.inject(emulator.vertex_url, "predict", 200)
    assert caught.value.code == 400
    assert faults.pending(emulator.vertex_url) == []
