"""Waiting for a Vertex AI job of any kind, and cancelling it.

``train`` (customJobs), ``tune`` (hyperparameterTuningJobs) and ``batch-predict``
(batchPredictionJobs) wait alike: a line on each state change, a heartbeat with the elapsed
time, and on ``--timeout`` a cancel, then an error. A :class:`JobKind` says which collection
and what to call the job in messages; the callers add what only they print.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ci.cloud import Cloud, api
from ci.errors import CiError

SUCCEEDED = "JOB_STATE_SUCCEEDED"
TERMINAL = {SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
# How long a cancelled job may take to stop before we give up waiting for it; after
# Ctrl-C only briefly: the cancel is accepted at once, the user asked to stop.
CANCEL_GRACE = 120.0
INTERRUPT_GRACE = 20.0


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
            each(job)
        if state in TERMINAL:
            return job
        if timeout is not None and elapsed >= timeout:
            state = cancel(cloud, kind, job)
            raise CiError(kind.timed_out(job, timeout, state))
        if time.monotonic() - last_beat >= s.heartbeat:
            cloud.log(f"[{elapsed:6.1f}s] still {state}{progress(job)}")
            last_beat = time.monotonic()
        pause = s.poll_seconds
        if timeout is not None:  # time out when asked, not up to a poll later
            pause = max(0.0, min(pause, timeout - elapsed))
        time.sleep(pause)
        job = kind.get(cloud, job)


def cancel(
    cloud: Cloud, kind: JobKind, job: dict, grace: float = CANCEL_GRACE, report: bool = True
) -> str:
    """Ask Vertex to cancel the job and wait up to ``grace`` seconds for it to end; its state.

    ``report`` logs the state it ended in (or still had when the grace ran out).
    """
    # After Ctrl-C a kept-alive connection may hold a half-sent request, and the cancel sent
    # on it would get that request's answer instead: cancel on a fresh connection.
    cloud.fresh_connections()
    api(kind.resource(cloud).cancel(name=job["name"], body={}), f"cancel {kind.noun}")
    cloud.log(f"cancelling {job['name']}")
    deadline = time.monotonic() + grace
    while job.get("state") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(cloud.settings.poll_seconds)
        job = kind.get(cloud, job)
    if report:
        cloud.log(f"{job['name']}: {job.get('state')}")
    return job.get("state", "")
