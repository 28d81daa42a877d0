"""``projects.locations.customJobs``: create, get, list, cancel; and the job-logs admin path."""

from __future__ import annotations

from ci.emulator.collection import JobCollection
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import REQUIRED, ApiError, Request, field_error, not_found
from ci.emulator.jobs import JobRunner, duration_seconds
from ci.emulator.operations import Operations
from ci.emulator.store import Store, now, public

INT64_MAX = 2**63 - 1
MAX_POOLS = 4  # chief, workers, parameter servers, evaluators
MAX_PACKAGE_URIS = 100  # PythonPackageSpec.packageUris: "The maximum number ... is 100."
MAX_ENV = 100  # PythonPackageSpec.env: "Maximum limit is 100."


def check_pools(job_spec: dict, where: str = "job_spec") -> None:
    """400 INVALID_ARGUMENT for a CustomJobSpec Vertex refuses or the emulator cannot run.

    Vertex's rules: pool 0 (the primary replica) is set and has ``replicaCount`` 1; the
    other pools may be skipped with ``{}``; a replica count is a non-negative int64; a pool
    runs either a ``containerSpec`` or a ``pythonPackageSpec``; at most 100 package URIs and
    100 environment variables; ``scheduling.timeout`` a positive Duration;
    ``baseOutputDirectory`` a ``gs://`` prefix; every pool that is set names its
    ``machineSpec.machineType``. Containers are not run locally.
    """
    specs = job_spec.get("workerPoolSpecs") or []
    if not specs:
        raise _field(f"{where}.worker_pool_specs", "at least one worker pool is required.")
    if len(specs) > MAX_POOLS:
        raise _field(
            f"{where}.worker_pool_specs",
            f"at most {MAX_POOLS} worker pools (chief, workers, parameter servers, "
            f"evaluators), got {len(specs)}.",
        )
    if not specs[0]:
        raise _field(
            f"{where}.worker_pool_specs[0]",
            "the first worker pool (the primary replica) must not be empty; only the "
            "others may be skipped with an empty value.",
        )
    for i, spec in enumerate(specs):
        if spec:
            _check_pool(spec, f"{where}.worker_pool_specs[{i}]", i)
    timeout = (job_spec.get("scheduling") or {}).get("timeout")
    if timeout is not None:
        try:
            seconds = duration_seconds(timeout)
        except ValueError as exc:
            raise _field(f"{where}.scheduling.timeout", str(exc)) from None
        if seconds <= 0:
            raise _field(f"{where}.scheduling.timeout", f"must be positive, got {timeout!r}.")
    prefix = (job_spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if job_spec.get("baseOutputDirectory") is not None and not (
        isinstance(prefix, str) and prefix.startswith("gs://") and len(prefix) > len("gs://")
    ):
        raise _field(
            f"{where}.base_output_directory.output_uri_prefix",
            f"must be a Cloud Storage URI (gs://bucket/path), got {prefix!r}.",
        )


def _check_pool(spec: dict, where: str, pool: int) -> None:
    try:
        count = int(spec.get("replicaCount", 1))
    except (TypeError, ValueError):
        raise _field(f"{where}.replica_count", "must be an integer.") from None
    if not 0 <= count <= INT64_MAX:
        raise _field(f"{where}.replica_count", f"must be a non-negative int64, got {count}.")
    if pool == 0 and count != 1:
        raise _field(
            f"{where}.replica_count",
            f"the primary replica's pool must have exactly 1 replica, got {count}.",
        )
    if spec.get("containerSpec") and spec.get("pythonPackageSpec"):
        raise _field(where, "set one of container_spec and python_package_spec, not both.")
    if not spec.get("pythonPackageSpec"):
        raise ApiError(
            400,
            "Every worker pool needs a pythonPackageSpec: the emulator runs Python "
            "packages, and containers (containerSpec, CustomContainerTrainingJob) are "
            "not run locally.",
        )
    package = spec["pythonPackageSpec"]
    if len(package.get("packageUris") or []) > MAX_PACKAGE_URIS:
        raise _field(
            f"{where}.python_package_spec.package_uris",
            f"at most {MAX_PACKAGE_URIS} package URIs, got {len(package['packageUris'])}.",
        )
    if len(package.get("env") or []) > MAX_ENV:
        raise _field(
            f"{where}.python_package_spec.env",
            f"at most {MAX_ENV} environment variables, got {len(package['env'])}.",
        )
    for i, var in enumerate(package.get("env") or []):
        if not var.get("name"):
            raise _field(f"{where}.python_package_spec.env[{i}].name", "must not be empty.")
    # MachineSpec.machine_type: "For BatchPredictionJob or as part of WorkerPoolSpec this
    # field is required" (the document says so in prose, not with "Required.").
    if not (spec.get("machineSpec") or {}).get("machineType"):
        raise _field(f"{where}.machine_spec.machine_type", REQUIRED)


def _field(field: str, message: str) -> ApiError:
    """400 INVALID_ARGUMENT naming the request field, the way Vertex words it."""
    return field_error(field, message)


class CustomJobs(JobCollection):
    """Handlers over the store; processes are the runner's business."""

    kind, type_name = "customJobs", "CustomJob"

    def __init__(self, store: Store, faults: FaultTable, runner: JobRunner, operations: Operations):
        self.store, self.faults, self.runner = store, faults, runner
        self.operations = operations  # delete's DeleteOperation

    def routes(self):
        """The collection's methods, and the job-logs admin path."""
        logs = ("GET", r"/_emulator/jobs/(?P<job>[^/]+)/logs", "_emulator.jobs.logs", self.logs)
        return [*super().routes(), logs]

    def create(self, request: Request):
        """``customJobs.create``: store the job PENDING and hand it to the runner."""
        check_pools(request.body["jobSpec"], "custom_job.job_spec")
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        return 200, public(self.start(parent, request.body))

    def start(self, parent: str, body: dict) -> dict:
        """Store a (checked) CustomJob PENDING under ``parent`` and hand it to the runner."""
        job_id = self.store.new_id()
        created = now()
        job = {
            **body,
            "name": f"{parent}/customJobs/{job_id}",
            "state": "JOB_STATE_PENDING",
            "createTime": created,
            "updateTime": created,
            "_faults": self.faults.take_job_faults(),
        }
        self.store.save("customJobs", job_id, job)
        self.runner.submit(job_id)
        return job

    def _stop(self, job: dict) -> None:
        self.runner.cancel(job["name"].rsplit("/", 1)[-1])

    def logs(self, request: Request):
        """Every replica's log, each under a ``==> workerpool0-0 <==`` header (text/plain);
        for a HyperparameterTuningJob, the emulator's notes on it."""
        job_id = request.params["job"]
        if all(
            self.store.get(k, job_id) is None for k in ("customJobs", "hyperparameterTuningJobs")
        ):
            raise not_found(f"CustomJob {job_id}")
        tail = int(request.query.get("tail") or 0)
        log_dir = self.store.job_dir(job_id) / "logs"
        parts = []
        for path in sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []:
            lines = path.read_text(errors="replace").splitlines()
            if tail:
                lines = lines[-tail:]
            if lines:
                parts.append(f"==> {path.stem} <==\n" + "\n".join(lines) + "\n")
        return 200, "".join(parts)
