"""Google's documented usage, run as its readers would write it, against the emulator.

Each test follows a published sample or the REST reference: the Vertex AI SDK samples
("Use the Vertex AI SDK", python-docs-samples ``aiplatform/snippets``: model registry and
versions, deploy, predict, custom jobs from a local script, custom training) through the
official SDK, and the REST reference's curl requests
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/...) over plain HTTP. The
assertions are what those pages say the answers hold.
"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform

from ci.emulator import faults
from tests.conftest import BUCKET, DEDICATED
from tests.test_emulator_docs import call, finished
from tests.test_sdk import (  # noqa: F401 (sdk: the SDK's fixture, aiplatform.init)
    SERVING_IMAGE,
    TEST_INSTANCES,
    TRAINING_IMAGE,
    _classes,
    _upload,
    sdk,
)

PARENT = "projects/docs-samples/locations/us-central1"
INSTANCE = TEST_INSTANCES[0]


def _rest_upload(url: str, artifact_uri: str, display_name: str) -> str:
    """``POST …/models:upload`` as the reference's curl sample sends it; the model name."""
    body = {
        "model": {
            "displayName": display_name,
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": SERVING_IMAGE},
        }
    }
    status, op = call(url, "POST", f"/v1/{PARENT}/models:upload", body)
    assert status == 200, op
    return finished(url, op)["response"]["model"]


def _rest_endpoint(url: str, display_name: str) -> str:
    status, op = call(url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": display_name})
    assert status == 200, op
    return finished(url, op)["response"]["name"]


# --- REST reference, as curl would call it ----------------------------------------------


def test_curl_upload_answers_an_operation_then_a_model_with_its_output_only_fields(
    emulator, trained
):
    # projects.locations.models/upload: an Operation whose metadata is an
    # UploadModelOperationMetadata (genericMetadata) and whose response, once done, is an
    # UploadModelResponse (model, modelVersionId); the Model then carries its output-only
    # fields, modelSourceInfo among them ("CUSTOM: The Model is uploaded by user or custom
    # training pipeline"). Failed before: no modelSourceInfo.
    url = emulator.vertex_url
    body = {"model": {"displayName": "docs-upload", "artifactUri": trained["artifact_uri"]}}
    status, op = call(url, "POST", f"/v1/{PARENT}/models:upload", body)
    assert status == 200
    assert op["name"].startswith(f"{PARENT}/models/") and "/operations/" in op["name"]
    metadata = op["metadata"]
    assert metadata["@type"].endswith("aiplatform.v1.UploadModelOperationMetadata")
    assert set(metadata["genericMetadata"]) >= {"createTime", "updateTime"}
    done = finished(url, op)
    assert done["response"]["@type"].endswith("aiplatform.v1.UploadModelResponse")
    name, version = done["response"]["model"], done["response"]["modelVersionId"]
    assert (op["name"].split("/operations/")[0], version) == (name, "1")

    status, model = call(url, "GET", f"/v1/{name}")
    assert status == 200
    assert (model["versionId"], model["versionAliases"]) == ("1", ["default"])
    assert {"createTime", "updateTime", "versionCreateTime", "etag"} <= set(model)
    assert model["modelSourceInfo"] == {"sourceType": "CUSTOM"}
    # The same model by its version id and by its alias (models/ID@VERSION).
    for selector in ("1", "default"):
        assert call(url, "GET", f"/v1/{name}@{selector}")[1]["etag"] == model["etag"]
    assert call(url, "DELETE", f"/v1/{name}")[0] == 200


def test_curl_deploy_model_keeps_the_deployed_model_id_it_was_given(emulator, trained):
    # DeployedModel.id: "Immutable. The ID of the DeployedModel. If not provided upon
    # deployment, Vertex AI will generate a value for this ID. This value should be 1-10
    # characters, and valid characters are /[0-9]/." The deployModel curl sample with
    # trafficSplit {"0": 100}: "0" stands for the model being deployed. Failed before:
    # the emulator replaced the id with one of its own.
    url = emulator.vertex_url
    model = _rest_upload(url, trained["artifact_uri"], "docs-deployed-id")
    endpoint = _rest_endpoint(url, "docs-deployed-id")
    wanted = {"model": model, "displayName": "chosen", "dedicatedResources": DEDICATED}

    body = {"deployedModel": {**wanted, "id": "4242"}, "trafficSplit": {"0": 100}}
    status, op = call(url, "POST", f"/v1/{endpoint}:deployModel", body)
    assert status == 200, op
    deployed = finished(url, op)["response"]["deployedModel"]
    assert (deployed["id"], deployed["displayName"]) == ("4242", "chosen")
    got = call(url, "GET", f"/v1/{endpoint}")[1]
    assert [d["id"] for d in got["deployedModels"]] == ["4242"]
    assert got["trafficSplit"] == {"4242": 100}
    status, answer = call(url, "POST", f"/v1/{endpoint}:predict", {"instances": [INSTANCE]})
    assert (status, answer["deployedModelId"], answer["modelVersionId"]) == (200, "4242", "1")
    refs = call(url, "GET", f"/v1/{model}")[1]["deployedModels"]
    assert refs == [{"endpoint": endpoint, "deployedModelId": "4242"}]

    # The same id again on this endpoint, or one that is not 1-10 digits, is refused.
    status, error = call(
        url, "POST", f"/v1/{endpoint}:deployModel", {"deployedModel": body["deployedModel"]}
    )
    assert (status, error["error"]["status"]) == (409, "ALREADY_EXISTS")
    for bad in ("abc", "12345678901"):
        body = {"deployedModel": {**wanted, "id": bad}}
        status, error = call(url, "POST", f"/v1/{endpoint}:deployModel", body)
        assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT")
        assert "deployed_model.id" in error["error"]["message"]

    # Without an id, one is generated (digits, not the taken one).
    status, op = call(url, "POST", f"/v1/{endpoint}:deployModel", {"deployedModel": wanted})
    generated = finished(url, op)["response"]["deployedModel"]["id"]
    assert generated.isdigit() and generated != "4242"
    for gone, split in ((generated, None), ("4242", {})):
        body = {"deployedModelId": gone, **({"trafficSplit": split} if split is not None else {})}
        status, op = call(url, "POST", f"/v1/{endpoint}:undeployModel", body)
        assert status == 200 and "error" not in finished(url, op), op
    assert call(url, "DELETE", f"/v1/{endpoint}")[0] == 200
    assert call(url, "DELETE", f"/v1/{model}")[0] == 200


def test_curl_endpoint_create_with_a_split_naming_no_deployed_model_is_a_400(emulator):
    # Endpoint.trafficSplit: "The traffic percentage values must add up to 100, or map must
    # be empty if the Endpoint is to not accept any traffic at a moment"; a new endpoint
    # has no DeployedModel for a split to name. Failed before: the endpoint was created
    # with the split, and every predict on it was a 500.
    url = emulator.vertex_url
    for split in ({"1": 100}, {"0": 100}):
        body = {"displayName": "docs-split-at-create", "trafficSplit": split}
        status, error = call(url, "POST", f"/v1/{PARENT}/endpoints", body)
        assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT")
        assert "trafficSplit names" in error["error"]["message"]
    listed = call(
        url, "GET", f"/v1/{PARENT}/endpoints", filter='display_name="docs-split-at-create"'
    )
    assert listed == (200, {})
    # An empty split is what a new endpoint has anyway.
    body = {"displayName": "docs-split-at-create", "trafficSplit": {}}
    status, op = call(url, "POST", f"/v1/{PARENT}/endpoints", body)
    endpoint = finished(url, op)["response"]
    assert status == 200 and "trafficSplit" not in endpoint
    assert call(url, "DELETE", f"/v1/{endpoint['name']}")[0] == 200


def test_curl_private_service_connect_endpoint_is_refused_as_not_emulated(emulator):
    # A PSC endpoint is served at its own address, not the public :predict the emulator
    # answers. Failed before: created as if it were public.
    body = {
        "displayName": "docs-psc",
        "privateServiceConnectConfig": {
            "enablePrivateServiceConnect": True,
            "projectAllowlist": ["docs-samples"],
        },
    }
    status, error = call(emulator.vertex_url, "POST", f"/v1/{PARENT}/endpoints", body)
    assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "private_service_connect_config" in error["error"]["message"]
    assert "not emulated" in error["error"]["message"]


# --- the Vertex AI SDK samples --------------------------------------------------------


@pytest.mark.usefixtures("sdk")
def test_sdk_model_registry_sample_versions_aliases_and_version_names(trained):
    # "Use the Vertex AI SDK" / model registry samples: upload a version under a parent
    # model that does not become the default, read it back as ID@2 and by alias, list the
    # versions and their info. Held before (except modelSourceInfo, as in the curl test).
    first = _upload(trained, "docs-registry", description="the first")
    second = _upload(
        trained,
        "docs-registry",
        parent_model=first.resource_name,
        is_default_version=False,
        version_aliases=["experimental"],
        version_description="a candidate",
    )
    assert (second.version_id, second.version_aliases) == ("2", ["experimental"])
    assert second.versioned_resource_name == f"{first.resource_name}@2"
    assert aiplatform.Model(model_name=f"{first.name}@2").version_id == "2"
    assert aiplatform.Model(model_name=first.name, version="experimental").version_id == "2"
    assert aiplatform.Model(model_name=first.name).version_id == "1"  # still the default
    source = aiplatform.Model(first.resource_name).gca_resource.model_source_info
    assert source.source_type.name == "CUSTOM"

    registry = first.versioning_registry
    info = registry.get_version_info("2")
    assert (info.version_aliases, info.version_description) == (["experimental"], "a candidate")
    assert info.model_resource_name == first.resource_name
    registry.add_version_aliases(["golden"], version="2")
    assert [(v.version_id, v.version_aliases) for v in registry.list_versions()] == [
        ("1", ["default"]),
        ("2", ["experimental", "golden"]),
    ]
    assert [
        m.resource_name for m in aiplatform.Model.list(filter='display_name="docs-registry"')
    ] == [first.resource_name]
    registry.delete_version("2")
    first.delete()


@pytest.mark.usefixtures("sdk")
def test_sdk_deploy_with_traffic_percentage_predict_undeploy_and_force_delete(emulator, trained):
    # The deploy sample: model.deploy(endpoint=..., deployed_model_display_name=...,
    # traffic_percentage=...), predict's deployed_model_id and model_version_id, undeploy,
    # and delete(force=True). A DeployedModel's display name "If not provided upon
    # creation, the Model's display_name is used". explain is not emulated: a 501 naming
    # the method. Held before.
    model = _upload(trained, "docs-served")
    endpoint = aiplatform.Endpoint.create(display_name="docs-served")
    model.deploy(
        endpoint=endpoint,
        deployed_model_display_name="docs-served-v1",
        machine_type="n1-standard-2",
        traffic_percentage=100,
    )
    (first,) = endpoint.list_models()
    assert first.display_name == "docs-served-v1"
    version_two = _upload(trained, "docs-served", parent_model=model.resource_name)
    aiplatform.Model(version_two.resource_name, version="2").deploy(
        endpoint=endpoint, machine_type="n1-standard-2", traffic_percentage=50
    )
    second = next(d for d in endpoint.list_models() if d.id != first.id)
    assert (second.display_name, second.model_version_id) == ("docs-served", "2")
    assert endpoint.traffic_split == {first.id: 50, second.id: 50}

    answer = endpoint.predict(instances=TEST_INSTANCES)
    assert _classes(answer.predictions) == [0, 1, 2]
    by_id = {first.id: "1", second.id: "2"}
    assert answer.model_version_id == by_id[answer.deployed_model_id]
    assert answer.model_resource_name == model.resource_name

    with pytest.raises(gexc.MethodNotImplemented, match=r"endpoints\.explain is not emulated"):
        endpoint.explain(instances=[INSTANCE])

    endpoint.undeploy(deployed_model_id=first.id)
    assert aiplatform.Endpoint(endpoint.resource_name).traffic_split == {second.id: 100}
    endpoint.delete(force=True)
    assert not aiplatform.Endpoint.list(filter='display_name="docs-served"')
    model.delete()


@pytest.mark.usefixtures("sdk")
def test_sdk_private_and_dedicated_endpoints_are_refused_as_not_emulated():
    # aiplatform.PrivateEndpoint.create(network=...) and Endpoint.create(
    # dedicated_endpoint_enabled=True) make endpoints Vertex serves at their own
    # addresses (a dedicated one refuses the shared predict). Failed before: both were
    # created, and predicted through the public path as no client of Vertex could.
    with pytest.raises(gexc.BadRequest, match=r"endpoint\.network .*not emulated"):
        aiplatform.PrivateEndpoint.create(
            display_name="docs-private", network="projects/123/global/networks/vpc"
        )
    with pytest.raises(gexc.BadRequest, match=r"dedicated_endpoint_enabled .*not emulated"):
        aiplatform.Endpoint.create(display_name="docs-dedicated", dedicated_endpoint_enabled=True)
    for name in ("docs-private", "docs-dedicated"):
        assert not aiplatform.Endpoint.list(filter=f'display_name="{name}"')


@pytest.mark.usefixtures("sdk")
def test_sdk_custom_job_from_local_script(emulator, tmp_path):
    # CustomJob.from_local_script(display_name, script_path, container_uri, args,
    # replica_count, machine_type, base_output_dir): the SDK packages the script, the job
    # runs it with the args and AIP_MODEL_DIR under base_output_dir. Held before.
    script = tmp_path / "task.py"
    script.write_text("import os, sys\nprint('ARGS', sys.argv[1:], os.environ['AIP_MODEL_DIR'])\n")
    job = aiplatform.CustomJob.from_local_script(
        display_name="docs-local-script",
        script_path=str(script),
        container_uri=TRAINING_IMAGE,
        args=["--epochs=2"],
        replica_count=1,
        machine_type="n1-standard-4",
        base_output_dir=f"gs://{BUCKET}/docs-local-script",
    )
    job.run(sync=True)
    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    assert job.end_time >= job.start_time >= job.create_time
    logs = faults.job_logs(emulator.vertex_url, job.resource_name)
    assert f"ARGS ['--epochs=2'] gs://{BUCKET}/docs-local-script/model/" in logs


@pytest.mark.usefixtures("sdk")
def test_sdk_custom_training_job_model_names_its_training_pipeline(tmp_path):
    # CustomTrainingJob.run(...) with model_serving_container_image_uri returns the Model
    # the pipeline uploaded; Model.training_pipeline is "the resource name of the
    # TrainingPipeline that uploaded this Model", read by the SDK's model.training_job.
    # Failed before: training_job was None.
    script = tmp_path / "task.py"
    script.write_text("print('trained')\n")
    job = aiplatform.CustomTrainingJob(
        display_name="docs-training",
        script_path=str(script),
        container_uri=TRAINING_IMAGE,
        model_serving_container_image_uri=SERVING_IMAGE,
    )
    model = job.run(
        replica_count=1,
        model_display_name="docs-training-model",
        base_output_dir=f"gs://{BUCKET}/docs-training",
    )
    assert job.state == aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    assert model.uri == f"gs://{BUCKET}/docs-training/model"
    assert model.gca_resource.training_pipeline == job.resource_name
    # The SDK finds the pipeline's class from its training_task_definition (and returns it
    # unsynced: its own quirk), so this is None only when the field is missing.
    assert isinstance(model.training_job, aiplatform.CustomTrainingJob)
    assert model.gca_resource.model_source_info.source_type.name == "CUSTOM"
    model.delete()
