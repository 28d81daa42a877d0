"""``projects.locations.customJobs``: create, get, list, cancel; and the job-logs admin path."""

from __future__ import annotations

from ci.emulator.collection import JobCollection
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, Request, not_found
from ci.emulator.jobs import JobRunner
from ci.emulator.operations import Operations
from ci.emulator.store import Store, now, public


def check_pools(job_spec: dict) -> None:
    """400 for worker pools the emulator cannot run (containers) or Vertex refuses."""
    specs = job_spec.get("workerPoolSpecs") or []
    if not specs or any(s and not s.get("pythonPackageSpec") for s in specs):
        raise ApiError(
            400,
            "Every worker pool needs a pythonPackageSpec: the emulator runs Python "
            "packages, and containers (containerSpec, CustomContainerTrainingJob) are "
            "not run locally.",
        )
    if len(specs) > 4:
        raise ApiError(400, "At most 4 worker pools (chief, workers, ps, evaluators).")
    if int(specs[0].get("replicaCount", 1)) != 1:
        raise ApiError(400, "workerPoolSpecs[0].replicaCount must be 1 (the chief).")


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
        check_pools(request.body["jobSpec"])
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
        """Every replica's log, each under a ``==> workerpool0-0 <==`` header (text/plain)."""
        job_id = request.params["job"]
        if self.store.get("customJobs", job_id) is None:
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
