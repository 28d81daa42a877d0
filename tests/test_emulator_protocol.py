"""The wire protocol any Google client may use: operations at /ui/ and /v1/, proto3 JSON
(enums as numbers, proto field names), list filters and pages, patch with masks and
etags, training pipelines, damaged state, bad ports, and serving under the image's
TensorFlow. Raw HTTP where the point is the protocol itself."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from ci.emulator import enums, faults, listing, process, runtime
from ci.emulator.httpd import ApiError
from tests.conftest import (
    BUCKET,
    PARENT,
    ROOT,
    Poll,
    create_endpoint,
    storage_client,
    upload,
)

INSTANCE = {"PetalLength": 1.7, "PetalWidth": 0.5, "SepalLength": 5.1, "SepalWidth": 3.3}


def call(base: str, method: str, path: str, body=None, **query) -> tuple[int, dict]:
    """(status, JSON answer) of one raw request; ``path`` starts with /v1/ or /ui/."""
    url = base + urllib.parse.quote(path) + ("?" + urllib.parse.urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_operations_get_wait_list_delete_at_both_prefixes(emulator, vertex, poll, trained):
    url = emulator.vertex_url
    faults.delay_operations(url, 1)
    op = (
        vertex.projects()
        .locations()
        .models()
        .upload(
            parent=PARENT,
            body={"model": {"displayName": "ops", "artifactUri": trained["artifact_uri"]}},
        )
        .execute()
    )
    name = op["name"]
    assert op["done"] is False
    status, got = call(url, "GET", f"/ui/{name}")
    assert (status, got["name"]) == (200, name)
    status, waited = call(url, "POST", f"/ui/{name}:wait", timeout="30s")
    assert status == 200 and waited["done"] and "error" not in waited
    assert call(url, "GET", f"/v1/{name}:wait")[1]["done"]
    model = name.split("/operations/")[0]
    status, listed = call(url, "GET", f"/ui/{model}/operations")
    assert [o["name"] for o in listed["operations"]] == [name]
    assert call(url, "DELETE", f"/ui/{name}")[0] == 200
    assert call(url, "GET", f"/v1/{name}")[0] == 404
    assert call(url, "GET", f"/ui/{name}")[0] == 404


def test_cancelling_a_pending_deploy_leaves_the_endpoint_untouched(emulator, vertex, poll, trained):
    model = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "cancelled"})
    endpoint = create_endpoint(vertex, poll, "cancel-endpoint")
    faults.delay_operations(emulator.vertex_url, 30)
    body = {
        "deployedModel": {
            "model": model["model"],
            "dedicatedResources": {"minReplicaCount": 1, "machineSpec": {"machineType": "n1"}},
        }
    }
    op = vertex.projects().locations().endpoints().deployModel(endpoint=endpoint, body=body)
    op = op.execute()
    status, error = call(emulator.vertex_url, "DELETE", f"/v1/{endpoint}")
    assert (status, error["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert "being-deployed" in error["error"]["message"]
    assert call(emulator.vertex_url, "POST", f"/ui/{op['name']}:cancel") == (200, {})
    ended = poll.operation(op, timeout=20)
    assert ended["error"]["code"] == 1  # CANCELLED: the 30 s delay did not have to pass
    endpoint_now = vertex.projects().locations().endpoints().get(name=endpoint).execute()
    assert "deployedModels" not in endpoint_now and not endpoint_now.get("trafficSplit")
    assert call(emulator.vertex_url, "DELETE", f"/v1/{endpoint}")[0] == 200


def test_enums_are_accepted_as_numbers_and_answered_as_numbers_when_asked(emulator):
    url = emulator.vertex_url
    pool = {
        "replicaCount": 1,
        "machineSpec": {"machineType": "cloud-tpu", "acceleratorType": 6, "acceleratorCount": 8},
        "pythonPackageSpec": {
            "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-15.py310:latest",
            "packageUris": [f"gs://{BUCKET}/staging/missing.tar.gz"],
            "pythonModule": "x.task",
        },
    }
    body = {"display_name": "numeric-enums", "jobSpec": {"worker_pool_specs": [pool]}}
    status, job = call(url, "POST", f"/v1/{PARENT}/customJobs", body)
    assert status == 200, job
    assert job["displayName"] == "numeric-enums"  # the proto field name was accepted
    spec = job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec["acceleratorType"] == "TPU_V2"  # 6 is TPU_V2, though it is listed 15th
    status, as_ints = call(url, "GET", f"/v1/{job['name']}", **{"$alt": "json;enum-encoding=int"})
    assert as_ints["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == 6
    assert isinstance(as_ints["state"], int)
    pool["machineSpec"]["acceleratorType"] = 999
    status, error = call(url, "POST", f"/v1/{PARENT}/customJobs", body)
    assert status == 400 and "acceleratorType" in error["error"]["message"]


def test_enum_numbers_follow_the_protos():
    names = ["ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80"]
    field = "GoogleCloudAiplatformV1MachineSpec.acceleratorType"
    assert enums.to_name(field, names, 6) == "TPU_V2"
    assert enums.to_number(field, names, "NVIDIA_TESLA_T4") == 5
    assert enums.to_name("Other.field", ["A", "B"], 1) == "B"  # numbered by position
    assert enums.to_name("Other.field", ["A", "B"], 2) is None


def test_lists_page_filter_and_refuse_what_they_cannot_do(emulator, vertex, poll):
    url = emulator.vertex_url
    names = []
    for i in range(3):
        body = {"displayName": f"paged-{i}", "labels": {"suite": "paged"}}
        status, op = call(url, "POST", f"/v1/{PARENT}/endpoints", body)
        names.append(op["response"]["name"])
    query = {"filter": "labels.suite=paged", "pageSize": "2", "orderBy": "display_name desc"}
    status, first = call(url, "GET", f"/v1/{PARENT}/endpoints", **query)
    assert [e["name"] for e in first["endpoints"]] == names[:0:-1]
    status, second = call(
        url, "GET", f"/v1/{PARENT}/endpoints", **query, pageToken=first["nextPageToken"]
    )
    assert [e["name"] for e in second["endpoints"]] == names[:1]
    assert "nextPageToken" not in second
    other = {**query, "filter": "labels.suite=other", "pageToken": first["nextPageToken"]}
    assert call(url, "GET", f"/v1/{PARENT}/endpoints", **other)[0] == 400
    status, error = call(url, "GET", f"/v1/{PARENT}/endpoints", filter='colour="blue"')
    assert status == 400 and "'colour'" in error["error"]["message"]
    # customJobs.list has no orderBy parameter: Google's frontends cannot bind it.
    status, error = call(url, "GET", f"/v1/{PARENT}/customJobs", orderBy="create_time")
    assert status == 400 and '"orderBy": Cannot bind' in error["error"]["message"]
    # Query parameters by their proto (snake_case) names work as their JSON names do.
    snake = {"filter": "labels.suite=paged", "page_size": "2", "order_by": "display_name desc"}
    assert (
        call(url, "GET", f"/v1/{PARENT}/endpoints", **snake)[1]["endpoints"] == first["endpoints"]
    )
    # ':' is display_name's wildcard comparison; a state that is no state's name is a 400.
    status, found = call(url, "GET", f"/v1/{PARENT}/endpoints", filter='display_name:"paged-*"')
    assert sorted(e["name"] for e in found["endpoints"]) == sorted(names)
    status, error = call(url, "GET", f"/v1/{PARENT}/customJobs", filter="state=JOB_STATE_BOGUS")
    assert status == 400 and "JOB_STATE_BOGUS" in error["error"]["message"]
    for name in names:
        call(url, "DELETE", f"/v1/{name}")


def test_filter_grammar():
    fields = listing.JOB_FIELDS
    records = [
        {"name": "a/1", "displayName": "a", "state": "JOB_STATE_FAILED", "labels": {"k": "v"}},
        {"name": "a/2", "displayName": "b", "state": "JOB_STATE_SUCCEEDED"},
    ]

    def keep(text):
        test = listing.parse_filter(text, fields)
        return [r["displayName"] for r in records if test(r)]

    assert keep('display_name="a" OR display_name="b"') == ["a", "b"]
    assert keep("state=JOB_STATE_SUCCEEDED") == ["b"]
    assert keep("NOT state=JOB_STATE_SUCCEEDED") == ["a"]
    assert keep("labels.k:*") == ["a"]
    assert keep('labels.k="v" AND displayName="a"') == ["a"]
    assert keep('display_name:"*"') == ["a", "b"] and keep('display_name:"b*"') == ["b"]
    assert keep('display_name:"a"') == ["a"] and keep('display_name:"a.*"') == []
    assert keep('state="PIPELINE_STATE_FAILED"') == []  # a training pipeline's state
    with pytest.raises(ApiError, match="Invalid timestamp"):
        keep('create_time>"yesterday"')


def test_patch_applies_the_mask_and_checks_the_etag(emulator, vertex, poll):
    url = emulator.vertex_url
    endpoint = create_endpoint(vertex, poll, "patched")
    before = call(url, "GET", f"/v1/{endpoint}")[1]
    status, error = call(url, "PATCH", f"/v1/{endpoint}", {"displayName": "x"})
    assert status == 400 and "update_mask" in error["error"]["message"]
    status, error = call(url, "PATCH", f"/v1/{endpoint}", {}, updateMask="deployed_models")
    assert status == 400 and "cannot be updated" in error["error"]["message"]
    body = {"displayName": "renamed", "description": "ignored: not in the mask"}
    status, after = call(url, "PATCH", f"/v1/{endpoint}", body, updateMask="display_name")
    assert (status, after["displayName"]) == (200, "renamed")
    assert "description" not in after and after["etag"] != before["etag"]
    stale = {"displayName": "again", "etag": before["etag"]}
    status, error = call(url, "PATCH", f"/v1/{endpoint}", stale, updateMask="displayName")
    assert (status, error["error"]["status"]) == (409, "ABORTED")
    assert call(url, "GET", f"/v1/{endpoint}")[1]["displayName"] == "renamed"
    status, after = call(
        url, "PATCH", f"/v1/{endpoint}", {"displayName": "snake"}, update_mask="display_name"
    )
    assert (status, after["displayName"]) == (200, "snake")
    for labels, bad in [
        ({"Team": "a"}, "label key 'Team'"),
        ({"team": "A b"}, "value 'A b' of label"),
        ({"1x": ""}, "label key '1x'"),
    ]:
        status, error = call(
            url, "PATCH", f"/v1/{endpoint}", {"labels": labels}, updateMask="labels"
        )
        assert status == 400 and f"invalid {bad}" in error["error"]["message"], labels
    status, after = call(
        url, "PATCH", f"/v1/{endpoint}", {"labels": {"équipe": "ü-1"}}, updateMask="labels"
    )
    assert (status, after["labels"]) == (200, {"équipe": "ü-1"})
    status, error = call(url, "PATCH", f"/v1/{endpoint}", {}, updateMask="display_name")
    assert status == 400
    assert "Field: endpoint.display_name; Message: Required" in error["error"]["message"]


def test_model_patch_by_bare_name_takes_any_versions_etag(emulator, vertex, poll, trained):
    url = emulator.vertex_url
    first = upload(vertex, poll, trained["artifact_uri"], model={"displayName": "etags"})
    upload(vertex, poll, trained["artifact_uri"], parentModel=first["model"])
    second = call(url, "GET", f"/v1/{first['model']}@2")[1]
    body = {"labels": {"stage": "b"}, "etag": second["etag"]}
    status, patched = call(url, "PATCH", f"/v1/{first['model']}", body, updateMask="labels")
    assert (status, patched["versionId"], patched["labels"]) == (200, "1", {"stage": "b"})
    assert call(url, "GET", f"/v1/{first['model']}@2")[1]["labels"] == {"stage": "b"}
    status, error = call(url, "PATCH", f"/v1/{first['model']}@2", body, updateMask="labels")
    assert (status, error["error"]["status"]) == (409, "ABORTED")  # version 2 changed since


def test_training_pipelines_refuse_containers_and_cancel_and_delete(emulator, staged, poll):
    url = emulator.vertex_url
    inputs = {
        "workerPoolSpecs": [
            {
                "replicaCount": "1",
                "machineSpec": {"machineType": "n1-standard-4"},
                "containerSpec": {"imageUri": "us-docker.pkg.dev/p/r/trainer:1"},
            }
        ]
    }
    body = {
        "displayName": "container-pipeline",
        "trainingTaskDefinition": "gs://google-cloud-aiplatform/schema/trainingjob/"
        "definition/custom_task_1.0.0.yaml",
        "trainingTaskInputs": inputs,
    }
    status, error = call(url, "POST", f"/v1/{PARENT}/trainingPipelines", body)
    assert status == 400 and "not run locally" in error["error"]["message"]

    inputs["workerPoolSpecs"][0].pop("containerSpec")
    inputs["workerPoolSpecs"][0]["pythonPackageSpec"] = {
        "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-15.py310:latest",
        "packageUris": [staged["package"]],
        "pythonModule": "trainer.task",
    }
    faults.delay_job_state(url, "JOB_STATE_RUNNING", 60)
    status, pipeline = call(url, "POST", f"/v1/{PARENT}/trainingPipelines", body)
    assert pipeline["state"] == "PIPELINE_STATE_RUNNING"
    job = pipeline["trainingTaskMetadata"]["backingCustomJob"]
    status, error = call(url, "DELETE", f"/v1/{pipeline['name']}")
    assert status == 400 and "cancel it first" in error["error"]["message"]
    assert call(url, "POST", f"/v1/{pipeline['name']}:cancel", {})[0] == 200
    ended = poll.until(
        lambda: (
            call(url, "GET", f"/v1/{pipeline['name']}")[1]["state"] == "PIPELINE_STATE_CANCELLED"
        ),
        30,
        "the pipeline to be cancelled",
    )
    assert ended
    assert poll.job(job)["state"] == "JOB_STATE_CANCELLED"
    assert call(url, "DELETE", f"/v1/{pipeline['name']}")[0] == 200
    assert call(url, "GET", f"/v1/{pipeline['name']}")[0] == 404


def test_a_port_out_of_range_is_a_one_line_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ci", "emulator", "--port", "70000", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Error: emulator: argument --port: '70000' is not a TCP port (0-65535)"
    ]


def test_a_damaged_record_is_set_aside_and_the_others_survive(tmp_path):
    state = tmp_path / "state"
    with process.start(state) as first:
        client = process_client(first)
        op = (
            client.projects()
            .locations()
            .endpoints()
            .create(parent=PARENT, body={"displayName": "survivor"})
        )
        survivor = Poll(client).operation(op.execute())["response"]["name"]
    records = state / "vertex" / "records" / "endpoints"
    damaged = records / "99999.json"
    damaged.write_text('{"name": "projects/emulator-tests/locations/us-central1/endpo')
    with process.start(state) as again:
        client = process_client(again)
        got = client.projects().locations().endpoints().get(name=survivor).execute()
        assert got["displayName"] == "survivor"
    log = (state / "emulator.log").read_text()
    warnings = [line for line in log.splitlines() if "99999.json" in line]
    assert len(warnings) == 1 and "not a valid record" in warnings[0]
    assert (records / "99999.json.damaged").exists() and not damaged.exists()


def process_client(emu):
    from ci import clients

    return clients.vertex("us-central1", emu.vertex_url, anonymous=True)


def test_image_runtime_serves_with_the_images_tensorflow_and_refuses_newer_exports(
    tmp_path, gcs, trained
):
    """TF 2.15 (the tf2-cpu.2-15 image) serves the trainer's export, and refuses an export
    using an op only newer TensorFlow has, as the real deploy would."""
    newer = tmp_path / "newer"
    _newer_only_export(newer)
    prefix = trained["artifact_uri"].removeprefix(f"gs://{BUCKET}/") + "/"
    export = [(b.name, b.download_as_bytes()) for b in gcs.list_blobs(BUCKET, prefix=prefix)]
    image = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    with process.start(tmp_path / "state", serving_runtime="image") as emu:
        bucket = storage_client(emu).create_bucket(BUCKET)
        for name, data in export:
            bucket.blob(name).upload_from_string(data)
        for path in newer.rglob("*"):
            if path.is_file():
                bucket.blob(f"newer/{path.relative_to(newer)}").upload_from_filename(str(path))
        vertex = process_client(emu)
        poll = Poll(vertex)
        spec = {"containerSpec": {"imageUri": image}}
        good = upload(vertex, poll, trained["artifact_uri"], model=spec)["model"]
        bad = upload(vertex, poll, f"gs://{BUCKET}/newer", model=spec)["model"]
        endpoint = create_endpoint(vertex, poll, "parity")
        # The first deploy may build the environment (a download): generous deadlines.
        failed = _deploy(vertex, poll, endpoint, bad)
        assert "DecodeWebP" in failed["error"]["message"], failed
        assert "cannot be served by its image" in failed["error"]["message"]
        served = _deploy(vertex, poll, endpoint, good)
        assert "error" not in served, served
        answer = (
            vertex.projects()
            .locations()
            .endpoints()
            .predict(endpoint=endpoint, body={"instances": [INSTANCE]})
        )
        assert answer.execute()["predictions"][0]["class_ids"] in (0, [0])
    assert runtime.image_tf(image) == "2.15"
    assert (runtime.cache_root() / "tf-2.15" / ".complete").read_text().strip() == (
        "tensorflow-cpu~=2.15.0"
    )


def _deploy(vertex, poll, endpoint: str, model: str) -> dict:
    body = {
        "deployedModel": {
            "model": model,
            "dedicatedResources": {"minReplicaCount": 1, "machineSpec": {"machineType": "n1"}},
        }
    }
    op = vertex.projects().locations().endpoints().deployModel(endpoint=endpoint, body=body)
    return poll.operation(op.execute(), timeout=900)


def _newer_only_export(path) -> None:
    """A SavedModel whose signature uses DecodeWebP (a TensorFlow 2.16+ op)."""
    code = f"""
import tensorflow as tf
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="webp")])
    def serve(self, webp):
        first = tf.io.decode_webp(webp[0])
        return {{"height": tf.shape(first)[:1]}}
m = M()
tf.saved_model.save(m, {str(path)!r}, signatures={{"serving_default": m.serve}})
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
