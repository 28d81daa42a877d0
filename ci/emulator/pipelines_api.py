"""``projects.locations.trainingPipelines`` for custom training: create, get, list, cancel,
delete.

A pipeline with the custom-task definition runs its ``trainingTaskInputs`` (a
CustomJobSpec) as a backing CustomJob, then, when it has a ``modelToUpload``, uploads
the model from ``<baseOutputDirectory>/model`` (the job's ``AIP_MODEL_DIR``) as Vertex
does. Pipelines that need a dataset or other task definitions (AutoML) get a 400.
"""

from __future__ import annotations

from ci.emulator import listing, schema
from ci.emulator.collection import JobCollection
from ci.emulator.httpd import ApiError, Request
from ci.emulator.jobs_api import CustomJobs, check_pools
from ci.emulator.models_api import Models
from ci.emulator.operations import Operations
from ci.emulator.store import Store, now, public

CUSTOM_TASK = "gs://google-cloud-aiplatform/schema/trainingjob/definition/custom_task_1.0.0.yaml"
ACTIVE = ("PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")
ACTIVE_ALL = (*ACTIVE, "PIPELINE_STATE_CANCELLING")
# A backing job's final state → the pipeline's.
FINAL = {
    "JOB_STATE_SUCCEEDED": "PIPELINE_STATE_SUCCEEDED",
    "JOB_STATE_FAILED": "PIPELINE_STATE_FAILED",
    "JOB_STATE_CANCELLED": "PIPELINE_STATE_CANCELLED",
}


class TrainingPipelines(JobCollection):
    """Pipeline handlers; the backing job runs through :class:`CustomJobs`."""

    kind, type_name, param = "trainingPipelines", "TrainingPipeline", "pipeline"
    filter_fields = listing.PIPELINE_FIELDS
    cancellable, running, cancelling = ACTIVE, ACTIVE_ALL, "PIPELINE_STATE_CANCELLING"

    def __init__(self, store: Store, jobs: CustomJobs, models: Models, operations: Operations):
        self.store, self.jobs, self.models, self.operations = store, jobs, models, operations
        jobs.runner.listeners.append(self._job_finished)

    def create(self, request: Request):
        """``trainingPipelines.create``: checked now, its CustomJob started at once."""
        body = request.body
        if body["trainingTaskDefinition"] != CUSTOM_TASK:
            raise ApiError(
                400,
                f"trainingTaskDefinition {body['trainingTaskDefinition']!r} is not emulated; "
                f"only custom training ({CUSTOM_TASK}) is.",
            )
        if body.get("inputDataConfig"):
            raise ApiError(400, "inputDataConfig (managed datasets) is not emulated.")
        inputs = body.get("trainingTaskInputs")
        if not isinstance(inputs, dict):
            raise ApiError(400, "trainingTaskInputs must be a CustomJobSpec object.")
        # The inputs are a free-form Struct in the request: check them as the CustomJobSpec
        # they must be (names or numbers for enums, unknown fields refused).
        where = "training_pipeline.training_task_inputs"
        spec = schema.validate("GoogleCloudAiplatformV1CustomJobSpec", inputs, root=where)
        check_pools(spec, where)
        if body.get("modelToUpload") and not (
            body["modelToUpload"].get("artifactUri") or spec.get("baseOutputDirectory")
        ):
            raise ApiError(
                400, "modelToUpload needs artifactUri or trainingTaskInputs.baseOutputDirectory."
            )
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        pipeline_id = self.store.new_id()
        stamp = now()
        pipeline = {
            **body,
            "trainingTaskInputs": spec,
            "name": f"{parent}/trainingPipelines/{pipeline_id}",
            "state": "PIPELINE_STATE_PENDING",
            "createTime": stamp,
            "updateTime": stamp,
        }
        with self.store.lock:
            self.store.save("trainingPipelines", pipeline_id, pipeline)
            job_body = {"displayName": f"{body['displayName']}-custom-job", "jobSpec": spec}
            if body.get("labels"):
                job_body["labels"] = body["labels"]
            job = self.jobs.start(parent, job_body)
            pipeline["_job"] = job["name"].rsplit("/", 1)[-1]
            pipeline["trainingTaskMetadata"] = {"backingCustomJob": job["name"]}
            pipeline.update(state="PIPELINE_STATE_RUNNING", startTime=now())
            self.store.save("trainingPipelines", pipeline_id, pipeline)
            return 200, public(pipeline)

    def _job_finished(self, job_id: str, job: dict) -> None:
        with self.store.lock:
            pipeline = next(
                (p for p in self.store.all("trainingPipelines") if p.get("_job") == job_id), None
            )
            if pipeline is None or pipeline["state"] not in ACTIVE_ALL:
                return
            state = FINAL[job["state"]]
            if state == "PIPELINE_STATE_SUCCEEDED" and pipeline.get("modelToUpload"):
                try:
                    pipeline["modelToUpload"] = self._upload(pipeline)
                except ApiError as exc:
                    state, job = (
                        "PIPELINE_STATE_FAILED",
                        {"error": {"code": exc.rpc_code, "message": exc.message}},
                    )
            if job.get("error"):
                pipeline["error"] = job["error"]
            pipeline.update(state=state, updateTime=now(), endTime=now())
            self.store.save("trainingPipelines", pipeline["name"].rsplit("/", 1)[-1], pipeline)

    def _upload(self, pipeline: dict) -> dict:
        model = dict(pipeline["modelToUpload"])
        if not model.get("artifactUri"):
            base = pipeline["trainingTaskInputs"]["baseOutputDirectory"]["outputUriPrefix"]
            model["artifactUri"] = base.rstrip("/") + "/model"
        # Model.training_pipeline: "The resource name of the TrainingPipeline that uploaded
        # this Model, if any" (the SDK's Model.training_job reads it).
        model["trainingPipeline"] = pipeline["name"]
        body = {"model": model}
        for key in ("modelId", "parentModel"):
            if pipeline.get(key):
                body[key] = pipeline[key]
        parent = pipeline["name"].split("/trainingPipelines/")[0]
        uploaded = self.models.register(parent, body)
        _, version = self.models.find(f"{uploaded['model']}@{uploaded['modelVersionId']}")
        return public(version)

    def recover(self) -> None:
        """Pipelines whose backing job ended while the emulator was down end the same way."""
        for pipeline in self.store.all("trainingPipelines"):
            job = self.store.get("customJobs", pipeline.get("_job", ""))
            if pipeline["state"] in ACTIVE_ALL and job and job["state"] in FINAL:
                self._job_finished(pipeline["_job"], job)

    def _cancelling(self, job: dict) -> None:
        backing = self.store.get("customJobs", job["_job"])
        if backing["state"] not in ("JOB_STATE_CANCELLING", *FINAL):
            backing.update(state="JOB_STATE_CANCELLING", updateTime=now())
            self.store.save("customJobs", job["_job"], backing)

    def _stop(self, job: dict) -> None:
        self.jobs.runner.cancel(job["_job"])
