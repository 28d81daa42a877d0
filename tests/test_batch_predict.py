"""Batch prediction jobs: the emulator over HTTP, the official SDK and ``ci batch-predict``."""

from __future__ import annotations

import json
import re

import pytest
from googleapiclient.errors import HttpError

from ci import cli
from ci.emulator import faults
from tests.conftest import BUCKET, PARENT, ROOT, upload
from tests.merge_path import settings_env
from tests.test_sdk import sdk  # noqa: F401 (the SDK's fixture, aiplatform.init)

FINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
BAD = {"PetalLength": "long", "PetalWidth": 0.5, "SepalLength": 5.1, "SepalWidth": 3.3}
BAD_AT = 1500  # the bad instance's line (0-based) in the input


def batch_jobs(vertex):
    return vertex.projects().locations().batchPredictionJobs()


@pytest.fixture(scope="session")
def batch_model(vertex, poll, trained) -> str:
    """A model named ``iris-batch`` whose one version is the trained export."""
    response = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "iris-batch"})
    return response["model"]


def instances_lines(repeat: int = 1000) -> list[str]:
    """``data/test.json`` ``repeat`` times, with one bad instance at ``BAD_AT``."""
    lines = [line for line in (ROOT / "data/test.json").read_text().splitlines() if line]
    out = lines * repeat
    out.insert(BAD_AT, json.dumps(BAD))
    return out


@pytest.fixture(scope="session")
def batch_input(gcs) -> str:
    blob = gcs.bucket(BUCKET).blob("batch/in/test-x1000.jsonl")
    blob.upload_from_string("\n".join(instances_lines()) + "\n")
    return f"gs://{BUCKET}/batch/in/test-x1000.jsonl"


def job_body(model: str, uri: str, out: str, batch_size: int = 64) -> dict:
    return {
        "displayName": "batch-test",
        "model": model,
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [uri]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": out},
        },
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"},
            "startingReplicaCount": 1,
            "maxReplicaCount": 1,
        },
        "manualBatchTuningParameters": {"batchSize": batch_size},
    }


def run(vertex, poll, body: dict, states=FINAL, timeout=180) -> dict:
    created = batch_jobs(vertex).create(parent=PARENT, body=body).execute()
    assert created["state"] == "JOB_STATE_PENDING"  # as Vertex answers create
    name = created["name"]
    return poll.until(
        lambda: (j := batch_jobs(vertex).get(name=name).execute())["state"] in states and j,
        timeout,
        f"batch job {name} to reach {states}",
    )


def read_output(gcs, directory: str) -> dict[str, list[dict]]:
    """Each output file's JSON lines, by file name."""
    bucket, _, prefix = directory.removeprefix("gs://").partition("/")
    return {
        blob.name.rsplit("/", 1)[-1]: [json.loads(x) for x in blob.download_as_text().splitlines()]
        for blob in gcs.list_blobs(bucket, prefix=prefix + "/")
    }


def check_results(files: dict[str, list[dict]]) -> None:
    """3,000 predictions in input order (classes 0, 1, 2 repeating) and the one error."""
    assert sorted(files) == [
        "prediction.errors_stats-00000-of-00001",
        "prediction.results-00000-of-00001",
    ]
    results = files["prediction.results-00000-of-00001"]
    expected = [json.loads(x) for x in instances_lines()]
    del expected[BAD_AT]
    assert [r["instance"] for r in results] == expected
    assert [r["prediction"]["class_ids"] for r in results] == [0, 1, 2] * 1000
    (error,) = files["prediction.errors_stats-00000-of-00001"]
    assert error["instance"] == BAD
    assert error["error"]["status"] == "INVALID_ARGUMENT"
    assert "'PetalLength' must be float" in error["error"]["message"]


def test_batch_prediction_writes_vertex_layout_and_counts_the_bad_instance(
    vertex, poll, gcs, batch_model, batch_input
):
    out = f"gs://{BUCKET}/batch/out-api"
    job = run(vertex, poll, job_body(batch_model, batch_input, out))
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    assert job["completionStats"] == {
        "successfulCount": "3000",
        "failedCount": "1",
        "incompleteCount": "0",
    }
    directory = job["outputInfo"]["gcsOutputDirectory"]
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(rf"{out}/prediction-iris-batch-{stamp}", directory), directory
    assert directory.endswith(job["createTime"][:23] + "Z")
    assert job["modelVersionId"] == "1"
    check_results(read_output(gcs, directory))
    listed = batch_jobs(vertex).list(parent=PARENT).execute()["batchPredictionJobs"]
    assert job["name"] in [j["name"] for j in listed]
    batch_jobs(vertex).delete(name=job["name"]).execute()
    with pytest.raises(HttpError) as caught:
        batch_jobs(vertex).get(name=job["name"]).execute()
    assert caught.value.resp.status == 404


def test_cancel_stops_a_running_batch(vertex, poll, gcs, batch_model):
    blob = gcs.bucket(BUCKET).blob("batch/in/long.jsonl")
    line = (ROOT / "data/test.json").read_text().splitlines()[0]
    blob.upload_from_string((line + "\n") * 50_000)
    body = job_body(batch_model, f"gs://{BUCKET}/batch/in/long.jsonl", f"gs://{BUCKET}/x", 1)
    job = run(vertex, poll, body, states=("JOB_STATE_RUNNING", *FINAL))
    assert job["state"] == "JOB_STATE_RUNNING"
    batch_jobs(vertex).cancel(name=job["name"], body={}).execute()
    assert batch_jobs(vertex).get(name=job["name"]).execute()["state"] in (
        "JOB_STATE_CANCELLING",
        "JOB_STATE_CANCELLED",
    )
    job = poll.until(
        lambda: (j := batch_jobs(vertex).get(name=job["name"]).execute())["state"] in FINAL and j,
        60,
        "the cancelled batch job to end",
    )
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert "outputInfo" not in job


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"model": f"{PARENT}/models/999999"}, 404, "Model"),
        (
            {"inputConfig": {"instancesFormat": "bigquery", "gcsSource": {"uris": ["gs://b/x"]}}},
            400,
            "Unsupported instances_format 'bigquery'",
        ),
        (
            {
                "outputConfig": {
                    "predictionsFormat": "jsonl",
                    "gcsDestination": {"outputUriPrefix": "/tmp/out"},
                }
            },
            400,
            "gs:// URI",
        ),
        # A model served by a prebuilt container supports dedicated resources only.
        (
            {"dedicatedResources": None},
            400,
            "Field: batch_prediction_job.dedicated_resources; Message: dedicated_resources is",
        ),
        (
            {"dedicatedResources": {"machineSpec": {"acceleratorType": "NVIDIA_TESLA_T4"}}},
            400,
            "Field: batch_prediction_job.dedicated_resources.machine_spec.machine_type; "
            "Message: Required field is not set.",
        ),
    ],
)
def test_bad_batch_jobs_are_refused(vertex, batch_model, change, status, message):
    body = {**job_body(batch_model, "gs://b/in.jsonl", "gs://b/out"), **change}
    with pytest.raises(HttpError) as caught:
        batch_jobs(vertex).create(parent=PARENT, body=body).execute()
    assert caught.value.resp.status == status
    assert message in json.loads(caught.value.content)["error"]["message"]


# --- python -m ci batch-predict -------------------------------------------------------

CI_PARENT = "projects/test-project/locations/us-central1"


@pytest.fixture
def ci_env(emulator, gcs, vertex, poll, trained, monkeypatch):
    """Settings for ``ci`` and a model ``batch-ci`` (alias default) in their project."""
    values = settings_env(emulator, "batch-ci")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    models = vertex.projects().locations().models()
    found = models.list(parent=CI_PARENT, filter='display_name="batch-ci"').execute()
    if not found.get("models"):
        body = {
            "model": {
                "displayName": "batch-ci",
                "artifactUri": trained["artifact_uri"],
                "containerSpec": {"imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu"},
            }
        }
        poll.operation(models.upload(parent=CI_PARENT, body=body).execute())
    return values


def test_ci_batch_predict_local_file(ci_env, emulator, gcs, tmp_path, capsys):
    # Through transient errors at the wire, as Vertex gives them at times.
    faults.inject(emulator.vertex_url, "batchPredictionJobs.create", 503, count=1)
    faults.inject(emulator.vertex_url, "batchPredictionJobs.get", 429, count=2)
    instances = tmp_path / "instances.jsonl"
    instances.write_text("\n".join(instances_lines()) + "\n")
    out = tmp_path / "outputs.txt"
    argv = ["batch-predict", "--instances", str(instances), "--output", "gs://test-bucket/bp"]
    code = cli.main([*argv, "--outputs", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "3000 predictions, 1 failed instances" in printed
    values = dict(x.split("=", 1) for x in out.read_text().splitlines())
    assert values["successful_count"] == "3000" and values["failed_count"] == "1"
    assert f"results: {values['output_directory']}" in printed
    assert values["output_directory"].startswith("gs://test-bucket/bp/prediction-batch-ci-")
    check_results(read_output(gcs, values["output_directory"]))
    assert faults.pending(emulator.vertex_url) == []  # the errors happened, and were retried


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--output", "/tmp/out"], 2, "not a gs:// URI: '/tmp/out'"),
        (
            ["--output", "gs://test-bucket/bp", "--model-version", "77"],
            1,
            "has no version or alias '77'",
        ),
        (
            ["--output", "gs://test-bucket/bp", "--instances", "missing.jsonl"],
            2,
            "file to stage not found: 'missing.jsonl'",
        ),
    ],
)
def test_ci_batch_predict_bad_input(ci_env, capsys, argv, code, message):
    base = ["batch-predict", "--instances", str(ROOT / "data/test.json")]
    assert cli.main(base + argv) == code
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err, err


# --- the official SDK: Model.batch_predict -------------------------------------------


@pytest.mark.usefixtures("sdk")
def test_sdk_batch_predict(gcs, trained, batch_input):
    from google.cloud import aiplatform

    model = aiplatform.Model.upload(
        display_name="iris-sdk-batch",
        artifact_uri=trained["artifact_uri"],
        serving_container_image_uri="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    )
    job = model.batch_predict(
        job_display_name="sdk-batch",
        gcs_source=batch_input,
        gcs_destination_prefix=f"gs://{BUCKET}/sdk-batch",
        instances_format="jsonl",
        predictions_format="jsonl",
        machine_type="n1-standard-2",
        batch_size=64,
        sync=True,  # returns once the job succeeded, despite the bad instance
    )
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert job.completion_stats.successful_count == 3000
    assert job.completion_stats.failed_count == 1
    directory = job.output_info.gcs_output_directory
    assert directory.startswith(f"gs://{BUCKET}/sdk-batch/prediction-iris-sdk-batch-")
    check_results(read_output(gcs, directory))
    assert job.resource_name in [j.resource_name for j in aiplatform.BatchPredictionJob.list()]
    job.delete()
    assert job.resource_name not in [j.resource_name for j in aiplatform.BatchPredictionJob.list()]
