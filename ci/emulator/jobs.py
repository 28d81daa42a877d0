"""Running CustomJobs for real: fetch the package, one process per replica, watch, cancel.

Each job gets a thread that walks it through PENDING → RUNNING → SUCCEEDED / FAILED /
CANCELLED. Replicas run ``sys.executable -m <pythonModule> <args>`` in their own process
group (so cancel can kill whatever they spawned) with stdout and stderr in
``<state-dir>/vertex/jobs/<id>/logs/<replica>.log``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ci.emulator import packages, replicas
from ci.emulator.store import Store, now

ACTIVE = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")
TAIL_LINES = 20
GRACE_SECONDS = 5
# All jobs together run at most this many times the processes one job may start
# (replicas.LOCAL_REPLICA_LIMIT, or --max-local-replicas below it). A job whose replicas do
# not fit waits PENDING for room (as a Vertex job waits for its quota), so a flood of jobs
# or trials cannot exhaust the machine either; one job alone always fits.
JOBS_AT_FULL_SIZE = 2
# google.protobuf.Duration in JSON: seconds with up to 9 decimals and an "s"; at most
# 10,000 years either way.
_DURATION = re.compile(r"^(-?)(\d{1,12})(?:\.(\d{1,9}))?s$")
MAX_DURATION_SECONDS = 315_576_000_000


def duration_seconds(text) -> float:
    """A Duration's seconds (``"3600s"``, ``"1.5s"``); ValueError for anything else."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match[2]) > MAX_DURATION_SECONDS:
        raise ValueError(f'{text!r} is not a duration such as "3600s" or "1.5s"')
    seconds = int(match[2]) + float(f"0.{match[3] or 0}")
    return -seconds if match[1] else seconds


class JobFailed(Exception):
    """Ends a job ``JOB_STATE_FAILED`` with this message (and google.rpc ``code``)."""

    def __init__(self, message: str, code: int = 3):
        super().__init__(message)
        self.code = code


class _Live:
    """A job being run: its processes and the queue its watcher threads report to."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self.reason = "cancel"  # or "shutdown": decides CANCELLED vs FAILED
        self.procs: dict[str, subprocess.Popen] = {}


class JobRunner:
    """Starts, watches and cancels job processes; state changes go through the store."""

    def __init__(
        self,
        store: Store,
        storage_url: str,
        read_object: packages.ReadObject,
        max_local_replicas: int | None = None,
    ):
        self.store = store
        self.storage_url = storage_url  # the jobs' processes talk to it
        self.read_object = read_object  # this process reads packages directly
        self.max_local_replicas = max_local_replicas
        self._live: dict[str, _Live] = {}
        self._threads: list[threading.Thread] = []
        self._room = threading.Condition()  # guards _busy: processes started and not ended
        self._busy = 0
        per_job = replicas.LOCAL_REPLICA_LIMIT
        if max_local_replicas is not None:
            per_job = max(1, min(max_local_replicas, per_job))
        self.process_limit = JOBS_AT_FULL_SIZE * per_job
        # Called as listener(job_id, job) once a job reached its final state (pipelines).
        self.listeners: list = []
        # Called as hook(job_id) once a job's processes have started.
        self.on_running: list = []

    def submit(self, job_id: str) -> None:
        """Run the (already stored, PENDING) job in the background."""
        live = self._live[job_id] = _Live()
        thread = threading.Thread(target=self._run, args=(job_id, live), daemon=True)
        self._threads.append(thread)
        thread.start()

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop; its thread kills the processes and records CANCELLED."""
        live = self._live.get(job_id)
        if live:
            live.cancelled.set()
            live.events.put(None)
            with self._room:
                self._room.notify_all()  # a job waiting for room stops waiting

    def shutdown(self) -> None:
        """Stop every running job (the emulator is exiting) and wait for their threads."""
        for live in list(self._live.values()):
            live.reason = "shutdown"
            live.cancelled.set()
            live.events.put(None)
        with self._room:
            self._room.notify_all()
        for thread in self._threads:
            thread.join(timeout=GRACE_SECONDS + 5)

    def recover(self) -> None:
        """Fail jobs that were active when a previous emulator process died."""
        for job in self.store.all("customJobs"):
            if job["state"] in ACTIVE:
                job_id = job["name"].rsplit("/", 1)[-1]
                _kill_orphans(job_id, job.get("_pids", []))
                self._finish(
                    job_id,
                    "JOB_STATE_FAILED",
                    13,
                    f"The emulator stopped while this job was {job['state']}; it was marked "
                    "failed when the emulator restarted and its processes were stopped.",
                )

    # --- the job thread ------------------------------------------------------------

    def _run(self, job_id: str, live: _Live) -> None:
        job = self.store.get("customJobs", job_id)
        injected = job.get("_faults", [])
        delays = {f["state"]: f["seconds"] for f in injected if f.get("job") == "delay"}
        failure = next((f["message"] for f in injected if f.get("job") == "fail"), None)
        hang = any(f.get("job") == "hang" for f in injected)
        log_dir = self.store.job_dir(job_id) / "logs"
        reserved = 0
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            spec = job["jobSpec"]
            try:
                paths = packages.fetch(
                    spec["workerPoolSpecs"], self.store.job_dir(job_id), self.read_object
                )
            except packages.PackageError as exc:
                raise JobFailed(str(exc)) from None
            unmet = packages.unmet_requirements(p for roots in paths.values() for p in roots)
            plan, notes = replicas.plan(spec["workerPoolSpecs"], self.max_local_replicas)
            (log_dir / "emulator.log").write_text("".join(n + "\n" for n in [*unmet, *notes]))
            reserved = self._reserve(len(plan), live, log_dir)
            if not reserved:
                return self._stopped(job_id, live)
            if live.cancelled.wait(delays.get("JOB_STATE_RUNNING", 0)):
                return self._stopped(job_id, live)
            if failure:
                self._state(job_id, "JOB_STATE_RUNNING")
                raise JobFailed(failure)
            if hang:
                return self._hang(job_id, live, _timeout(spec))
            for replica in plan:
                self._spawn(job_id, job, replica, plan, paths, live, log_dir)
            self._state(job_id, "JOB_STATE_RUNNING", _pids=[p.pid for p in live.procs.values()])
            for hook in self.on_running:
                hook(job_id)
            try:
                self._watch(job_id, plan, live, log_dir, _timeout(spec))
            except JobFailed as exc:
                if not unmet:
                    raise
                # The likely cause of an ImportError: say it with the failure.
                raise JobFailed("\n".join([str(exc), *unmet]), exc.code) from None
            final = "JOB_STATE_SUCCEEDED"
            if live.cancelled.wait(delays.get(final, 0)):
                return self._stopped(job_id, live)
            self._finish(job_id, final)
        except JobFailed as exc:
            _kill_all(live)
            live.cancelled.wait(delays.get("JOB_STATE_FAILED", 0))
            self._finish(job_id, "JOB_STATE_FAILED", exc.code, str(exc))
        except _Stop:
            self._stopped(job_id, live)
        except Exception as exc:
            _kill_all(live)
            self._finish(job_id, "JOB_STATE_FAILED", 13, f"emulator error: {exc!r}")
        finally:
            self._live.pop(job_id, None)
            if reserved:
                with self._room:
                    self._busy -= reserved
                    self._room.notify_all()

    def _reserve(self, count: int, live: _Live, log_dir: Path) -> int:
        """Wait until ``count`` more processes fit under ``process_limit``, then count them
        as started; ``count``, or 0 when the job was cancelled while it waited."""
        with self._room:
            if self._busy + count > self.process_limit:
                with open(log_dir / "emulator.log", "a") as log:
                    log.write(
                        f"emulator: {self._busy} local processes are running; this job's "
                        f"{count} wait for room under the limit of {self.process_limit}.\n"
                    )
            while self._busy + count > self.process_limit:
                if live.cancelled.is_set():
                    return 0
                self._room.wait(1.0)
            if live.cancelled.is_set():
                return 0
            self._busy += count
            return count

    def _spawn(self, job_id, job, replica, plan, paths, live, log_dir) -> None:
        pool_spec = job["jobSpec"]["workerPoolSpecs"][replica.pool]["pythonPackageSpec"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update({e["name"]: e.get("value", "") for e in pool_spec.get("env", [])})
        env.update(replicas.output_env(job["jobSpec"]))
        trial = env.get("CLOUD_ML_TRIAL_ID")  # set by the tuning job for its trials
        env.update(replicas.cluster_env(plan, replica, job["jobSpec"], trial))
        env.update(
            PYTHONPATH=os.pathsep.join(map(str, paths[replica.pool])),
            CLOUD_ML_JOB_ID=job_id,
            STORAGE_EMULATOR_HOST=self.storage_url,
            TF_CPP_MIN_LOG_LEVEL="2",
            TF_ENABLE_ONEDNN_OPTS="0",
            PYTHONUNBUFFERED="1",
        )
        workdir = self.store.job_dir(job_id) / "work" / replica.name
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", pool_spec["pythonModule"], *pool_spec.get("args", [])]
        with open(log_dir / f"{replica.name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel kills its children too
            )
        live.procs[replica.name] = proc
        threading.Thread(
            target=lambda: live.events.put((replica, proc.wait())), daemon=True
        ).start()

    def _watch(self, job_id, plan, live: _Live, log_dir: Path, timeout: float | None) -> None:
        # Parameter servers never finish on their own: the job is done when the others are.
        waiting = {r.name for r in plan if r.task_type != "ps"}
        deadline = None if timeout is None else time.monotonic() + timeout
        while waiting:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                event = live.events.get(timeout=left)
            except queue.Empty:
                raise _timed_out(timeout) from None
            if event is None:
                raise _Stop()
            replica, code = event
            if code != 0 and not live.cancelled.is_set():
                tail = _tail(log_dir / f"{replica.name}.log")
                raise JobFailed(
                    f"The replica {replica.name} exited with a non-zero status of {code}. "
                    f"Last lines of its log:\n{tail}"
                )
            waiting.discard(replica.name)
        _kill_all(live)

    def _hang(self, job_id: str, live: _Live, timeout: float | None) -> None:
        """An injected hang: RUNNING, running nothing, until a cancel (or shutdown) or the
        job's ``scheduling.timeout``, as a module that never returns would be."""
        self._state(job_id, "JOB_STATE_RUNNING")
        if live.cancelled.wait(timeout):
            return self._stopped(job_id, live)
        raise _timed_out(timeout)

    def _stopped(self, job_id: str, live: _Live) -> None:
        _kill_all(live)
        if live.reason == "shutdown":
            message = "The emulator was shut down while this job was running."
            return self._finish(job_id, "JOB_STATE_FAILED", 13, message)
        self._finish(job_id, "JOB_STATE_CANCELLED", 1, "CustomJob was cancelled.")

    def _state(self, job_id: str, state: str, **extra) -> None:
        with self.store.lock:
            job = self.store.get("customJobs", job_id)
            if job["state"] == "JOB_STATE_CANCELLING" and state == "JOB_STATE_RUNNING":
                state = "JOB_STATE_CANCELLING"  # a cancel arrived first: don't flip back
            job.update(state=state, updateTime=now(), **extra)
            if state == "JOB_STATE_RUNNING":
                job.setdefault("startTime", job["updateTime"])
            self.store.save("customJobs", job_id, job)

    def _finish(self, job_id: str, state: str, code: int = 0, message: str = "") -> None:
        with self.store.lock:
            job = self.store.get("customJobs", job_id)
            stamp = now()
            job.update(state=state, updateTime=stamp, endTime=stamp)
            if code:
                job["error"] = {"code": code, "message": message}
            self.store.save("customJobs", job_id, job)
        for listener in self.listeners:
            listener(job_id, job)


class _Stop(Exception):
    """Cancel or shutdown interrupted the job."""


def _timed_out(timeout: float) -> JobFailed:
    """The failure of a job that ran past its ``scheduling.timeout``."""
    return JobFailed(
        f"The job ran longer than its scheduling.timeout ({timeout:g}s) and was "
        "stopped: a job that exceeds its timeout ends JOB_STATE_FAILED.",
        code=4,  # DEADLINE_EXCEEDED
    )


def _timeout(job_spec: dict) -> float | None:
    """``scheduling.timeout`` in seconds (checked at create), or None: Vertex's default is
    7 days, longer than any local run."""
    text = (job_spec.get("scheduling") or {}).get("timeout")
    return duration_seconds(text) if text else None


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _kill_all(live: _Live) -> None:
    """SIGTERM every replica's process group, then SIGKILL what is left after a grace."""
    procs = [p for p in live.procs.values() if p.poll() is None]
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE_SECONDS)
    # Also the groups of replicas that exited: their children may still be alive.
    for proc in live.procs.values():
        _signal_group(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_orphans(job_id: str, pids: list[int]) -> None:
    """Kill process groups left by a dead emulator, if they still belong to this job."""
    marker = f"CLOUD_ML_JOB_ID={job_id}".encode()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone already (or no /proc: nothing we can check safely)
        if marker in environ:
            _signal_group(pid, signal.SIGKILL)
