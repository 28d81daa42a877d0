"""Fault injection: the emulator's table of pending faults, and the client helpers for it.

The admin API lives outside ``/v1/`` so no Google client can hit it by accident:

- ``POST /_emulator/faults`` (on the Vertex port: one API for both servers) with one of
  ``{"method": "predict", "status": 429, "count": 2}`` (the next 2 calls of a method answer
  429/503/... before doing anything; ``method`` is a discovery id or a suffix of one:
  ``predict``, ``customJobs.create``, ``aiplatform.projects.locations.models.upload``, and
  for the storage emulator ``storage.objects.insert`` or ``objects.insert``),
  ``{"method": ..., "status": 503, "after": true}`` (the call is carried out, then answered
  with that error instead of its result: an answer lost on the way back),
  ``{"method": ..., "drop": true}`` (the connection closes without an answer, nothing done)
  and ``{"method": ..., "drop": true, "after": true}`` (carried out, then the connection
  closes unanswered),
  ``{"job": "fail", "count": 1, "message": "..."}`` (the next job created ends
  ``JOB_STATE_FAILED`` with that message, its module never runs),
  ``{"job": "delay", "state": "JOB_STATE_RUNNING", "seconds": 2, "count": 1}`` (the next
  job enters that state ``seconds`` late),
  ``{"job": "hang"}`` (the next job enters ``JOB_STATE_RUNNING`` and stays there, doing
  nothing, until it is cancelled or its ``scheduling.timeout`` ends it),
  each job fault with an optional ``"kind"``: ``customJobs`` (the default: a CustomJob,
  or a training pipeline's backing one), ``hyperparameterTuningJobs``,
  ``batchPredictionJobs`` or ``trials`` (a tuning job's trial, optionally only the one with
  ``"trial": "2"``),
  ``{"operation": "delay", "seconds": 2, "count": 1}`` (the next long-running operation
  stays ``done: false`` that long);
- ``POST /_emulator/operations:release`` ends every such delay now (a test that must act
  while an operation runs holds it long, then lets it go instead of waiting it out);
- ``GET /_emulator/faults`` lists what is pending; ``DELETE /_emulator/faults`` clears it
  (storage faults too: they live in the same table).
"""

from __future__ import annotations

import json
import threading
import urllib.request

from ci.emulator.httpd import STATUS_NAMES, ApiError, DropConnection

# The states a job can be made to enter late (PENDING is where every job starts).
JOB_STATES = ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
# What a job fault does: end FAILED without running, enter a state late, or stay RUNNING
# (doing nothing) until cancelled.
JOB_FAULTS = ("fail", "delay", "hang")
# The jobs a job fault may target ("kind"); customJobs when it names none, as before kinds.
JOB_KINDS = ("customJobs", "hyperparameterTuningJobs", "batchPredictionJobs", "trials")
DEFAULT_JOB_KIND = "customJobs"
# The boolean fields of a method fault.
METHOD_FLAGS = ("after", "drop")


class FaultTable:
    """Pending faults; each is consumed by the calls or jobs it applies to."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[dict] = []

    def add(self, spec: dict) -> dict:
        """Validate and queue one fault; raises ApiError 400 for a malformed spec."""
        spec = dict(spec)
        count = spec.setdefault("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ApiError(400, "count must be a positive integer")
        if "method" in spec:
            _check_method_fault(spec)
        elif spec.get("job") in JOB_FAULTS:
            _check_job_fault(spec)
        elif spec.get("operation") == "delay":
            _check_seconds(spec)
        else:
            raise ApiError(
                400, 'a fault needs "method", "job": fail|delay|hang or "operation": delay'
            )
        with self._lock:
            self._pending.append(spec)
        return spec

    def clear(self) -> None:
        """Drop every pending fault (Vertex's and storage's alike)."""
        with self._lock:
            self._pending.clear()

    def listing(self) -> list[dict]:
        """Copies of the pending faults, with their remaining counts."""
        with self._lock:
            return [dict(f) for f in self._pending]

    def take_call(self, method_id: str, after: bool = False) -> dict | None:
        """The method fault pending for ``method_id`` that applies before the call acts
        (``after`` False) or once it has acted (True), consumed; None when there is none."""
        if not self._pending:  # the common case, without taking the lock
            return None
        return self._take(
            lambda f: (
                "method" in f
                and bool(f.get("after")) == after
                and (method_id == f["method"] or method_id.endswith("." + f["method"]))
            )
        )

    def check_call(self, method_id: str, after: bool = False) -> None:
        """Raise the injected error (ApiError, or DropConnection for ``drop``) if one is
        pending for ``method_id`` at this point of the call (before or after it acted)."""
        fault = self.take_call(method_id, after)
        if fault:
            raise fault_error(fault, method_id)

    def take_job_faults(self, kind: str = DEFAULT_JOB_KIND, trial: str | None = None) -> list:
        """The job faults that apply to the job of ``kind`` being created now (at most one
        per effect and state); ``trial`` is the trial id of a tuning job's trial."""

        def mine(fault: dict) -> bool:
            if fault.get("kind", DEFAULT_JOB_KIND) != kind:
                return False
            wanted = fault.get("trial")
            return wanted is None or str(wanted) == str(trial)

        taken = [self._take(lambda f: mine(f) and f.get("job") in ("fail", "hang"))]
        for state in JOB_STATES:
            taken.append(
                self._take(
                    lambda f, s=state: mine(f) and f.get("job") == "delay" and f["state"] == s
                )
            )
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


class JobFaults:
    """The job faults a tuning or batch prediction job was created with, for its thread,
    and its stop event (a cancel ends an injected wait at once)."""

    def __init__(self, faults: list[dict], stop: threading.Event):
        self.stop = stop
        self.delays = {f["state"]: f["seconds"] for f in faults if f.get("job") == "delay"}
        self.failure = next((f["message"] for f in faults if f.get("job") == "fail"), None)
        self.hang = any(f.get("job") == "hang" for f in faults)

    def held(self, state: str) -> bool:
        """Wait out the injected delay before ``state``; True if the job was stopped
        meanwhile (or before)."""
        return self.stop.wait(self.delays.get(state, 0))


def fault_error(fault: dict, method_id: str) -> Exception:
    """What an injected method fault raises: DropConnection, or the ApiError it answers."""
    if fault.get("drop"):
        return DropConnection(method_id)
    message = fault.get("message") or f"Injected {fault['status']} for {method_id}."
    return ApiError(fault["status"], message)


def _check_method_fault(spec: dict) -> None:
    """400 unless ``spec`` is a method fault: a status, or ``drop``, never both."""
    if not isinstance(spec["method"], str) or not spec["method"]:
        raise ApiError(400, "method must be a discovery method id or a suffix of one")
    for flag in METHOD_FLAGS:
        if not isinstance(spec.get(flag, False), bool):
            raise ApiError(400, f"{flag} must be true or false")
    if spec.get("drop"):
        if "status" in spec:
            raise ApiError(400, "a fault with drop closes the connection: it takes no status")
        return
    if spec.get("status") not in STATUS_NAMES or spec["status"] < 400:
        raise ApiError(400, f"status must be one of {sorted(STATUS_NAMES)} (or drop: true)")


def _check_job_fault(spec: dict) -> None:
    """400 unless ``spec`` is a job fault for a known kind, with what its effect needs."""
    kind = spec.setdefault("kind", DEFAULT_JOB_KIND)
    if kind not in JOB_KINDS:
        raise ApiError(400, f"kind must be one of {JOB_KINDS}")
    if "trial" in spec:
        if kind != "trials":
            raise ApiError(400, 'trial applies to kind "trials" only')
        if not str(spec["trial"]).isdigit():
            raise ApiError(400, 'trial must be a trial id ("1", "2", ...)')
        spec["trial"] = str(spec["trial"])
    if spec["job"] == "fail":
        spec.setdefault("message", "Injected failure (emulator fault injection).")
    elif spec["job"] == "delay":
        _check_seconds(spec)
        if spec.get("state") not in JOB_STATES:
            raise ApiError(400, f"state must be one of {JOB_STATES}")


def _check_seconds(spec: dict) -> None:
    seconds = spec.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise ApiError(400, "seconds must be a non-negative number")


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


def _post(vertex_url: str, spec: dict) -> dict:
    """Queue one fault; the emulator's normalised copy of it."""
    return _admin(vertex_url, "POST", "/_emulator/faults", spec)


def inject(vertex_url: str, method: str, status: int, count: int = 1, message=None) -> None:
    """Make the next ``count`` calls of ``method`` answer HTTP ``status`` (429, 503, ...)
    before doing anything. Storage methods too: ``objects.insert``, ``buckets.get``."""
    spec = {"method": method, "status": status, "count": count}
    if message:
        spec["message"] = message
    _post(vertex_url, spec)


def answer_error_after(
    vertex_url: str, method: str, status: int, count: int = 1, message=None
) -> None:
    """Let the next ``count`` calls of ``method`` act, then answer HTTP ``status`` instead
    of their result (the resource exists; the client hears it failed)."""
    spec = {"method": method, "status": status, "count": count, "after": True}
    if message:
        spec["message"] = message
    _post(vertex_url, spec)


def drop_connection(vertex_url: str, method: str, count: int = 1, after: bool = False) -> None:
    """Close the connection of the next ``count`` calls of ``method`` without an answer:
    before they act (nothing done), or with ``after`` once they have (an answer lost)."""
    _post(vertex_url, {"method": method, "drop": True, "after": after, "count": count})


def _job_fault(kind: str, trial) -> dict:
    spec = {"kind": kind}
    if trial is not None:
        spec["trial"] = str(trial)
    return spec


def fail_next_job(
    vertex_url: str,
    message: str | None = None,
    count: int = 1,
    kind: str = DEFAULT_JOB_KIND,
    trial=None,
) -> None:
    """Make the next ``count`` jobs of ``kind`` (customJobs, hyperparameterTuningJobs,
    batchPredictionJobs, trials: optionally only trial ``trial``) end ``JOB_STATE_FAILED``
    (a trial ``INFEASIBLE``) without running."""
    spec = {"job": "fail", "count": count, **_job_fault(kind, trial)}
    if message:
        spec["message"] = message
    _post(vertex_url, spec)


def delay_job_state(
    vertex_url: str,
    state: str,
    seconds: float,
    count: int = 1,
    kind: str = DEFAULT_JOB_KIND,
    trial=None,
) -> None:
    """Make the next ``count`` jobs of ``kind`` enter ``state`` ``seconds`` late."""
    spec = {"job": "delay", "state": state, "seconds": seconds, "count": count}
    _post(vertex_url, {**spec, **_job_fault(kind, trial)})


def hang_next_job(
    vertex_url: str, count: int = 1, kind: str = DEFAULT_JOB_KIND, trial=None
) -> None:
    """Make the next ``count`` jobs of ``kind`` stay ``JOB_STATE_RUNNING``, doing nothing,
    until cancelled (or, for a custom job or trial, until its ``scheduling.timeout``)."""
    _post(vertex_url, {"job": "hang", "count": count, **_job_fault(kind, trial)})


def delay_operations(vertex_url: str, seconds: float, count: int = 1) -> None:
    """Keep the next ``count`` long-running operations ``done: false`` for ``seconds``."""
    spec = {"operation": "delay", "seconds": seconds, "count": count}
    _post(vertex_url, spec)


def release_operations(vertex_url: str) -> int:
    """End the injected delays of the operations still held; how many there were."""
    return _admin(vertex_url, "POST", "/_emulator/operations:release", {})["released"]


def pending(vertex_url: str) -> list[dict]:
    """The faults not yet consumed (Vertex's and storage's)."""
    return _admin(vertex_url, "GET", "/_emulator/faults")["faults"]


def clear(vertex_url: str) -> None:
    """Drop every pending fault, storage's too (tests call this between cases)."""
    _admin(vertex_url, "DELETE", "/_emulator/faults")


def job_logs(vertex_url: str, job: str, tail: int | None = None) -> str:
    """The combined stdout/stderr of a job's replicas; ``job`` is its name or id."""
    query = f"?tail={tail}" if tail else ""
    return _admin(vertex_url, "GET", f"/_emulator/jobs/{job.rsplit('/', 1)[-1]}/logs{query}")
