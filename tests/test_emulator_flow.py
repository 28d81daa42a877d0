"""The issue's acceptance flow with the real trainer: stage, train, upload, deploy, predict.

One job trains the model every test here shares (200 steps: seconds, and enough for the
three test instances). A job of several replicas, trained and served: test_pipeline's
STANDARD_1 test.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ci.emulator import faults
from tests.conftest import (
    BUCKET,
    ROOT,
    create_endpoint,
    deploy,
    predict,
    upload,
)

TEST_INSTANCES = [json.loads(line) for line in (ROOT / "data/test.json").read_text().splitlines()]


@pytest.fixture(scope="session")
def served(vertex, poll, trained) -> dict:
    """Model version 1 deployed to a fresh endpoint with all the traffic."""
    uploaded = upload(vertex, poll, trained["artifact_uri"])
    endpoint = create_endpoint(vertex, poll, "iris-endpoint")
    deployed = deploy(vertex, poll, endpoint, uploaded["model"])
    return {"model": uploaded["model"], "endpoint": endpoint, "deploy_op": deployed}


def test_single_replica_job_trains_and_the_endpoint_predicts(vertex, gcs, trained, served):
    job = trained["job"]
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    assert job["startTime"] >= job["createTime"] and job["endTime"] >= job["startTime"]
    spec = job["jobSpec"]["workerPoolSpecs"][0]
    assert spec["machineSpec"] == {"machineType": "n1-standard-4"}
    assert spec["pythonPackageSpec"]["executorImageUri"].startswith("us-docker.pkg.dev/")
    # AIP_MODEL_DIR pointed the trainer at <outputUriPrefix>/model/.
    names = {b.name for b in gcs.list_blobs(BUCKET, prefix="runs/single/")}
    assert "runs/single/model/saved_model.pb" in names
    assert "runs/single/metrics.json" in names

    assert served["deploy_op"]["done"] and "error" not in served["deploy_op"]
    answer = predict(vertex, served["endpoint"], TEST_INSTANCES)
    assert answer["modelVersionId"] == "1"
    assert answer["model"] == served["model"]
    assert answer["deployedModelId"]
    classes = answer["predictions"]
    assert [_class_of(p) for p in answer["predictions"]] == [0, 1, 2], classes


def _class_of(prediction: dict) -> int:
    for key in ("class_id", "class_ids", "classes", "class"):
        if key in prediction:
            value = prediction[key]
            return int(value[0] if isinstance(value, list) else value)
    probabilities = prediction.get("probabilities") or next(iter(prediction.values()))
    return max(range(len(probabilities)), key=probabilities.__getitem__)


def test_versions_aliases_and_a_90_10_split(vertex, poll, trained, served):
    models = vertex.projects().locations().models()
    second = upload(vertex, poll, trained["artifact_uri"], parentModel=served["model"])
    assert second == {
        "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
        "model": served["model"],
        "modelVersionId": "2",
    }
    assert models.get(name=served["model"]).execute()["versionId"] == "1"  # default stays
    moved = models.mergeVersionAliases(
        name=f"{served['model']}@2", body={"versionAliases": ["default", "candidate"]}
    ).execute()
    assert moved["versionId"] == "2" and set(moved["versionAliases"]) == {"default", "candidate"}
    assert models.get(name=served["model"]).execute()["versionId"] == "2"
    assert models.get(name=f"{served['model']}@candidate").execute()["versionId"] == "2"
    versions = models.listVersions(name=served["model"]).execute()["models"]
    assert "versionAliases" not in versions[0]  # proto3 JSON leaves an empty list out

    endpoint = vertex.projects().locations().endpoints().get(name=served["endpoint"]).execute()
    first_id = endpoint["deployedModels"][0]["id"]
    deploy(vertex, poll, served["endpoint"], f"{served['model']}@2", {"0": 10, first_id: 90})
    endpoint = vertex.projects().locations().endpoints().get(name=served["endpoint"]).execute()
    assert sorted(endpoint["trafficSplit"].values()) == [10, 90]

    counts = Counter(
        predict(vertex, served["endpoint"], TEST_INSTANCES[:1])["modelVersionId"]
        for _ in range(300)
    )
    assert set(counts) == {"1", "2"}
    assert 10 <= counts["2"] <= 60, counts  # expected 30; far outside chance otherwise


def test_bad_instances_get_400_and_the_endpoint_keeps_serving(vertex, served):
    from googleapiclient.errors import HttpError

    bad = [TEST_INSTANCES[0], {**TEST_INSTANCES[1], "PetalWidth": "wide"}]
    with pytest.raises(HttpError) as caught:
        predict(vertex, served["endpoint"], bad)
    error = json.loads(caught.value.content)["error"]
    assert caught.value.resp.status == 400 and error["status"] == "INVALID_ARGUMENT"
    assert "instance 1" in error["message"] and "PetalWidth" in error["message"]
    assert predict(vertex, served["endpoint"], TEST_INSTANCES[:1])["predictions"]


def test_injected_429_and_503_reach_the_client_and_retries_survive_them(vertex, emulator, served):
    from googleapiclient.errors import HttpError

    for status in (429, 503):
        faults.inject(emulator.vertex_url, "predict", status, count=1)
        with pytest.raises(HttpError) as caught:
            predict(vertex, served["endpoint"], TEST_INSTANCES[:1])
        assert caught.value.resp.status == status
    faults.inject(emulator.vertex_url, "endpoints.predict", 503, count=2)
    assert predict(vertex, served["endpoint"], TEST_INSTANCES[:1], retries=3)["predictions"]
    assert faults.pending(emulator.vertex_url) == []
