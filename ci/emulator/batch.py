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

import fnmatch
import json
import shutil
import threading
import time
from pathlib import Path

from ci.emulator import listing
from ci.emulator.httpd import ApiError, Request, not_found, precondition
from ci.emulator.jobs import ACTIVE
from ci.emulator.models_api import Models
from ci.emulator.operations import Operations
from ci.emulator.predict import ModelCache
from ci.emulator.store import Store, now, public

LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
JOB = LOC + r"/batchPredictionJobs/(?P<job>[^/:]+)"
API = "aiplatform.projects.locations.batchPredictionJobs."
KIND = "batchPredictionJobs"
DEFAULT_BATCH = 64
SHARD_LINES = 100_000  # lines per output file: bounds what one upload holds
PROGRESS_SECONDS = 1.0


class BatchJobs:
    """Handlers, and one thread per running job."""

    def __init__(self, store: Store, operations: Operations, models: Models, cache: ModelCache):
        self.store, self.operations, self.models, self.cache = store, operations, models, cache
        self.storage_url = cache.storage_url
        self._stops: dict[str, threading.Event] = {}
        for job in self.store.all(KIND):
            if job["state"] in ACTIVE:
                message = "The emulator stopped while this job was running."
                self._update(job["name"].rsplit("/", 1)[-1], "JOB_STATE_FAILED", 13, message)

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        return [
            ("POST", LOC + "/batchPredictionJobs", API + "create", self.create),
            ("GET", LOC + "/batchPredictionJobs", API + "list", self.list),
            ("GET", JOB, API + "get", self.get),
            ("POST", JOB + ":cancel", API + "cancel", self.cancel),
            ("DELETE", JOB, API + "delete", self.delete),
        ]

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
        stop = self._stops[job_id] = threading.Event()
        args = (job_id, record, version, stop)
        threading.Thread(target=self._run, args=args, daemon=True).start()
        return 200, public(job)

    def _job(self, request: Request) -> dict:
        job = self.store.get(KIND, request.params["job"])
        if job is None or not job["name"].startswith(f"projects/{request.params['project']}/"):
            raise not_found(f"BatchPredictionJob {request.raw_path.removeprefix('/v1/')}")
        return job

    def get(self, request: Request):
        """``batchPredictionJobs.get``."""
        with self.store.lock:
            return 200, public(self._job(request))

    def list(self, request: Request):
        """``batchPredictionJobs.list`` with ``filter`` and pagination, oldest first."""
        prefix = f"projects/{request.params['project']}/locations/{request.params['location']}/"
        with self.store.lock:
            jobs = [public(j) for j in self.store.all(KIND) if j["name"].startswith(prefix)]
        return 200, listing.page(KIND, jobs, request.query, listing.JOB_FIELDS)

    def cancel(self, request: Request):
        """``batchPredictionJobs.cancel``: CANCELLING now, CANCELLED after the current batch."""
        with self.store.lock:
            job = self._job(request)
            if job["state"] not in ACTIVE:
                raise precondition(
                    f"Cannot cancel BatchPredictionJob {job['name']} in state {job['state']}."
                )
            job.update(state="JOB_STATE_CANCELLING", updateTime=now())
            self.store.save(KIND, request.params["job"], job)
        self._stops[request.params["job"]].set()
        return 200, {}

    def delete(self, request: Request):
        """``batchPredictionJobs.delete``: a finished job's record (its outputs stay)."""
        with self.store.lock:
            job = self._job(request)
            if job["state"] in ACTIVE:
                raise precondition(
                    f"BatchPredictionJob {job['name']} is {job['state']}; cancel it first."
                )

            def work() -> dict:
                self.store.delete(KIND, request.params["job"])
                return {}

            op = self.operations.run(job["name"], "Delete", work, response="google.protobuf.Empty")
        return 200, op

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
            client = _client(self.storage_url)
            shards = _Shards(work)
            counts = [0, 0]
            last = time.monotonic()
            for lines in _batches(client, job["inputConfig"]["gcsSource"]["uris"], batch):
                if stop.is_set():
                    return self._update(job_id, "JOB_STATE_CANCELLED", 1, "Job was cancelled.")
                for ok, line in _predict(predictor, lines):
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


class _Shards:
    """Result and error lines in local files of at most SHARD_LINES lines each."""

    def __init__(self, folder: Path):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.files = {True: [], False: []}
        self.open = {}
        self.lines = {True: 0, False: 0}

    def write(self, ok: bool, line: str) -> None:
        if self.lines[ok] % SHARD_LINES == 0:
            if ok in self.open:
                self.open[ok].close()
            path = self.folder / f"{'results' if ok else 'errors'}-{len(self.files[ok])}"
            self.files[ok].append(path)
            self.open[ok] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed later)
        self.open[ok].write(line + "\n")
        self.lines[ok] += 1

    def upload(self, client, out_dir: str) -> None:
        for handle in self.open.values():
            handle.close()
        bucket_name, _, folder = out_dir.removeprefix("gs://").partition("/")
        bucket = client.bucket(bucket_name)
        for ok, kind in ((True, "results"), (False, "errors_stats")):
            # Vertex writes both kinds even when one is empty.
            paths = self.files[ok] or [None]
            for i, path in enumerate(paths):
                blob = bucket.blob(f"{folder}/prediction.{kind}-{i:05d}-of-{len(paths):05d}")
                if path is None:
                    blob.upload_from_string(b"", content_type="application/jsonl")
                else:
                    blob.upload_from_filename(str(path), content_type="application/jsonl")


def _client(storage_url: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": storage_url},
    )


def _blobs(client, uris: list[str]):
    """The objects the input URIs name; ``*`` wildcards are expanded, in name order."""
    for uri in uris:
        bucket_name, _, name = uri.removeprefix("gs://").partition("/")
        if "*" not in name:
            yield client.bucket(bucket_name).blob(name)
            continue
        prefix = name.split("*", 1)[0]
        found = client.list_blobs(bucket_name, prefix=prefix)
        yield from sorted((b for b in found if fnmatch.fnmatch(b.name, name)), key=lambda b: b.name)


def _batches(client, uris: list[str], size: int):
    """Lists of raw instance lines, ``size`` at a time, streamed from the objects."""
    from google.api_core.exceptions import NotFound

    size = size or DEFAULT_BATCH
    batch: list[str] = []
    for blob in _blobs(client, uris):
        try:
            with blob.open("r", encoding="utf-8", chunk_size=8 << 20) as stream:
                for line in stream:
                    if line.strip():
                        batch.append(line.rstrip("\r\n"))
                        if len(batch) >= size:
                            yield batch
                            batch = []
        except NotFound:
            raise ApiError(
                400,
                f"Input gs://{blob.bucket.name}/{blob.name} does not exist.",
                "FAILED_PRECONDITION",
            ) from None
    if batch:
        yield batch


def _predict(predictor, lines: list[str]):
    """``(ok, output line)`` per input line; one bad instance never spoils the others."""
    from ci.errors import CiError

    instances, good = [], []
    for line in lines:
        try:
            instances.append(json.loads(line))
            good.append(line)
        except ValueError as exc:
            yield False, _error(json.dumps(line), f"Not JSON: {exc}")
    if not instances:
        return
    try:
        predictions = predictor.predict(instances)
    except (CiError, ValueError, TypeError):
        predictions = None
    if predictions is not None:
        for line, prediction in zip(good, predictions, strict=True):
            yield True, f'{{"instance": {line}, "prediction": {json.dumps(prediction)}}}'
        return
    for line, instance in zip(good, instances, strict=True):  # find the bad ones
        try:
            prediction = predictor.predict([instance])[0]
        except (CiError, ValueError, TypeError) as exc:
            yield False, _error(line, str(exc).replace("instance 0: ", "", 1))
            continue
        yield True, f'{{"instance": {line}, "prediction": {json.dumps(prediction)}}}'


def _error(instance_json: str, message: str) -> str:
    error = json.dumps({"status": "INVALID_ARGUMENT", "message": message})
    return f'{{"instance": {instance_json}, "error": {error}}}'
