"""``projects.locations.batchPredictionJobs``: create, get, list, cancel, delete.

A job runs the model version's export (the same :class:`ModelCache` predictors the endpoints
use) over instances read from Cloud Storage a stream at a time (``jsonl``, ``csv``,
``tf-record``, ``tf-record-gzip`` or ``file-list``, shaped by ``instanceConfig``: see
:mod:`ci.emulator.batch_read`), in batches of ``manualBatchTuningParameters.batchSize``. It
writes Vertex's layout for custom-trained models under
``<outputUriPrefix>/prediction-<model display name>-<create time>/``:
``prediction.results-NNNNN-of-NNNNN`` (``{"instance" or "key", "prediction"}`` lines) and
``prediction.errors_stats-NNNNN-of-NNNNN`` (``{"instance" or "key", "error"}`` lines). A bad
instance is counted and listed; it does not fail the job; a file whose content cannot be read
is a ``partialFailures`` entry. Memory stays flat: input streams in, results go to local
shard files that are uploaded at the end. BigQuery sources and destinations are a 400.
"""

from __future__ import annotations

import shutil
import threading
import time

from ci.emulator import batch_io, batch_read, listing
from ci.emulator.collection import JobCollection
from ci.emulator.deployments import check_resources
from ci.emulator.faults import FaultTable, JobFaults
from ci.emulator.httpd import ApiError, Request, field_error, not_found
from ci.emulator.jobs import ACTIVE
from ci.emulator.models_api import INPUT_FORMATS, OUTPUT_FORMATS, Models
from ci.emulator.operations import Operations
from ci.emulator.predict import ModelCache
from ci.emulator.store import Store, now, public

KIND = "batchPredictionJobs"
JOB = "batch_prediction_job"  # the request field batchPredictionJobs.create's body fills
PROGRESS_SECONDS = 1.0
# What a custom-trained model lists in supportedInputStorageFormats and
# supportedOutputStorageFormats; the BigQuery ones are not emulated.
NO_BIGQUERY = "the emulator does not emulate BigQuery; use Cloud Storage (gcsSource)"


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def check_config(body: dict) -> None:
    """400 unless the job's model, input, output and instance configs are ones Vertex takes
    for a custom-trained model and the emulator runs."""
    if body.get("unmanagedContainerModel"):
        if body.get("model"):
            raise _bad("Exactly one of model and unmanaged_container_model must be set.")
        raise _bad("unmanaged_container_model is not emulated: upload the model and set model.")
    if not body.get("model"):
        raise field_error(f"{JOB}.model")
    inputs, outputs = body["inputConfig"], body["outputConfig"]
    fmt = inputs["instancesFormat"]
    if fmt not in INPUT_FORMATS:
        raise _bad(
            f"Unsupported instances_format {fmt!r}: the model supports {', '.join(INPUT_FORMATS)}."
        )
    if fmt == "bigquery" or inputs.get("bigquerySource"):
        raise _bad(f"Unsupported instances_format {fmt!r} with a BigQuery source: {NO_BIGQUERY}.")
    uris = (inputs.get("gcsSource") or {}).get("uris") or []
    if not uris or not all(u.startswith("gs://") and "/" in u[5:].strip("/") for u in uris):
        raise field_error(
            f"{JOB}.input_config.gcs_source.uris", "gs://BUCKET/OBJECT URIs are required."
        )
    predictions = outputs["predictionsFormat"]
    if predictions not in OUTPUT_FORMATS:
        raise _bad(
            f"Unsupported predictions_format {predictions!r}: a custom-trained model supports "
            f"{', '.join(OUTPUT_FORMATS)}."
        )
    if predictions == "bigquery" or outputs.get("bigqueryDestination"):
        raise _bad(f"Unsupported predictions_format {predictions!r}: {NO_BIGQUERY}.")
    prefix = (outputs.get("gcsDestination") or {}).get("outputUriPrefix") or ""
    if not prefix.startswith("gs://") or not prefix[5:].strip("/"):
        raise field_error(
            f"{JOB}.output_config.gcs_destination.output_uri_prefix", "a gs:// URI is required."
        )
    if body.get("generateExplanation"):
        raise _bad("generate_explanation is not emulated: the model has no explanation_spec.")
    _check_instance_config(body.get("instanceConfig") or {}, fmt)


def _check_instance_config(config: dict, fmt: str) -> None:
    kind = config.get("instanceType") or ""
    if kind not in ("", "object", "array"):
        raise _bad(
            f"instance_config.instance_type {kind!r} is not supported: use 'object' or 'array'."
        )
    if config.get("includedFields") and config.get("excludedFields"):
        raise _bad("instance_config: included_fields and excluded_fields cannot both be populated.")
    selects = [f for f in ("keyField", "includedFields", "excludedFields") if config.get(f)]
    if selects and fmt not in ("jsonl", "csv"):
        raise _bad(
            f"instance_config.{selects[0]} does not apply to instances_format {fmt!r}: "
            "it needs JSONL objects or CSV rows."
        )


class BatchJobs(JobCollection):
    """Handlers, and one thread per running job."""

    kind, type_name = KIND, "BatchPredictionJob"

    def __init__(
        self,
        store: Store,
        operations: Operations,
        models: Models,
        cache: ModelCache,
        faults: FaultTable,
    ):
        self.store, self.operations, self.models, self.cache = store, operations, models, cache
        self.faults = faults  # job faults of kind batchPredictionJobs
        # batchPredictionJobs.list: "`model_display_name` supports `=`, `!=` comparisons";
        # the job keeps its model's display name as it was at create (a private key).
        self.filter_fields = {**listing.JOB_FIELDS, "model_display_name": self._model_display}
        self.storage_url = cache.storage_url
        self._stops: dict[str, threading.Event] = {}
        for job in self.store.all(KIND):
            if job["state"] in ACTIVE:
                message = "The emulator stopped while this job was running."
                self._update(job["name"].rsplit("/", 1)[-1], "JOB_STATE_FAILED", 13, message)

    def create(self, request: Request):
        """``batchPredictionJobs.create``: check the configs and the model, then run."""
        body = request.body
        check_config(body)
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        with self.store.lock:
            record, version = self.models.find(body["model"])
            if not record["name"].startswith(parent + "/"):
                raise not_found(f"Model {body['model']}")
            check_resources(body, version, JOB, batch=True)
            job_id = self.store.new_id()
            created = now()
            job = {
                **body,
                "name": f"{parent}/batchPredictionJobs/{job_id}",
                "modelVersionId": version["versionId"],
                "state": "JOB_STATE_PENDING",
                "_modelDisplayName": version.get("displayName") or record.get("displayName"),
                "createTime": created,
                "updateTime": created,
                "_faults": self.faults.take_job_faults(KIND),
            }
            self.store.save(KIND, job_id, job)
            answer = public(job)  # as created: the job's thread moves it on at once
        stop = self._stops[job_id] = threading.Event()
        args = (job_id, record, version, stop)
        threading.Thread(target=self._run, args=args, daemon=True).start()
        return 200, answer

    def _model_display(self, listed: dict) -> str | None:
        """The display name of the model a listed job (a public copy) ran."""
        job = self.store.get(KIND, listed["name"].rsplit("/", 1)[-1]) or {}
        return job.get("_modelDisplayName")

    def _stop(self, job: dict) -> None:
        self._stops[job["name"].rsplit("/", 1)[-1]].set()

    # --- the job thread ------------------------------------------------------------

    def _run(self, job_id: str, record: dict, version: dict, stop: threading.Event) -> None:
        work = self.store.job_dir(job_id) / "output"
        counts, failures = [0, 0], []
        started = time.monotonic()
        injected = JobFaults(self.store.get(KIND, job_id).get("_faults", []), stop)
        try:
            if injected.held("JOB_STATE_RUNNING"):
                return self._cancelled(job_id, counts, failures)
            self._update(job_id, "JOB_STATE_RUNNING")
            if injected.failure:
                raise ApiError(400, injected.failure)  # INVALID_ARGUMENT, as a custom job's
            if injected.hang:  # RUNNING, predicting nothing, until cancelled
                stop.wait()
                return self._cancelled(job_id, counts, failures)
            predictor = self.cache.get(
                record["name"].rsplit("/", 1)[-1],
                version["versionId"],
                version["artifactUri"],
                (version.get("containerSpec") or {}).get("imageUri", ""),
            )
            job = self.store.get(KIND, job_id)
            batch = int((job.get("manualBatchTuningParameters") or {}).get("batchSize") or 0)
            client = batch_io.client(self.storage_url)
            shards = batch_io.Shards(work)
            inputs = job["inputConfig"]
            shape = batch_read.Shape(job.get("instanceConfig"))
            stream = batch_io.items(
                client, inputs["gcsSource"]["uris"], inputs["instancesFormat"], shape, failures
            )
            last = time.monotonic()
            for items in batch_io.batches(stream, batch):
                if stop.is_set():
                    break
                for ok, line in batch_io.predict(predictor, items):
                    shards.write(ok, line)
                    counts[not ok] += 1
                if time.monotonic() - last > PROGRESS_SECONDS:
                    self._update(job_id, None, stats=counts, failures=failures)
                    last = time.monotonic()
            if stop.is_set():
                return self._cancelled(job_id, counts, failures)
            stamp = job["createTime"][:23] + "Z"  # YYYY-MM-DDThh:mm:ss.sssZ
            display = version.get("displayName") or record.get("displayName", "model")
            prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
            out_dir = f"{prefix}/prediction-{display}-{stamp}"
            shards.upload(client, out_dir)
            hours = (time.monotonic() - started) / 3600 * _replicas(job)
            if injected.held("JOB_STATE_SUCCEEDED"):
                return self._cancelled(job_id, counts, failures)
            self._update(
                job_id,
                "JOB_STATE_SUCCEEDED",
                stats=counts,
                failures=failures,
                out=out_dir,
                hours=hours,
            )
        except ApiError as exc:
            stats = (*counts, -1)
            if injected.held("JOB_STATE_FAILED"):
                return self._cancelled(job_id, counts, failures)
            self._update(job_id, "JOB_STATE_FAILED", exc.rpc_code, exc.message, stats, failures)
        except Exception as exc:
            message = f"emulator error: {exc!r}"
            self._update(job_id, "JOB_STATE_FAILED", 13, message, (*counts, -1), failures)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _cancelled(self, job_id: str, counts: list, failures: list) -> None:
        """End a job whose stop was asked for: CANCELLED, with what it did so far."""
        stats = (*counts, -1)  # how many were left unread is not known
        self._update(job_id, "JOB_STATE_CANCELLED", 1, "Job was cancelled.", stats, failures)

    def _update(
        self, job_id, state, code=0, message="", stats=None, failures=(), out=None, hours=None
    ) -> None:
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
                    "incompleteCount": str(stats[2] if len(stats) > 2 else 0),
                }
            if failures:
                job["partialFailures"] = list(failures)
            if hours is not None:
                job["resourcesConsumed"] = {"replicaHours": hours}
            if out:
                job["outputInfo"] = {"gcsOutputDirectory": out}
            if code:
                job["error"] = {"code": code, "message": message}
            self.store.save(KIND, job_id, job)


def _replicas(job: dict) -> int:
    return int((job.get("dedicatedResources") or {}).get("startingReplicaCount") or 1)
