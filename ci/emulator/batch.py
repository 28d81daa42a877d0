"""``projects.locations.batchPredictionJobs``: create, get, list, cancel, delete.

A job runs the model version's export (the same :class:`ModelCache` predictors the endpoints
use) over JSON-lines instances read from Cloud Storage a stream at a time, in batches of
``manualBatchTuningParameters.batchSize``. It writes Vertex's layout for custom-trained
models under ``<outputUriPrefix>/prediction-<model display name>-<create time>/``:
``prediction.results-NNNNN-of-NNNNN`` (``{"instance", "prediction"}`` lines) and
``prediction.errors_stats-NNNNN-of-NNNNN`` (``{"instance", "error"}`` lines). A bad instance
is counted and listed; it does not fail the job. Memory stays flat: lines stream in, results
go to local shard files that are uploaded at the end.
"""

from __future__ import annotations

import shutil
import threading
import time

from ci.emulator import batch_io
from ci.emulator.collection import JobCollection
from ci.emulator.deployments import check_resources
from ci.emulator.httpd import ApiError, Request, not_found
from ci.emulator.jobs import ACTIVE
from ci.emulator.models_api import Models
from ci.emulator.operations import Operations
from ci.emulator.predict import ModelCache
from ci.emulator.store import Store, now, public

KIND = "batchPredictionJobs"
PROGRESS_SECONDS = 1.0


class BatchJobs(JobCollection):
    """Handlers, and one thread per running job."""

    kind, type_name = KIND, "BatchPredictionJob"

    def __init__(self, store: Store, operations: Operations, models: Models, cache: ModelCache):
        self.store, self.operations, self.models, self.cache = store, operations, models, cache
        self.storage_url = cache.storage_url
        self._stops: dict[str, threading.Event] = {}
        for job in self.store.all(KIND):
            if job["state"] in ACTIVE:
                message = "The emulator stopped while this job was running."
                self._update(job["name"].rsplit("/", 1)[-1], "JOB_STATE_FAILED", 13, message)

    def create(self, request: Request):
        """``batchPredictionJobs.create``: check the configs and the model, then run."""
        body = request.body
        inputs, outputs = body["inputConfig"], body["outputConfig"]
        if inputs["instancesFormat"] != "jsonl":
            raise ApiError(
                400,
                f"Unsupported instances_format {inputs['instancesFormat']!r}: "
                "the emulator reads 'jsonl'.",
            )
        uris = (inputs.get("gcsSource") or {}).get("uris") or []
        if not uris or not all(u.startswith("gs://") for u in uris):
            raise ApiError(400, "input_config.gcs_source.uris: gs:// URIs are required.")
        if outputs["predictionsFormat"] != "jsonl":
            raise ApiError(
                400,
                f"Unsupported predictions_format {outputs['predictionsFormat']!r}:"
                " the emulator writes 'jsonl'.",
            )
        prefix = (outputs.get("gcsDestination") or {}).get("outputUriPrefix") or ""
        if not prefix.startswith("gs://"):
            raise ApiError(
                400, "output_config.gcs_destination.output_uri_prefix: a gs:// URI is required."
            )
        if not body.get("model"):
            raise ApiError(
                400, "Field: batch_prediction_job.model; Message: Required field is not set."
            )
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        with self.store.lock:
            record, version = self.models.find(body["model"])
            if not record["name"].startswith(parent + "/"):
                raise not_found(f"Model {body['model']}")
            check_resources(body, version, "batch_prediction_job", batch=True)
            job_id = self.store.new_id()
            created = now()
            job = {
                **body,
                "name": f"{parent}/batchPredictionJobs/{job_id}",
                "modelVersionId": version["versionId"],
                "state": "JOB_STATE_PENDING",
                "createTime": created,
                "updateTime": created,
            }
            self.store.save(KIND, job_id, job)
            answer = public(job)  # as created: the job's thread moves it on at once
        stop = self._stops[job_id] = threading.Event()
        args = (job_id, record, version, stop)
        threading.Thread(target=self._run, args=args, daemon=True).start()
        return 200, answer

    def _stop(self, job: dict) -> None:
        self._stops[job["name"].rsplit("/", 1)[-1]].set()

    # --- the job thread ------------------------------------------------------------

    def _run(self, job_id: str, record: dict, version: dict, stop: threading.Event) -> None:
        work = self.store.job_dir(job_id) / "output"
        try:
            self._update(job_id, "JOB_STATE_RUNNING")
            predictor = self.cache.get(
                record["name"].rsplit("/", 1)[-1], version["versionId"], version["artifactUri"]
            )
            job = self.store.get(KIND, job_id)
            batch = int((job.get("manualBatchTuningParameters") or {}).get("batchSize") or 0)
            client = batch_io.client(self.storage_url)
            shards = batch_io.Shards(work)
            counts = [0, 0]
            last = time.monotonic()
            for lines in batch_io.batches(client, job["inputConfig"]["gcsSource"]["uris"], batch):
                if stop.is_set():
                    return self._update(job_id, "JOB_STATE_CANCELLED", 1, "Job was cancelled.")
                for ok, line in batch_io.predict(predictor, lines):
                    shards.write(ok, line)
                    counts[not ok] += 1
                if time.monotonic() - last > PROGRESS_SECONDS:
                    self._update(job_id, None, stats=counts)
                    last = time.monotonic()
            stamp = job["createTime"][:23] + "Z"  # YYYY-MM-DDThh:mm:ss.sssZ
            display = version.get("displayName") or record.get("displayName", "model")
            prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
            out_dir = f"{prefix}/prediction-{display}-{stamp}"
            shards.upload(client, out_dir)
            self._update(job_id, "JOB_STATE_SUCCEEDED", stats=counts, out=out_dir)
        except ApiError as exc:
            self._update(job_id, "JOB_STATE_FAILED", 9, exc.message)
        except Exception as exc:
            self._update(job_id, "JOB_STATE_FAILED", 13, f"emulator error: {exc!r}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _update(self, job_id, state, code=0, message="", stats=None, out=None) -> None:
        with self.store.lock:
            job = self.store.get(KIND, job_id)
            if state == "JOB_STATE_RUNNING" and job["state"] == "JOB_STATE_CANCELLING":
                state = None  # a cancel arrived first
            if state:
                job["state"] = state
            job["updateTime"] = now()
            if state == "JOB_STATE_RUNNING":
                job["startTime"] = job["updateTime"]
            elif state and state not in ACTIVE:
                job["endTime"] = job["updateTime"]
            if stats is not None:
                job["completionStats"] = {
                    "successfulCount": str(stats[0]),
                    "failedCount": str(stats[1]),
                    "incompleteCount": "0",
                }
            if out:
                job["outputInfo"] = {"gcsOutputDirectory": out}
            if code:
                job["error"] = {"code": code, "message": message}
            self.store.save(KIND, job_id, job)
