"""List, read and update behaviour every Vertex AI collection shares, over raw HTTP as a
client written from the REST reference calls it: bad page tokens and filters are 400
INVALID_ARGUMENT on every list, ``fields`` (Google's partial response) cuts answers down,
output-only fields of a create body are ignored, and ``endpoints.update`` (the long-running
update) changes ``clientConnectionConfig`` only."""

from __future__ import annotations

import pytest

from tests.conftest import FINAL_JOB_STATES, PARENT, Poll, upload
from tests.test_emulator_docs import call, finished

LISTS = (
    "customJobs",
    "hyperparameterTuningJobs",
    "batchPredictionJobs",
    "trainingPipelines",
    "models",
    "endpoints",
    "operations",
)


def _endpoint(url: str, display_name: str, **extra) -> dict:
    """A new endpoint as endpoints.get returns it (its create operation followed to the end)."""
    body = {"displayName": display_name, **extra}
    status, op = call(url, "POST", f"/v1/{PARENT}/endpoints", body)
    assert status == 200, op
    return call(url, "GET", f"/v1/{finished(url, op)['response']['name']}")[1]


@pytest.mark.parametrize("kind", LISTS)
def test_every_list_refuses_a_page_token_it_did_not_issue(emulator, kind):
    url = emulator.vertex_url
    status, body = call(url, "GET", f"/v1/{PARENT}/{kind}", pageToken="not-a-token")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "pageToken" in body["error"]["message"]


def test_a_page_token_only_fits_the_list_that_issued_it(emulator):
    url = emulator.vertex_url
    for i in range(2):
        _endpoint(url, f"token-{i}")
    status, page = call(url, "GET", f"/v1/{PARENT}/endpoints", pageSize="1")
    assert status == 200 and page["nextPageToken"]
    status, body = call(url, "GET", f"/v1/{PARENT}/models", pageToken=page["nextPageToken"])
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("kind", LISTS)
@pytest.mark.parametrize(
    "text, problem",
    [
        ('(display_name="x"', "unbalanced parentheses"),
        ('display_name="x', "unterminated string"),
        ("display_name=x)", "unbalanced parentheses"),
    ],
)
def test_every_list_refuses_a_filter_that_does_not_parse(emulator, kind, text, problem):
    status, body = call(emulator.vertex_url, "GET", f"/v1/{PARENT}/{kind}", filter=text)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT"), body
    assert problem in body["error"]["message"]


def test_an_operations_done_filter_takes_a_boolean_only(emulator):
    url = emulator.vertex_url
    _endpoint(url, "done-filter")
    status, body = call(url, "GET", f"/v1/{PARENT}/operations", filter="done=maybe")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, done = call(url, "GET", f"/v1/{PARENT}/operations", filter="done=true")
    assert status == 200 and done["operations"]
    assert all(op["done"] for op in done["operations"])


def test_fields_selects_a_partial_response(emulator):
    url = emulator.vertex_url
    endpoint = _endpoint(url, "partial", labels={"suite": "partial"})
    status, got = call(url, "GET", f"/v1/{endpoint['name']}", fields="name,labels")
    assert status == 200
    assert got == {"name": endpoint["name"], "labels": {"suite": "partial"}}
    status, listed = call(
        url,
        "GET",
        f"/v1/{PARENT}/endpoints",
        filter="labels.suite=partial",
        fields="endpoints(displayName)",
    )
    assert status == 200 and listed == {"endpoints": [{"displayName": "partial"}]}
    status, nested = call(url, "GET", f"/v1/{endpoint['name']}", fields="labels/suite")
    assert nested == {"labels": {"suite": "partial"}}
    status, body = call(url, "GET", f"/v1/{endpoint['name']}", fields="endpoints(name")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_output_only_fields_of_a_create_body_are_ignored(emulator):
    url = emulator.vertex_url
    endpoint = _endpoint(
        url,
        "output-only",
        name="projects/elsewhere/locations/europe-west4/endpoints/5",
        createTime="2001-01-01T00:00:00Z",
        deployedModels=[{"id": "1", "model": "projects/x/locations/y/models/z"}],
    )
    assert endpoint["name"].startswith(f"{PARENT}/endpoints/")
    assert not endpoint["createTime"].startswith("2001")
    assert "deployedModels" not in endpoint


def test_long_running_update_changes_the_client_connection_config_only(emulator):
    url = emulator.vertex_url
    endpoint = _endpoint(url, "lro-update")
    changed = {**endpoint, "clientConnectionConfig": {"inferenceTimeout": "30s"}}
    status, op = call(url, "POST", f"/v1/{endpoint['name']}:update", {"endpoint": changed})
    assert status == 200, op
    op = finished(url, op)
    assert op["metadata"]["@type"].endswith("UpdateEndpointOperationMetadata")
    assert op["response"]["clientConnectionConfig"] == {"inferenceTimeout": "30s"}
    status, got = call(url, "GET", f"/v1/{endpoint['name']}")
    assert got["clientConnectionConfig"] == {"inferenceTimeout": "30s"}
    assert got["etag"] != endpoint["etag"]

    renamed = {"displayName": "renamed"}
    status, body = call(url, "POST", f"/v1/{endpoint['name']}:update", {"endpoint": renamed})
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "display_name" in body["error"]["message"]
    stale = {**got, "etag": endpoint["etag"]}
    status, body = call(url, "POST", f"/v1/{endpoint['name']}:update", {"endpoint": stale})
    assert (status, body["error"]["status"]) == (409, "ABORTED")
    status, body = call(url, "POST", f"/v1/{endpoint['name']}:update", {})
    assert status == 400 and "Field: endpoint" in body["error"]["message"]


@pytest.mark.parametrize(
    "kind, text",
    [
        ("customJobs", 'state<"JOB_STATE_RUNNING"'),
        ("customJobs", 'create_time:"2024-01-01T00:00:00Z"'),
        ("models", "model>5"),
        ("endpoints", 'base_model_name!="gemma"'),
        ("operations", "done:true"),
    ],
)
def test_a_comparison_the_field_does_not_support_is_400(emulator, kind, text):
    status, body = call(emulator.vertex_url, "GET", f"/v1/{PARENT}/{kind}", filter=text)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT"), body
    assert "supports" in body["error"]["message"]


def test_documented_filter_fields_of_each_list_are_accepted(emulator):
    url = emulator.vertex_url
    for kind, text in [
        ("models", 'base_model_name="gemma"'),
        ("endpoints", 'baseModelName="gemma"'),
        ("trainingPipelines", 'training_task_definition:"*custom_task_1.0.0.yaml"'),
        ("customJobs", 'state!="JOB_STATE_FAILED" AND create_time>="2020-01-01T00:00:00Z"'),
    ]:
        status, body = call(url, "GET", f"/v1/{PARENT}/{kind}", filter=text)
        assert status == 200, (kind, body)
        if "base_model_name" in text or "baseModelName" in text:
            assert body == {}  # no model or endpoint here comes from Model Garden


def test_batch_jobs_filter_on_their_models_display_name(emulator, vertex, poll):
    url = emulator.vertex_url
    model = upload(vertex, poll, "gs://test-bucket/nowhere", model={"displayName": "mdn-model"})
    body = {
        "displayName": "mdn-job",
        "model": model["model"],
        "inputConfig": {
            "instancesFormat": "jsonl",
            "gcsSource": {"uris": ["gs://test-bucket/mdn/in.jsonl"]},
        },
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": "gs://test-bucket/mdn/out"},
        },
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"},
            "startingReplicaCount": 1,
        },
    }
    status, job = call(url, "POST", f"/v1/{PARENT}/batchPredictionJobs", body)
    assert status == 200, job

    def listed(text: str) -> list[str]:
        status, page = call(url, "GET", f"/v1/{PARENT}/batchPredictionJobs", filter=text)
        assert status == 200, page
        return [j["name"] for j in page.get("batchPredictionJobs", [])]

    assert job["name"] in listed('model_display_name="mdn-model"')
    assert job["name"] in listed('modelDisplayName="mdn-model" AND display_name="mdn-job"')
    assert job["name"] not in listed('model_display_name!="mdn-model"')
    assert "_modelDisplayName" not in call(url, "GET", f"/v1/{job['name']}")[1]
    ended = Poll(None)._until(  # it ends (its model has no files): nothing outlives the test
        lambda: call(url, "GET", f"/v1/{job['name']}")[1],
        lambda got: got["state"] in FINAL_JOB_STATES,
        120,
        f"batch job {job['name']}",
    )
    # A failed job's error is a google.rpc.Status: FAILED_PRECONDITION's number, 9.
    assert ended["state"] == "JOB_STATE_FAILED"
    assert ended["error"]["code"] == 9 and "artifactUri" in ended["error"]["message"]
    assert ended["completionStats"]["incompleteCount"] == "-1"
