"""Fault injection: the emulator's table of pending faults, and the client helpers for it.

The admin API lives outside ``/v1/`` so no Google client can hit it by accident:

- ``POST /_emulator/faults`` with one of
  ``{"method": "predict", "status": 429, "count": 2}`` (the next 2 calls of a method answer
  429/503/...; ``method`` is a discovery id or a suffix of one: ``predict``,
  ``customJobs.create``, ``aiplatform.projects.locations.models.upload``),
  ``{"job": "fail", "count": 1, "message": "..."}`` (the next job created ends
  ``JOB_STATE_FAILED`` with that message, its module never runs),
  ``{"job": "delay", "state": "JOB_STATE_RUNNING", "seconds": 2, "count": 1}`` (the next
  job enters that state ``seconds`` late),
  ``{"operation": "delay", "seconds": 2, "count": 1}`` (the next long-running operation
  stays ``done: false`` that long);
- ``POST /_emulator/operations:release`` ends every such delay now (a test that must act
  while an operation runs holds it long, then lets it go instead of waiting it out);
- ``GET /_emulator/faults`` lists what is pending; ``DELETE /_emulator/faults`` clears it.
"""

from __future__ import annotations

import json
import threading
import urllib.request

from ci.emulator.httpd import STATUS_NAMES, ApiError

# The states a job can be made to enter late (PENDING is where every job starts).
JOB_STATES = ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")


class FaultTable:
    """Pending faults; each is consumed by the calls or jobs it applies to."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[dict] = []

    def add(self, spec: dict) -> dict:
        """Validate and queue one fault; raises ApiError 400 for a malformed spec."""
        spec = dict(spec)
        count = spec.setdefault("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ApiError(400, "count must be a positive integer")
        if "method" in spec:
            if spec.get("status") not in STATUS_NAMES or spec["status"] < 400:
                raise ApiError(400, f"status must be one of {sorted(STATUS_NAMES)}")
        elif spec.get("job") == "fail":
            spec.setdefault("message", "Injected failure (emulator fault injection).")
        elif spec.get("job") == "delay" or spec.get("operation") == "delay":
            if not isinstance(spec.get("seconds"), int | float) or spec["seconds"] < 0:
                raise ApiError(400, "seconds must be a non-negative number")
            if spec.get("job") and spec.get("state") not in JOB_STATES:
                raise ApiError(400, f"state must be one of {JOB_STATES}")
        else:
            raise ApiError(400, 'a fault needs "method", "job": fail|delay or "operation": delay')
        with self._lock:
            self._pending.append(spec)
        return spec

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._pending.clear()

    def listing(self) -> list[dict]:
        """Copies of the pending faults, with their remaining counts."""
        with self._lock:
            return [dict(f) for f in self._pending]

    def check_call(self, method_id: str) -> None:
        """Raise the injected error if one is pending for ``method_id``."""
        if not self._pending:  # the common case, without taking the lock
            return
        fault = self._take(
            lambda f: (
                "method" in f
                and (method_id == f["method"] or method_id.endswith("." + f["method"]))
            )
        )
        if fault:
            message = fault.get("message") or f"Injected {fault['status']} for {method_id}."
            raise ApiError(fault["status"], message)

    def take_job_faults(self) -> list[dict]:
        """The job faults that apply to the job being created now (at most one per kind)."""
        taken = [self._take(lambda f: f.get("job") == "fail")]
        for state in JOB_STATES:
            taken.append(self._take(lambda f, s=state: f.get("job") == "delay" and f["state"] == s))
        return [f for f in taken if f]

    def take_operation_delay(self) -> float:
        """Seconds the operation being created must stay not done (0 normally)."""
        fault = self._take(lambda f: f.get("operation") == "delay")
        return float(fault["seconds"]) if fault else 0.0

    def _take(self, predicate) -> dict | None:
        with self._lock:
            for fault in self._pending:
                if predicate(fault):
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self._pending.remove(fault)
                    return dict(fault)
        return None


# --- client helpers: what tests and the ``ci`` commands call -------------------------


def _admin(vertex_url: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        vertex_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read().decode()
        ctype = response.headers.get("Content-Type", "")
        return json.loads(payload) if ctype.startswith("application/json") else payload


def inject(vertex_url: str, method: str, status: int, count: int = 1, message=None) -> None:
    """Make the next ``count`` calls of ``method`` answer HTTP ``status`` (429, 503, ...)."""
    spec = {"method": method, "status": status, "count": count}
    if message:
        spec["message"] = message
    _admin(vertex_url, "POST", "/_emulator/faults", spec)


def fail_next_job(vertex_url: str, message: str | None = None, count: int = 1) -> None:
    """Make the next ``count`` custom jobs end ``JOB_STATE_FAILED`` without running."""
    spec = {"job": "fail", "count": count}
    if message:
        spec["message"] = message
    _admin(vertex_url, "POST", "/_emulator/faults", spec)


def delay_job_state(vertex_url: str, state: str, seconds: float, count: int = 1) -> None:
    """Make the next ``count`` jobs enter ``state`` ``seconds`` late."""
    spec = {"job": "delay", "state": state, "seconds": seconds, "count": count}
    _admin(vertex_url, "POST", "/_emulator/faults", spec)


def delay_operations(vertex_url: str, seconds: float, count: int = 1) -> None:
    """Keep the next ``count`` long-running operations ``done: false`` for ``seconds``."""
    spec = {"operation": "delay", "seconds": seconds, "count": count}
    _admin(vertex_url, "POST", "/_emulator/faults", spec)


def release_operations(vertex_url: str) -> int:
    """End the injected delays of the operations still held; how many there were."""
    return _admin(vertex_url, "POST", "/_emulator/operations:release", {})["released"]


def pending(vertex_url: str) -> list[dict]:
    """The faults not yet consumed."""
    return _admin(vertex_url, "GET", "/_emulator/faults")["faults"]


def clear(vertex_url: str) -> None:
    """Drop every pending fault (tests call this between cases)."""
    _admin(vertex_url, "DELETE", "/_emulator/faults")


def job_logs(vertex_url: str, job: str, tail: int | None = None) -> str:
    """The combined stdout/stderr of a job's replicas; ``job`` is its name or id."""
    query = f"?tail={tail}" if tail else ""
    return _admin(vertex_url, "GET", f"/_emulator/jobs/{job.rsplit('/', 1)[-1]}/logs{query}")
