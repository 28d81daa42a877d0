"""``projects.locations.customJobs``: create, get, list, cancel; and the job-logs admin path."""

from __future__ import annotations

from ci.emulator import listing
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, Request, not_found, precondition
from ci.emulator.jobs import ACTIVE, JobRunner
from ci.emulator.store import Store, now, public

LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
JOB = LOC + r"/customJobs/(?P<job>[^/:]+)"
API = "aiplatform.projects.locations.customJobs."


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


class CustomJobs:
    """Handlers over the store; processes are the runner's business."""

    def __init__(self, store: Store, faults: FaultTable, runner: JobRunner):
        self.store, self.faults, self.runner = store, faults, runner

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        return [
            ("POST", LOC + "/customJobs", API + "create", self.create),
            ("GET", LOC + "/customJobs", API + "list", self.list),
            ("GET", JOB, API + "get", self.get),
            ("POST", JOB + ":cancel", API + "cancel", self.cancel),
            ("GET", r"/_emulator/jobs/(?P<job>[^/]+)/logs", "_emulator.jobs.logs", self.logs),
        ]

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

    def _job(self, request: Request) -> dict:
        job = self.store.get("customJobs", request.params["job"])
        if job is None or not job["name"].startswith(f"projects/{request.params['project']}/"):
            raise not_found(f"CustomJob {request.raw_path.removeprefix('/v1/')}")
        return job

    def get(self, request: Request):
        """``customJobs.get``."""
        with self.store.lock:
            return 200, public(self._job(request))

    def list(self, request: Request):
        """``customJobs.list`` with ``filter`` and pagination, oldest first."""
        prefix = f"projects/{request.params['project']}/locations/{request.params['location']}/"
        with self.store.lock:
            jobs = [public(j) for j in self.store.all("customJobs") if j["name"].startswith(prefix)]
        return 200, listing.page("customJobs", jobs, request.query, listing.JOB_FIELDS)

    def cancel(self, request: Request):
        """``customJobs.cancel``: CANCELLING now, CANCELLED once the processes are gone."""
        with self.store.lock:
            job = self._job(request)
            if job["state"] not in ACTIVE:
                raise precondition(
                    f"Cannot cancel CustomJob {job['name']} in state {job['state']}."
                )
            job.update(state="JOB_STATE_CANCELLING", updateTime=now())
            self.store.save("customJobs", job["name"].rsplit("/", 1)[-1], job)
        self.runner.cancel(job["name"].rsplit("/", 1)[-1])
        return 200, {}

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
