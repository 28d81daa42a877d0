"""The official Vertex AI SDK (google-cloud-aiplatform, REST transport) against the emulator.

Code written for Vertex AI runs unchanged: the only difference is ``aiplatform.init``'s
``api_endpoint`` (the emulator) plus ``STORAGE_EMULATOR_HOST`` for the SDK's own storage
use. Everything here goes through the SDK's public classes or its GAPIC clients, so the
emulator is exercised on the SDK's wire format: ``/ui/`` operation polling, enums as
numbers (``$alt=json;enum-encoding=int``), update masks, list filters, pipelines.
"""

from __future__ import annotations

import json

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform_v1.types import machine_resources
from google.protobuf import field_mask_pb2

from ci.emulator import enums, faults
from tests.conftest import BUCKET, ROOT

PROJECT = "sdk-tests"
LOCATION = "us-central1"
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
TRAINING_IMAGE = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-15.py310:latest"
TEST_INSTANCES = [json.loads(line) for line in (ROOT / "data/test.json").read_text().splitlines()]
T4 = machine_resources.MachineSpec(accelerator_type="NVIDIA_TESLA_T4").accelerator_type


@pytest.fixture(scope="module")
def sdk(emulator, gcs):
    """``aiplatform.init`` for the emulator, exactly as docs/emulator.md shows it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", emulator.storage_host)
        aiplatform.init(
            project=PROJECT,
            location=LOCATION,
            staging_bucket=f"gs://{BUCKET}/sdk-staging",
            api_endpoint=emulator.vertex_url,
            api_transport="rest",
            credentials=AnonymousCredentials(),
        )
        yield emulator
        aiplatform.init(project=None, location=None)


def _trainer_args(staged: dict, steps: int = 30, train=None) -> list[str]:
    return [
        f"--train-steps={steps}",
        f"--train-file={train or staged['train']}",
        f"--eval-file={staged['eval']}",
    ]


def _worker_pool(staged: dict, args: list[str], gpu: bool = False) -> list[dict]:
    machine = {"machine_type": "n1-standard-4"}
    if gpu:
        machine.update(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1)
    return [
        {
            "machine_spec": machine,
            "replica_count": 1,
            "python_package_spec": {
                "executor_image_uri": TRAINING_IMAGE,
                "package_uris": [staged["package"]],
                "python_module": "trainer.task",
                "args": args,
            },
        }
    ]


def _upload(trained: dict, display_name: str, **extra) -> aiplatform.Model:
    return aiplatform.Model.upload(
        display_name=display_name,
        artifact_uri=trained["artifact_uri"],
        serving_container_image_uri=SERVING_IMAGE,
        **extra,
    )


def _classes(predictions: list) -> list[int]:
    # The SDK turns each prediction (a protobuf Value) into Python; numbers are floats.
    return [
        int(p["class_ids"][0] if isinstance(p["class_ids"], list) else p["class_ids"])
        for p in predictions
    ]


def test_custom_job_run_on_a_gpu_machine_and_a_failing_trainer(sdk, staged):
    job = aiplatform.CustomJob(
        display_name="sdk-job-ok",
        worker_pool_specs=_worker_pool(staged, _trainer_args(staged), gpu=True),
        base_output_dir=f"gs://{BUCKET}/sdk-runs/ok",
    )
    job.run(sync=True)
    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    spec = job.gca_resource.job_spec.worker_pool_specs[0].machine_spec
    assert (spec.accelerator_type, spec.accelerator_count) == (T4, 1)

    missing = f"gs://{BUCKET}/data/no-such-file.csv"
    failing = aiplatform.CustomJob(
        display_name="sdk-job-failing",
        worker_pool_specs=_worker_pool(staged, _trainer_args(staged, train=missing)),
        base_output_dir=f"gs://{BUCKET}/sdk-runs/failing",
    )
    with pytest.raises(RuntimeError, match=r"no-such-file\.csv"):
        failing.run(sync=True)
    assert failing.state == aiplatform.gapic.JobState.JOB_STATE_FAILED

    failed = aiplatform.CustomJob.list(filter='state="JOB_STATE_FAILED"')
    assert failing.resource_name in {j.resource_name for j in failed}
    assert job.resource_name not in {j.resource_name for j in failed}


def test_upload_versions_aliases_and_the_registry(sdk, trained):
    first = _upload(trained, "sdk-registry")
    assert (first.version_id, first.version_aliases) == ("1", ["default"])
    second = _upload(
        trained,
        "sdk-registry",
        parent_model=first.resource_name,
        version_aliases=["candidate"],
        is_default_version=False,
    )
    assert (second.resource_name, second.version_id) == (first.resource_name, "2")
    assert aiplatform.Model(first.resource_name).version_id == "1"  # default unchanged

    registry = aiplatform.models.ModelRegistry(first.resource_name)
    registry.add_version_aliases(["champion"], version="2")
    registry.remove_version_aliases(["candidate"], version="2")
    aliases = {v.version_id: set(v.version_aliases) for v in registry.list_versions()}
    assert aliases == {"1": {"default"}, "2": {"champion"}}
    assert aiplatform.Model(first.resource_name, version="champion").version_id == "2"

    third = _upload(trained, "sdk-registry", parent_model=first.resource_name)
    assert aiplatform.Model(first.resource_name).version_id == third.version_id == "3"
    registry.delete_version("1")
    assert [v.version_id for v in registry.list_versions()] == ["2", "3"]
    assert third.list_model_evaluations() == []  # none was imported, so none is listed


def test_the_only_version_is_not_deleted_and_ids_are_per_project(sdk, trained):
    model = _upload(trained, "sdk-only-version", model_id="sdk-only-version")
    registry = aiplatform.models.ModelRegistry(model.resource_name)
    # "Deleting the only version in the Model is not allowed. Use DeleteModel ... instead."
    with pytest.raises(gexc.BadRequest, match="only version"):
        registry.delete_version("1")
    assert [v.version_id for v in registry.list_versions()] == ["1"]
    # A modelId is unique within its project and location only.
    elsewhere = _upload(trained, "sdk-elsewhere", model_id="sdk-only-version", project="sdk-other")
    assert elsewhere.resource_name.startswith("projects/sdk-other/")
    assert aiplatform.Model(model.resource_name).display_name == "sdk-only-version"
    elsewhere.delete()
    model.delete()


def test_model_update_sets_labels_with_a_new_etag_and_a_stale_etag_is_refused(sdk, trained):
    model = _upload(trained, "sdk-update", labels={"team": "a"})
    stale = model.gca_resource.etag
    model.update(labels={"team": "b"})
    assert model.labels == {"team": "b"}
    assert model.gca_resource.etag != stale

    proto = type(model.gca_resource)(name=model.resource_name, labels={"team": "c"}, etag=stale)
    mask = field_mask_pb2.FieldMask(paths=["labels"])
    with pytest.raises(gexc.Conflict, match="etag"):  # 409 ABORTED
        model.api_client.update_model(model=proto, update_mask=mask)
    assert aiplatform.Model(model.resource_name).labels == {"team": "b"}


def test_deploy_split_update_predict_undeploy_and_delete(sdk, trained):
    model = _upload(trained, "sdk-served")
    endpoint = aiplatform.Endpoint.create(display_name="sdk-endpoint", labels={"suite": "sdk"})
    model.deploy(endpoint=endpoint, machine_type="n1-standard-2")
    (first,) = endpoint.list_models()
    assert endpoint.traffic_split == {first.id: 100}

    second_version = _upload(trained, "sdk-served", parent_model=model.resource_name)
    endpoint.deploy(
        aiplatform.Model(second_version.resource_name, version="2"),
        machine_type="n1-standard-4",
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=1,
        traffic_split={"0": 30, first.id: 70},
    )
    second = next(d for d in endpoint.list_models() if d.id != first.id)
    assert second.model_version_id == "2"
    assert second.dedicated_resources.machine_spec.accelerator_type == T4
    assert endpoint.traffic_split == {first.id: 70, second.id: 30}

    endpoint.update(traffic_split={first.id: 0, second.id: 100})
    assert aiplatform.Endpoint(endpoint.resource_name).traffic_split == {second.id: 100}
    answer = endpoint.predict(instances=TEST_INSTANCES)
    assert _classes(answer.predictions) == [0, 1, 2]
    assert (answer.deployed_model_id, answer.model_version_id) == (second.id, "2")

    endpoint.undeploy_all()
    assert endpoint.list_models() == []
    endpoint.delete()
    assert not aiplatform.Endpoint.list(filter='display_name="sdk-endpoint"')
    model.delete()
    assert not aiplatform.Model.list(filter='display_name="sdk-served"')


def test_lists_filter_order_and_page(sdk):
    made = [
        aiplatform.Endpoint.create(display_name=f"sdk-list-{i}", labels={"suite": "list"})
        for i in range(3)
    ]
    aiplatform.Endpoint.create(display_name="sdk-list-other", labels={"suite": "other"})
    names = [e.resource_name for e in made]

    newest_first = aiplatform.Endpoint.list(
        filter='labels.suite="list"', order_by="create_time desc"
    )
    assert [e.resource_name for e in newest_first] == names[::-1]
    by_name = aiplatform.Endpoint.list(filter='display_name="sdk-list-1"')
    assert [e.resource_name for e in by_name] == [names[1]]
    since = made[1].create_time.isoformat()
    later = aiplatform.Endpoint.list(filter=f'labels.suite="list" AND create_time>="{since}"')
    assert [e.resource_name for e in later] == names[1:]

    pager = made[0].api_client.list_endpoints(
        request={
            "parent": f"projects/{PROJECT}/locations/{LOCATION}",
            "filter": "labels.suite=list",
            "page_size": 2,
        }
    )
    pages = [[e.name for e in page.endpoints] for page in pager.pages]
    assert pages == [names[:2], names[2:]]

    with pytest.raises(gexc.BadRequest, match="colour"):
        aiplatform.Endpoint.list(filter='colour="blue"')
    for endpoint in aiplatform.Endpoint.list(filter="labels.suite=list OR labels.suite=other"):
        endpoint.delete()


def test_an_operation_delayed_by_fault_injection_is_waited_for(sdk, trained):
    faults.delay_operations(sdk.vertex_url, 1.5)
    model = _upload(trained, "sdk-delayed")
    assert model.version_id == "1"
    assert faults.pending(sdk.vertex_url) == []
    assert aiplatform.Model(model.resource_name).display_name == "sdk-delayed"


def test_deleting_an_endpoint_while_a_deploy_runs_is_refused_and_the_deploy_completes(sdk, trained):
    model = _upload(trained, "sdk-racing")
    endpoint = aiplatform.Endpoint.create(display_name="sdk-racing")
    faults.delay_operations(sdk.vertex_url, 600)  # held until the delete has been refused
    deployed = {
        "model": model.resource_name,
        "dedicated_resources": {
            "min_replica_count": 1,
            "machine_spec": {"machine_type": "n1-standard-2"},
        },
    }
    operation = endpoint.api_client.deploy_model(
        endpoint=endpoint.resource_name, deployed_model=deployed, traffic_split={"0": 100}
    )
    # FAILED_PRECONDITION travels as HTTP 400, which the REST transport raises as BadRequest.
    with pytest.raises(gexc.BadRequest, match="being-deployed"):
        endpoint.delete()
    assert faults.release_operations(sdk.vertex_url) >= 1
    result = operation.result(timeout=60)
    assert [d.id for d in aiplatform.Endpoint(endpoint.resource_name).list_models()] == [
        result.deployed_model.id
    ]
    endpoint.delete(force=True)  # undeploys, then deletes: now nothing is pending
    assert not aiplatform.Endpoint.list(filter='display_name="sdk-racing"')


def test_custom_python_package_training_job_runs_and_uploads_its_model(sdk, staged):
    job = aiplatform.CustomPythonPackageTrainingJob(
        display_name="sdk-pipeline",
        python_package_gcs_uri=staged["package"],
        python_module_name="trainer.task",
        container_uri=TRAINING_IMAGE,
        model_serving_container_image_uri=SERVING_IMAGE,
    )
    base = f"gs://{BUCKET}/sdk-pipeline"
    model = job.run(
        args=_trainer_args(staged, steps=200),
        replica_count=1,
        machine_type="n1-standard-4",
        base_output_dir=base,
        model_display_name="sdk-pipeline-model",
    )
    assert job.state == aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    assert model.display_name == "sdk-pipeline-model"
    assert model.uri == f"{base}/model"
    assert [
        p.display_name
        for p in aiplatform.CustomPythonPackageTrainingJob.list(
            filter='display_name="sdk-pipeline"'
        )
    ] == ["sdk-pipeline"]
    endpoint = model.deploy(machine_type="n1-standard-2")
    assert _classes(endpoint.predict(instances=TEST_INSTANCES).predictions) == [0, 1, 2]
    endpoint.delete(force=True)


def test_custom_training_job_packages_and_runs_a_local_script(sdk, gcs, tmp_path):
    script = tmp_path / "task.py"
    script.write_text(
        "import os\n"
        "from google.auth.credentials import AnonymousCredentials\n"
        "from google.cloud import storage\n"
        "bucket, _, prefix = os.environ['AIP_MODEL_DIR'][5:].partition('/')\n"
        "client = storage.Client(project='p', credentials=AnonymousCredentials())\n"
        "client.bucket(bucket).blob(prefix + 'marker.txt').upload_from_string('trained')\n"
    )
    job = aiplatform.CustomTrainingJob(
        display_name="sdk-script", script_path=str(script), container_uri=TRAINING_IMAGE
    )
    assert job.run(replica_count=1, base_output_dir=f"gs://{BUCKET}/sdk-script") is None
    assert job.state == aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    marker = gcs.bucket(BUCKET).blob("sdk-script/model/marker.txt")
    assert marker.download_as_text() == "trained"


def test_container_training_gets_a_clear_400(sdk):
    job = aiplatform.CustomContainerTrainingJob(
        display_name="sdk-container", container_uri="us-docker.pkg.dev/p/r/trainer:1"
    )
    with pytest.raises(gexc.BadRequest, match="not run locally"):
        job.run(replica_count=1, base_output_dir=f"gs://{BUCKET}/sdk-container")


def test_the_enum_number_table_matches_the_sdk_protos():
    # Regenerate with `python -m ci.emulator.enums` when the discovery document or the
    # SDK is upgraded.
    assert enums.generate() == json.loads(enums.TABLE.read_text())
