"""Waiting for a Vertex AI job of any kind, and cancelling it.

``train`` (customJobs), ``tune`` (hyperparameterTuningJobs) and ``batch-predict``
(batchPredictionJobs) wait alike: a line on each state change, a heartbeat with the elapsed
time, and on ``--timeout`` a cancel, then an error. A :class:`JobKind` says which collection
and what to call the job in messages; the callers add what only they print.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ci.cloud import Cloud, api, create
from ci.errors import CiError

SUCCEEDED = "JOB_STATE_SUCCEEDED"
TERMINAL = {SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
# How long a cancelled job may take to stop before we give up waiting for it; after
# Ctrl-C only briefly: the cancel is accepted at once, the user asked to stop.
CANCEL_GRACE = 120.0
INTERRUPT_GRACE = 20.0
# The label that tells this submission's job apart, so that a create whose answer was lost
# finds the job it made instead of submitting a second one.
SUBMISSION_LABEL = "ci-submission"


@dataclass(frozen=True)
class JobKind:
    """One Vertex AI job collection: ``customJobs`` and its name in messages, ``job``."""

    collection: str
    noun: str

    def resource(self, cloud: Cloud):
        """The discovery client's collection, e.g. ``locations().customJobs()``."""
        return getattr(cloud.vertex.projects().locations(), self.collection)()

    def get(self, cloud: Cloud, job: dict) -> dict:
        """The job as it is now."""
        return api(self.resource(cloud).get(name=job["name"]), f"get {self.noun}")

    def submit(self, cloud: Cloud, body: dict) -> dict:
        """Create the job (labelled with a fresh :data:`SUBMISSION_LABEL`), never twice:
        after a lost answer, the job it made is found by that label."""
        token = uuid.uuid4().hex[:16]
        body = {**body, "labels": {**body.get("labels", {}), SUBMISSION_LABEL: token}}
        collection = self.resource(cloud)

        def find() -> dict | None:
            listed = collection.list(
                parent=cloud.parent, filter=f'labels.{SUBMISSION_LABEL}="{token}"'
            )
            found = api(listed, f"list {self.noun}s").get(self.collection, [])
            return found[0] if found else None

        request = collection.create(parent=cloud.parent, body=body)
        try:
            return create(request, f"create {self.noun}", find)
        except KeyboardInterrupt:  # the request may have been carried out: none left running
            cloud.fresh_connections()
            try:
                job = find()
                if job is not None:
                    cancel(cloud, self, job, INTERRUPT_GRACE)
            except CiError as exc:
                cloud.log(f"interrupted; cannot tell whether the {self.noun} was created ({exc})")
            raise

    def timed_out(self, job: dict, timeout: float, state: str) -> str:
        """The error after ``--timeout`` cancelled the job (``train`` words it its own way)."""
        return f"{self.noun} {job['name']} timed out after {timeout:g}s ({state})"

    def check_succeeded(self, job: dict) -> None:
        """CiError with the job's error message unless it succeeded."""
        if job["state"] != SUCCEEDED:
            message = (job.get("error", {}).get("message") or job["state"]).strip()
            raise CiError(f"{self.noun} {job['name']} ended {job['state']}: {message}")


def wait_until_done(
    cloud: Cloud,
    kind: JobKind,
    job: dict,
    timeout: float | None,
    progress: Callable[[dict], str] = lambda job: "",
    each: Callable[[dict], None] | None = None,
) -> dict:
    """Poll until the job ends; a line per state change, a heartbeat, cancel on timeout.

    ``progress(job)`` is appended to the heartbeat line; ``each(job)`` runs after every poll
    (``tune`` prints the trials that finished).
    """
    try:
        return _wait(cloud, kind, job, timeout, progress, each)
    except _PollFailed as failed:
        # The job runs on (and bills) whatever our polls answer: cancel it before failing.
        error, job = failed.args
        cloud.log(f"{error}; cancelling {job['name']}")
        try:
            state = cancel(cloud, kind, job)
        except CiError as exc:
            raise CiError(
                f"{error}; cancelling {kind.noun} {job['name']} failed too ({exc}): cancel it "
                "by hand"
            ) from None
        if state == "JOB_STATE_CANCELLED":
            done = "was cancelled"
        elif state in TERMINAL:
            done = f"had ended {state}"
        else:
            done = f"cancel was requested ({state})"
        raise CiError(f"{error}; {kind.noun} {job['name']} {done}") from None


class _PollFailed(Exception):
    """A poll (or ``each``) failed beyond its retries: (the CiError, the job as last seen)."""


def _wait(cloud, kind, job, timeout, progress, each) -> dict:
    s = cloud.settings
    start = last_beat = time.monotonic()
    last_state = None
    while True:
        elapsed = time.monotonic() - start
        state = job.get("state", "JOB_STATE_UNSPECIFIED")
        if state != last_state:
            cloud.log(f"[{elapsed:6.1f}s] {job['name']}: {state}")
            last_state = state
        if each is not None:
            try:
                each(job)
            except CiError as exc:
                raise _PollFailed(exc, job) from None
        if state in TERMINAL:
            return job
        if timeout is not None and elapsed >= timeout:
            try:
                state = cancel(cloud, kind, job)
            except CiError as exc:
                raise CiError(
                    f"{kind.noun} {job['name']} timed out after {timeout:g}s and could not be "
                    f"cancelled ({exc}): cancel it by hand"
                ) from None
            raise CiError(kind.timed_out(job, timeout, state))
        if time.monotonic() - last_beat >= s.heartbeat:
            cloud.log(f"[{elapsed:6.1f}s] still {state}{progress(job)}")
            last_beat = time.monotonic()
        pause = s.poll_seconds
        if timeout is not None:  # time out when asked, not up to a poll later
            pause = max(0.0, min(pause, timeout - elapsed))
        time.sleep(pause)
        try:
            job = kind.get(cloud, job)
        except CiError as exc:
            raise _PollFailed(exc, job) from None


def cancel(
    cloud: Cloud, kind: JobKind, job: dict, grace: float = CANCEL_GRACE, report: bool = True
) -> str:
    """Ask Vertex to cancel the job and wait up to ``grace`` seconds for it to end; its state.

    ``report`` logs the state it ended in (or still had when the grace ran out).
    """
    # After Ctrl-C a kept-alive connection may hold a half-sent request, and the cancel sent
    # on it would get that request's answer instead: cancel on a fresh connection.
    cloud.fresh_connections()
    try:
        api(kind.resource(cloud).cancel(name=job["name"], body={}), f"cancel {kind.noun}")
    except CiError as exc:
        if getattr(exc, "status", None) != 400:
            raise
        job = kind.get(cloud, job)  # refused (FAILED_PRECONDITION): it ended meanwhile
        if job.get("state") not in TERMINAL:
            raise
        if report:
            cloud.log(f"{job['name']}: {job.get('state')}")
        return job["state"]
    cloud.log(f"cancelling {job['name']}")
    deadline = time.monotonic() + grace
    while job.get("state") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(cloud.settings.poll_seconds)
        try:
            job = kind.get(cloud, job)
        except CiError as exc:  # the cancel was accepted: what it came to is unknown
            cloud.log(f"{job['name']}: cancel requested; {exc}")
            return "cancel requested"
    if report:
        cloud.log(f"{job['name']}: {job.get('state')}")
    return job.get("state", "")
