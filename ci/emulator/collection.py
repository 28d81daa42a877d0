"""What every job-like collection serves alike: get, list, cancel and delete.

Vertex answers ``customJobs``, ``batchPredictionJobs``, ``hyperparameterTuningJobs`` and
``trainingPipelines`` the same way; only the collection name, the type name its messages
use, the states that count as running and what a cancel must stop differ. A subclass says
those and writes ``create``; this class holds the rest once, so the error messages, routes
and JSON cannot drift apart between them.
"""

from __future__ import annotations

from ci.emulator import listing
from ci.emulator.httpd import Request, not_found, precondition
from ci.emulator.jobs import ACTIVE
from ci.emulator.operations import Operations
from ci.emulator.store import Store, now, public

LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"


def same_parent(name: str, project: str, location: str) -> bool:
    """Whether resource ``name`` is in ``projects/<project>/locations/<location>``.

    Vertex takes a project's number wherever it takes its id; the emulator does not know
    which number is which project, so a numeric project on either side matches any.
    """
    parts = name.split("/")
    if len(parts) < 4 or parts[3] != location:
        return False
    return parts[1] == project or project.isdigit() or parts[1].isdigit()


class JobCollection:
    """Handlers for one job-like collection; subclasses set the class attributes."""

    kind = ""  # the URL collection, also the store kind: "customJobs"
    type_name = ""  # Vertex's name for one of them in messages: "CustomJob"
    param = "job"  # the path parameter that holds the id
    cancellable = ACTIVE  # states cancel accepts
    running = ACTIVE  # states delete refuses
    cancelling = "JOB_STATE_CANCELLING"
    filter_fields = listing.JOB_FIELDS  # what the list's `filter` may name
    store: Store
    operations: Operations

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        many = f"{LOC}/{self.kind}"
        one = f"{many}/(?P<{self.param}>[^/:]+)"
        api = f"aiplatform.projects.locations.{self.kind}."
        served = [
            ("POST", many, api + "create", self.create),
            ("GET", many, api + "list", self.list),
            ("GET", one, api + "get", self.get),
            ("POST", one + ":cancel", api + "cancel", self.cancel),
            ("DELETE", one, api + "delete", self.delete),
        ]
        return served

    def create(self, request: Request):
        """``<kind>.create``: each collection checks and starts its own."""
        raise NotImplementedError

    def _job(self, request: Request) -> dict:
        job = self.store.get(self.kind, request.params[self.param])
        if job is None or not same_parent(
            job["name"], request.params["project"], request.params["location"]
        ):
            raise not_found(f"{self.type_name} {request.raw_path.removeprefix('/v1/')}")
        return job

    def get(self, request: Request):
        """``<kind>.get``."""
        with self.store.lock:
            return 200, public(self._job(request))

    def list(self, request: Request):
        """``<kind>.list`` with ``filter`` and pagination, oldest first."""
        project, location = request.params["project"], request.params["location"]
        with self.store.lock:
            jobs = [
                public(j)
                for j in self.store.all(self.kind)
                if same_parent(j["name"], project, location)
            ]
        return 200, listing.page(self.kind, jobs, request.query, self.filter_fields)

    def cancel(self, request: Request):
        """``<kind>.cancel``: CANCELLING now; CANCELLED once :meth:`_stop` took effect."""
        with self.store.lock:
            job = self._job(request)
            if job["state"] not in self.cancellable:
                raise precondition(
                    f"Cannot cancel {self.type_name} {job['name']} in state {job['state']}."
                )
            job.update(state=self.cancelling, updateTime=now())
            self.store.save(self.kind, job["name"].rsplit("/", 1)[-1], job)
            self._cancelling(job)
        self._stop(job)
        return 200, {}

    def _cancelling(self, job: dict) -> None:
        """Under the store lock, right after ``job`` became CANCELLING: nothing by default."""

    def _stop(self, job: dict) -> None:
        """After the lock: stop ``job``'s work (its processes, its thread)."""
        raise NotImplementedError

    def delete(self, request: Request):
        """``<kind>.delete``: a finished one's record only (outputs stay); a DeleteOperation."""
        with self.store.lock:
            job = self._job(request)
            if job["state"] in self.running:
                raise precondition(
                    f"{self.type_name} {job['name']} is {job['state']}; cancel it first."
                )

            def work() -> dict:
                self.store.delete(self.kind, job["name"].rsplit("/", 1)[-1])
                return {}

            op = self.operations.run(job["name"], "Delete", work, response="google.protobuf.Empty")
        return 200, op
