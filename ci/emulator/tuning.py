"""``projects.locations.hyperparameterTuningJobs``: create, get, list, cancel, delete.

Each trial is a real CustomJob (``trials[].customJob``) run by the :class:`JobRunner`: the
trial job spec with ``baseOutputDirectory`` ``<base>/<trial id>``, the trial's parameters
appended to every pool's args as ``--<parameterId>=<value>``, ``CLOUD_ML_TRIAL_ID`` and its
own ``CLOUD_ML_HP_METRIC_FILE``. The file the ``cloudml-hypertune`` library wrote gives the
final measurement. At most ``parallelTrialCount`` trials run at once.
"""

from __future__ import annotations

import threading

from ci.emulator import study as studies
from ci.emulator import trials
from ci.emulator.collection import JobCollection
from ci.emulator.faults import FaultTable, JobFaults
from ci.emulator.httpd import Request
from ci.emulator.jobs import ACTIVE, JobRunner
from ci.emulator.jobs_api import check_pools
from ci.emulator.operations import Operations
from ci.emulator.store import Store, now, public

KIND = "hyperparameterTuningJobs"
POLL_SECONDS = 0.1
# The most trials one tuning job runs at once here, whatever parallelTrialCount says: each
# trial is a CustomJob of local processes (see replicas.LOCAL_REPLICA_LIMIT).
LOCAL_PARALLEL_LIMIT = 8


class TuningJobs(JobCollection):
    """Handlers, and one thread per job that runs its trials."""

    kind, type_name = KIND, "HyperparameterTuningJob"

    def __init__(self, store: Store, runner: JobRunner, operations: Operations, faults: FaultTable):
        self.store, self.runner, self.operations = store, runner, operations
        self.faults = faults  # job faults of kind hyperparameterTuningJobs and trials
        self._stops: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        self._recover()

    def create(self, request: Request):
        """``hyperparameterTuningJobs.create``: check the study, store it, start its trials."""
        body = request.body
        try:
            studies.check(body)
        except studies.StudyError as exc:
            raise exc.api_error() from None
        check_pools(body["trialJobSpec"], "hyperparameter_tuning_job.trial_job_spec")
        job_id = self.store.new_id()
        created = now()
        job = {
            **body,
            "name": f"projects/{request.params['project']}/locations/"
            f"{request.params['location']}/hyperparameterTuningJobs/{job_id}",
            "state": "JOB_STATE_PENDING",
            "createTime": created,
            "updateTime": created,
            "_faults": self.faults.take_job_faults(KIND),
        }
        self.store.save(KIND, job_id, job)
        stop = self._stops[job_id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(job_id, stop), daemon=True)
        self._threads.append(thread)
        thread.start()
        return 200, public(job)

    def _stop(self, job: dict) -> None:
        self._stops[job["name"].rsplit("/", 1)[-1]].set()

    def shutdown(self) -> None:
        """Stop every job's trials (the emulator is exiting); no new trial starts."""
        self._shutdown = True
        for stop in self._stops.values():
            stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _recover(self) -> None:
        for job in self.store.all(KIND):
            if job["state"] in ACTIVE:
                message = "The emulator stopped while this job was running."
                self._finish(job["name"].rsplit("/", 1)[-1], "JOB_STATE_FAILED", 13, message)

    # --- the job thread ------------------------------------------------------------

    def _run(self, job_id: str, stop: threading.Event) -> None:
        try:
            self._trials(job_id, stop)
        except Exception as exc:
            # A bug here must not leave trials running with nobody watching them.
            started = self.store.get(KIND, job_id).get("trials", [])
            self._stop_trials({t["id"]: t["customJob"].rsplit("/", 1)[-1] for t in started})
            self._finish(job_id, "JOB_STATE_FAILED", 13, f"emulator error: {exc!r}")

    def _trials(self, job_id: str, stop: threading.Event) -> None:
        job = self.store.get(KIND, job_id)
        spec = job["studySpec"]
        study = studies.Study(spec)
        max_trials, parallel = int(job["maxTrialCount"]), int(job["parallelTrialCount"])
        max_failed = int(job.get("maxFailedTrialCount") or 0)
        if parallel > LOCAL_PARALLEL_LIMIT:
            self._note(
                job_id,
                f"emulator: parallelTrialCount {parallel} is more than the emulator's limit "
                f"of {LOCAL_PARALLEL_LIMIT} trials at once; it runs {LOCAL_PARALLEL_LIMIT}.",
            )
            parallel = LOCAL_PARALLEL_LIMIT
        injected = JobFaults(job.get("_faults", []), stop)
        if injected.held("JOB_STATE_RUNNING"):
            return self._finish(job_id, *self._stopped_by())
        self._update(job_id, state="JOB_STATE_RUNNING", startTime=now())
        if injected.failure:
            return self._end(job_id, injected, "JOB_STATE_FAILED", 3, injected.failure)
        if injected.hang:
            stop.wait()
            return self._finish(job_id, *self._stopped_by())
        running: dict[str, str] = {}  # trial id -> its CustomJob id
        started = failed = 0
        exhausted = False
        while True:
            while not stop.is_set() and not exhausted and len(running) < parallel:
                if started >= max_trials:
                    break
                params = study.suggest(started + 1)
                if params is None:
                    exhausted = True
                    break
                started += 1
                running[str(started)] = self._start_trial(job_id, job, str(started), params)
            if not running:
                break
            stop.wait(POLL_SECONDS)
            if stop.is_set():
                self._stop_trials(running)
            for trial_id, custom_id in list(running.items()):
                custom = self.store.get("customJobs", custom_id)
                if custom["state"] in ACTIVE:
                    continue
                del running[trial_id]
                value = self._end_trial(job_id, trial_id, custom, spec)
                study.tell(int(trial_id), value)
                failed += value is None and not stop.is_set()
            if max_failed and failed >= max_failed and not stop.is_set():
                self._stop_trials(running)
                self._drain(job_id, running, spec)
                return self._end(
                    job_id,
                    injected,
                    "JOB_STATE_FAILED",
                    9,
                    f"{failed} trials failed, as many as maxFailedTrialCount ({max_failed}). "
                    f"The last: {self._last_reason(job_id)}",
                )
        if stop.is_set():
            return self._finish(job_id, *self._stopped_by())
        ended = self.store.get(KIND, job_id).get("trials", [])
        if not any(t["state"] == "SUCCEEDED" for t in ended):
            return self._end(
                job_id,
                injected,
                "JOB_STATE_FAILED",
                9,
                f"All {len(ended)} trials failed. The last: {self._last_reason(job_id)}",
            )
        self._end(job_id, injected, "JOB_STATE_SUCCEEDED")

    def _stopped_by(self) -> tuple[str, int, str]:
        """The final state, code and message of a job whose stop event was set."""
        if self._shutdown:
            return "JOB_STATE_FAILED", 13, "The emulator was shut down while this job was running."
        return "JOB_STATE_CANCELLED", 1, "Job was cancelled."

    def _end(self, job_id: str, injected: JobFaults, state: str, code=0, message="") -> None:
        """Finish in ``state``, after its injected delay; a cancel during it wins."""
        if injected.held(state):
            return self._finish(job_id, *self._stopped_by())
        self._finish(job_id, state, code, message)

    def _note(self, job_id: str, line: str) -> None:
        """A line in ``<state-dir>/vertex/jobs/<tuning job id>/logs/emulator.log``."""
        log_dir = self.store.job_dir(job_id) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "emulator.log", "a") as log:
            log.write(line + "\n")

    def _start_trial(self, job_id: str, job: dict, trial_id: str, params: dict) -> str:
        custom_id = self.store.new_id()
        metrics_dir = self.store.job_dir(custom_id) / "hypertune"
        job_spec = trials.job_spec(job["trialJobSpec"], trial_id, params, metrics_dir)
        name = job["name"].rsplit("/hyperparameterTuningJobs/", 1)[0] + f"/customJobs/{custom_id}"
        created = now()
        custom = {
            "name": name,
            "displayName": f"{job['displayName']}-trial-{trial_id}",
            "jobSpec": job_spec,
            "labels": dict(job.get("labels", {})),
            "state": "JOB_STATE_PENDING",
            "createTime": created,
            "updateTime": created,
            "_faults": self.faults.take_job_faults("trials", trial_id),
        }
        self.store.save("customJobs", custom_id, custom)
        trial = {
            "id": trial_id,
            "state": "ACTIVE",
            "parameters": [{"parameterId": k, "value": v} for k, v in params.items()],
            "startTime": created,
            "customJob": name,
        }
        with self.store.lock:
            record = self.store.get(KIND, job_id)
            record.setdefault("trials", []).append(trial)
            self._update(job_id)
        self.runner.submit(custom_id)
        return custom_id

    def _stop_trials(self, running: dict[str, str]) -> None:
        for custom_id in running.values():
            with self.store.lock:
                custom = self.store.get("customJobs", custom_id)
                if custom["state"] in ACTIVE and custom["state"] != "JOB_STATE_CANCELLING":
                    custom.update(state="JOB_STATE_CANCELLING", updateTime=now())
                    self.store.save("customJobs", custom_id, custom)
            self.runner.cancel(custom_id)

    def _drain(self, job_id: str, running: dict[str, str], spec: dict) -> None:
        """Wait for stopped trials' jobs to end and record them."""
        while running:
            for trial_id, custom_id in list(running.items()):
                custom = self.store.get("customJobs", custom_id)
                if custom["state"] not in ACTIVE:
                    del running[trial_id]
                    self._end_trial(job_id, trial_id, custom, spec)
            threading.Event().wait(POLL_SECONDS)

    def _end_trial(self, job_id: str, trial_id: str, custom: dict, spec: dict) -> float | None:
        """Record a finished trial; its objective value, or None if it failed."""
        metric_file = self.store.job_dir(custom["name"].rsplit("/", 1)[-1]) / "hypertune"
        found = trials.reports(metric_file / trials.METRIC_FILE, spec["metrics"][0]["metricId"])
        update, value = trials.outcome(custom, found, spec)
        update["endTime"] = now()
        with self.store.lock:
            record = self.store.get(KIND, job_id)
            next(t for t in record["trials"] if t["id"] == trial_id).update(update)
            self._update(job_id)
        return value

    def _last_reason(self, job_id: str) -> str:
        ended = self.store.get(KIND, job_id).get("trials", [])
        failed = [t for t in ended if t["state"] == "INFEASIBLE"]
        return failed[-1].get("infeasibleReason", "") if failed else ""

    def _update(self, job_id: str, **fields) -> None:
        with self.store.lock:
            job = self.store.get(KIND, job_id)
            if (
                job["state"] == "JOB_STATE_CANCELLING"
                and fields.get("state") == "JOB_STATE_RUNNING"
            ):
                fields["state"] = "JOB_STATE_CANCELLING"  # a cancel arrived first
            job.update(updateTime=now(), **fields)
            self.store.save(KIND, job_id, job)

    def _finish(self, job_id: str, state: str, code: int = 0, message: str = "") -> None:
        with self.store.lock:
            job = self.store.get(KIND, job_id)
            for trial in job.get("trials", []):
                if trial["state"] == "ACTIVE":  # stopped with the job
                    trial.update(state="INFEASIBLE", infeasibleReason=message, endTime=now())
            extra = {"error": {"code": code, "message": message}} if code else {}
            self._update(job_id, state=state, endTime=now(), **extra)
