"""batchPredictionJobs as Google documents them for custom-trained models: every Cloud Storage
input format, instanceConfig, bad lines and files, state changes, cancel and delete.

https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions and the REST
reference of projects.locations.batchPredictionJobs. The model is the session's trained Iris
export: it takes an object of four float features, so arrays and ``{"b64"}`` instances are
error lines, which still show what was sent.
"""

from __future__ import annotations

import base64
import json

import pytest
from googleapiclient.errors import HttpError

from tests.conftest import BUCKET, PARENT, upload
from tests.test_sdk import sdk  # noqa: F401 (the SDK's fixture, aiplatform.init)

FINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
FEATURES = ("PetalLength", "PetalWidth", "SepalLength", "SepalWidth")
ROWS = [  # (features in FEATURES order, class id)
    ((1.7, 0.5, 5.1, 3.3), 0),
    ((4.2, 1.5, 5.9, 3.0), 1),
    ((5.4, 2.1, 6.9, 3.1), 2),
]


def jobs(vertex):
    return vertex.projects().locations().batchPredictionJobs()


@pytest.fixture(scope="module")
def model(vertex, poll, trained) -> str:
    response = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "iris-io"})
    return response["model"]


def put(gcs, name: str, data: bytes | str) -> str:
    gcs.bucket(BUCKET).blob(name).upload_from_string(data)
    return f"gs://{BUCKET}/{name}"


def body(model: str, uris, fmt: str = "jsonl", out: str = "io-out", **extra) -> dict:
    return {
        "displayName": f"io-{fmt}",
        "model": model,
        "inputConfig": {"instancesFormat": fmt, "gcsSource": {"uris": list(uris)}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/{out}"},
        },
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"},
            "startingReplicaCount": 1,
        },
        **extra,
    }


def run(vertex, poll, job_body: dict, states=FINAL) -> dict:
    created = jobs(vertex).create(parent=PARENT, body=job_body).execute()
    assert created["state"] == "JOB_STATE_PENDING"
    return poll.until(
        lambda: (j := jobs(vertex).get(name=created["name"]).execute())["state"] in states and j,
        120,
        f"batch job to reach {states}",
    )


def outputs(gcs, job: dict) -> tuple[list[dict], list[dict]]:
    """The job's result lines and error lines (each kind's files in name order)."""
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    bucket, _, prefix = job["outputInfo"]["gcsOutputDirectory"][5:].partition("/")
    found = {"results": [], "errors_stats": []}
    for blob in sorted(gcs.list_blobs(bucket, prefix=prefix + "/"), key=lambda b: b.name):
        kind = blob.name.rsplit("/", 1)[-1].split(".")[1].split("-")[0]
        found[kind] += [json.loads(x) for x in blob.download_as_text().splitlines()]
    return found["results"], found["errors_stats"]


def counts(job: dict) -> tuple[str, str, str]:
    stats = job["completionStats"]
    return stats["successfulCount"], stats["failedCount"], stats["incompleteCount"]


def objects(key: bool = False) -> list[dict]:
    return [
        {**({"id": f"row-{i}"} if key else {}), **dict(zip(FEATURES, values, strict=True))}
        for i, (values, _) in enumerate(ROWS)
    ]


# --- input formats -----------------------------------------------------------------


def test_csv_rows_are_sent_as_arrays_of_numbers_and_quoted_strings(vertex, poll, gcs, model):
    header = ",".join(f'"{f}"' for f in FEATURES)
    rows = [",".join(str(v) for v in values) for values, _ in ROWS]
    text = "\n".join([header, rows[0], '1.0,"x",2.0,3.0', "1.0,oops,2.0,3.0", "1,2", ""])
    job = run(vertex, poll, body(model, [put(gcs, "io/in.csv", text)], "csv"))
    results, errors = outputs(gcs, job)
    assert results == [] and counts(job) == ("0", "4", "0")
    sent = [e["instance"] for e in errors]
    # Unquoted cells are floats, quoted ones strings; an array goes to the model as is.
    assert [1.7, 0.5, 5.1, 3.3] in sent and [1.0, "x", 2.0, 3.0] in sent
    assert [1.0, 2.0] in sent  # one value short of the header
    assert "1.0,oops,2.0,3.0" in sent  # not a number and not quoted
    assert {e["error"]["status"] for e in errors} == {"INVALID_ARGUMENT"}


def test_csv_with_a_key_column_sent_as_objects(vertex, poll, gcs, model):
    header = ",".join(f'"{f}"' for f in ("id", *FEATURES))
    rows = [f'"row-{i}",' + ",".join(map(str, v)) for i, (v, _) in enumerate(ROWS)]
    uri = put(gcs, "io/keyed.csv", "\n".join([header, *rows]) + "\n")
    config = {"instanceType": "object", "keyField": "id"}
    job = run(vertex, poll, body(model, [uri], "csv", instanceConfig=config))
    results, errors = outputs(gcs, job)
    assert errors == [] and counts(job) == ("3", "0", "0")
    # With keyField the output has "key" instead of "instance".
    assert [(r["key"], r["prediction"]["class_ids"]) for r in results] == [
        ("row-0", 0),
        ("row-1", 1),
        ("row-2", 2),
    ]
    assert all("instance" not in r for r in results)


def test_jsonl_instance_config_key_included_and_excluded_fields(vertex, poll, gcs, model):
    uri = put(gcs, "io/keyed.jsonl", "\n".join(json.dumps(o) for o in objects(key=True)))
    key = run(vertex, poll, body(model, [uri], instanceConfig={"keyField": "id"}))
    results, _ = outputs(gcs, key)
    assert [(r["key"], r["prediction"]["class_ids"]) for r in results] == [
        (f"row-{i}", c) for i, (_, c) in enumerate(ROWS)
    ]
    excluded = run(vertex, poll, body(model, [uri], instanceConfig={"excludedFields": ["id"]}))
    results, _ = outputs(gcs, excluded)
    # Excluded fields are not sent, but are attached to the output when there is no key.
    assert [r["instance"] for r in results] == objects(key=True)
    included = {"includedFields": list(FEATURES)}
    results, _ = outputs(gcs, run(vertex, poll, body(model, [uri], instanceConfig=included)))
    assert [r["instance"] for r in results] == objects()  # what was sent
    array = {"instanceType": "array"}  # objects as arrays need includedFields for the order
    job = run(vertex, poll, body(model, [uri], instanceConfig=array))
    results, errors = outputs(gcs, job)
    assert results == [] and counts(job) == ("0", "3", "0")
    assert "included_fields" in errors[0]["error"]["message"]


def test_bad_lines_are_error_lines_and_wildcards_skip_nothing(vertex, poll, gcs, model):
    good = json.dumps(objects()[1]).encode()
    lines = [good, b"not json", b'{"PetalLength": NaN}', b"\xff\xfe bad", b"   ", good]
    put(gcs, "io/glob/a.jsonl", b"\r\n".join(lines) + b"\r\n")
    put(gcs, "io/glob/b.jsonl", b"")  # an empty file
    put(gcs, "io/glob/sub/c.jsonl", good)  # "*" does not cross a "/"
    put(gcs, "io/glob/d.txt", good)
    job = run(vertex, poll, body(model, [f"gs://{BUCKET}/io/glob/*.jsonl"]))
    results, errors = outputs(gcs, job)
    assert counts(job) == ("2", "3", "0")
    assert [r["prediction"]["class_ids"] for r in results] == [1, 1]
    assert [e["instance"] for e in errors] == [
        "not json",
        '{"PetalLength": NaN}',
        "\ufffd\ufffd bad",
    ]
    assert "Not JSON" in errors[0]["error"]["message"]
    assert "not UTF-8" in errors[2]["error"]["message"]
    deep = run(vertex, poll, body(model, [f"gs://{BUCKET}/io/glob/**.jsonl"]))
    assert counts(deep) == ("3", "3", "0")


def test_tf_records_and_file_lists_are_sent_as_b64(vertex, poll, gcs, model, tmp_path):
    import tensorflow as tf  # writes the records: an independent check of the framing

    records = [b"first", b"\x00\xffsecond", b""]
    plain, zipped = (str(tmp_path / f"{kind}.tfrecord") for kind in ("plain", "gzip"))
    for path, compression in ((plain, None), (zipped, "GZIP")):
        with tf.io.TFRecordWriter(path, options=compression) as writer:
            for record in records:
                writer.write(record)
    b64 = [{"b64": base64.b64encode(r).decode()} for r in records]
    for path, fmt in ((plain, "tf-record"), (zipped, "tf-record-gzip")):
        with open(path, "rb") as handle:
            uri = put(gcs, f"io/records.{fmt}", handle.read())
        job = run(vertex, poll, body(model, [uri], fmt))
        _, errors = outputs(gcs, job)
        assert [e["instance"] for e in errors] == b64, fmt
        assert counts(job) == ("0", "3", "0") and "partialFailures" not in job
    # A damaged file is a partial failure; the job reads the other files.
    corrupt = put(gcs, "io/corrupt.tf-record", b"\x05" + b"\x00" * 20)
    good = f"gs://{BUCKET}/io/records.tf-record"
    job = run(vertex, poll, body(model, [corrupt, good], "tf-record"))
    assert counts(job) == ("0", "3", "0")
    (failure,) = job["partialFailures"]
    assert "corrupt.tf-record" in failure["message"] and failure["code"] == 3
    # A file list: each object's content as b64; the output names the URI.
    listed = [put(gcs, "io/files/one.bin", b"\x01\x02"), f"gs://{BUCKET}/io/files/missing"]
    job = run(vertex, poll, body(model, [put(gcs, "io/list.txt", "\n".join(listed))], "file-list"))
    _, errors = outputs(gcs, job)
    assert [(e["instance"], e["error"]["status"]) for e in errors] == [
        (listed[0], "INVALID_ARGUMENT"),
        (listed[1], "NOT_FOUND"),
    ]


# --- failures, states, cancel and delete ---------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"gs://{BUCKET}/io/nothing-here.jsonl", "does not exist"),
        (f"gs://{BUCKET}/io/nothing-*.jsonl", "No objects match"),
    ],
)
def test_missing_input_fails_the_job(vertex, poll, model, uri, message):
    job = run(vertex, poll, body(model, [uri]))
    assert job["state"] == "JOB_STATE_FAILED"
    assert message in job["error"]["message"] and uri in job["error"]["message"]
    assert job["error"]["code"] in (3, 9) and "outputInfo" not in job
    assert job["createTime"] <= job["startTime"] <= job["endTime"] == job["updateTime"]


def test_state_times_model_versions_and_resources(vertex, poll, gcs, model):
    uri = put(gcs, "io/three.jsonl", "\n".join(json.dumps(o) for o in objects()))
    for name in (f"{model}@1", f"{model}@default"):
        job = run(vertex, poll, body(model, [uri]) | {"model": name})
        assert job["modelVersionId"] == "1" and counts(job) == ("3", "0", "0")
        assert job["createTime"] <= job["startTime"] <= job["endTime"] == job["updateTime"]
        assert job["resourcesConsumed"]["replicaHours"] >= 0
        assert job["outputInfo"]["gcsOutputDirectory"].startswith(
            f"gs://{BUCKET}/io-out/prediction-iris-io-"
        )
    with pytest.raises(HttpError) as caught:
        jobs(vertex).create(parent=PARENT, body=body(f"{model}@nope", [uri])).execute()
    assert caught.value.resp.status == 404


def test_running_job_cannot_be_deleted_and_cancel_keeps_counts(vertex, poll, gcs, model):
    line = json.dumps(objects()[0]) + "\n"
    uri = put(gcs, "io/long.jsonl", line * 20_000)
    job_body = body(model, [uri], manualBatchTuningParameters={"batchSize": 1})
    job = run(vertex, poll, job_body, ("JOB_STATE_RUNNING", *FINAL))
    assert job["state"] == "JOB_STATE_RUNNING"
    with pytest.raises(HttpError) as caught:
        jobs(vertex).delete(name=job["name"]).execute()
    assert caught.value.resp.status == 400
    assert json.loads(caught.value.content)["error"]["status"] == "FAILED_PRECONDITION"
    jobs(vertex).cancel(name=job["name"], body={}).execute()
    job = poll.until(
        lambda: (j := jobs(vertex).get(name=job["name"]).execute())["state"] in FINAL and j,
        60,
        "the cancelled job to end",
    )
    assert job["state"] == "JOB_STATE_CANCELLED" and job["error"]["code"] == 1
    done, failed, left = counts(job)
    assert 0 <= int(done) < 20_000 and failed == "0" and left == "-1"
    with pytest.raises(HttpError) as caught:
        jobs(vertex).cancel(name=job["name"], body={}).execute()
    assert caught.value.resp.status == 400
    jobs(vertex).delete(name=job["name"]).execute()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outputConfig": {"predictionsFormat": "csv"}}, "Unsupported predictions_format 'csv'"),
        (
            {"outputConfig": {"predictionsFormat": "bigquery"}},
            "does not emulate BigQuery",
        ),
        (
            {"inputConfig": {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": "x"}}},
            "does not emulate BigQuery",
        ),
        ({"inputConfig": {"instancesFormat": "parquet"}}, "Unsupported instances_format"),
        ({"inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": []}}}, "uris"),
        ({"instanceConfig": {"instanceType": "row"}}, "instance_type 'row'"),
        (
            {"instanceConfig": {"includedFields": ["a"], "excludedFields": ["b"]}},
            "cannot both be populated",
        ),
        (
            {
                "inputConfig": {
                    "instancesFormat": "file-list",
                    "gcsSource": {"uris": ["gs://b/x"]},
                },
                "instanceConfig": {"keyField": "id"},
            },
            "does not apply to instances_format 'file-list'",
        ),
        ({"unmanagedContainerModel": {"artifactUri": "gs://b/m"}}, "Exactly one of model"),
        ({"generateExplanation": True}, "generate_explanation"),
    ],
)
def test_configs_vertex_refuses(vertex, model, change, message):
    job_body = body(model, ["gs://b/in.jsonl"])
    for key, value in change.items():
        base = job_body.get(key)
        job_body[key] = {**base, **value} if isinstance(base, dict) else value
    with pytest.raises(HttpError) as caught:
        jobs(vertex).create(parent=PARENT, body=job_body).execute()
    assert caught.value.resp.status == 400
    assert message in json.loads(caught.value.content)["error"]["message"]


# --- the official SDK ------------------------------------------------------------------


@pytest.mark.usefixtures("sdk")
def test_sdk_csv_job_and_iter_outputs(gcs, trained):
    from google.cloud import aiplatform

    model = aiplatform.Model.upload(
        display_name="iris-sdk-io",
        artifact_uri=trained["artifact_uri"],
        serving_container_image_uri="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    )
    header = ",".join(f'"{f}"' for f in ("id", *FEATURES))
    rows = [f'"r{i}",' + ",".join(map(str, v)) for i, (v, _) in enumerate(ROWS)]
    uri = put(gcs, "io/sdk.csv", "\n".join([header, *rows]))
    job = aiplatform.BatchPredictionJob.create(
        job_display_name="sdk-io",
        model_name=model.resource_name,
        instances_format="csv",
        gcs_source=uri,
        gcs_destination_prefix=f"gs://{BUCKET}/io-sdk",
        machine_type="n1-standard-2",
        sync=True,
    )
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert job.completion_stats.failed_count == 3  # CSV rows are arrays; the model takes objects
    names = sorted(b.name.rsplit("/", 1)[-1] for b in job.iter_outputs())
    assert names == ["prediction.errors_stats-00000-of-00001", "prediction.results-00000-of-00001"]
    again = aiplatform.BatchPredictionJob(job.resource_name)
    assert again.output_info.gcs_output_directory == job.output_info.gcs_output_directory
    listed = aiplatform.BatchPredictionJob.list(filter='display_name="sdk-io"')
    assert job.resource_name in [j.resource_name for j in listed]
