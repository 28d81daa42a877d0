"""``python -m ci train``: submit a Vertex AI CustomJob at a scale tier and wait for it.

Waiting prints a line on each state change and a heartbeat with the elapsed time; a failed
job's error (Vertex puts the replicas' last error lines there) is printed as its log tail;
``--timeout`` cancels the job and fails. ``--tuning-config`` runs a tuning job instead
(``ci tune``), whose best trial's CustomJob is then the job it names (the workflow's switch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ci import flags, outputs, tiers, tuning_config
from ci import package as packaging
from ci.cloud import Cloud, connect
from ci.errors import CiError, Interrupted, UsageError
from ci.gate import scalars
from ci.job_wait import INTERRUPT_GRACE, SUCCEEDED, TERMINAL, JobKind, cancel, wait_until_done
from ci.settings import Settings, git_sha, resolve, tf_version
from ci.stage import Staged, check_local, check_sdist, data_hash, ensure_staged
from ci.vertex import job_dir, read_metrics


class _CustomJobs(JobKind):
    def timed_out(self, job: dict, timeout: float, state: str) -> str:
        done = "was cancelled" if state in TERMINAL else f"cancel was requested ({state})"
        return f"job {job['name']} timed out after {timeout:g}s and {done}"


JOBS = _CustomJobs("customJobs", "job")


@dataclass(frozen=True)
class TrainResult:
    """A finished job, its output directory and its metrics."""

    job: dict
    job_dir: str
    metrics: dict

    def outputs(self) -> dict:
        """The ``--outputs`` values of the finished job."""
        return {
            "job_name": self.job["name"],
            "job_id": self.job["name"].rsplit("/", 1)[-1],
            "job_dir": self.job_dir,
            "metrics": self.metrics,
        }

    def summary(self) -> str:
        """The step summary: which job, on how many replicas, and its accuracy."""
        pools = self.job.get("jobSpec", {}).get("workerPoolSpecs", [])
        replicas = sum(int(p.get("replicaCount", 1)) for p in pools)
        return (
            f"### Training job\n\n`{self.job['name']}` ({replicas} replica(s), "
            f"{self.metrics.get('train_steps', '?')} steps): "
            + (", ".join(f"{k} {v:.4g}" for k, v in scalars(self.metrics).items()) or "no metrics")
        )


def job_output(settings: Settings, display_name: str) -> str:
    """The job's ``baseOutputDirectory``; also its ``--job-dir`` (metrics.json goes there)."""
    return f"gs://{settings.bucket_name}/jobs/{display_name}"


def job_body(
    settings: Settings,
    pools: list[tiers.Pool],
    package_uri: str,
    trainer_args: list[str],
    display_name: str,
    labels: dict[str, str],
) -> dict:
    """The CustomJob resource (pure: everything it needs is passed in)."""
    gpu = any((p.accelerator or "").startswith("NVIDIA") for p in pools)
    image = settings.executor_image or tiers.executor_image(
        tf_version(settings), settings.region, gpu
    )
    package = {
        "executorImageUri": image,
        "packageUris": [package_uri],
        "pythonModule": settings.trainer_module,
        "args": trainer_args,
    }
    return {
        "displayName": display_name,
        "labels": labels,
        "jobSpec": {
            "workerPoolSpecs": tiers.worker_pool_specs(pools, package),
            "baseOutputDirectory": {"outputUriPrefix": job_output(settings, display_name)},
        },
    }


def wait(cloud: Cloud, job: dict, timeout: float | None) -> dict:
    """Poll until the job ends; a line per state change, a heartbeat, cancel on timeout.

    Ctrl-C or SIGTERM cancels the job (on Vertex AI it would keep running and billing),
    waits briefly for the cancel to take, and raises Interrupted (exit 130).
    """
    try:
        return wait_until_done(cloud, JOBS, job, timeout)
    except KeyboardInterrupt:
        cloud.log(f"interrupted: cancelling {job['name']}")
        try:
            state = cancel(cloud, JOBS, job, INTERRUPT_GRACE)
        except CiError as exc:
            raise Interrupted(f"interrupted; cancelling job {job['name']} failed: {exc}") from None
        done = "cancelled" if state in TERMINAL else "cancel requested"
        raise Interrupted(f"interrupted; job {job['name']} {done} ({state})") from None


def data_files(settings: Settings) -> list[str]:
    """The train and eval files (local or gs://); UsageError if ci.toml names no such pair."""
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    return [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]


def log_tail(cloud: Cloud, job: dict) -> str:
    """What a failed job said: its error message and where its full logs are."""
    message = job.get("error", {}).get("message", "(no error message)")
    job_id = job["name"].rsplit("/", 1)[-1]
    where = (
        f'full logs: Logs Explorer, resource.type="ml_job" resource.labels.job_id="{job_id}"'
        f" in project {cloud.settings.project_id}"
    )
    return f"--- log tail of job {job_id} ---\n{message.rstrip()}\n--- {where}"


def train(
    cloud: Cloud,
    pools: list[tiers.Pool],
    package: str,
    train_steps: int,
    timeout: float | None = None,
    extra_args: tuple[str, ...] = (),
    display_name: str | None = None,
    data: list[Staged] | None = None,
    on_submitted: Callable[[dict], object] | None = None,
) -> TrainResult:
    """Stage what is local, submit the job, wait; return the job, its output dir, its metrics.

    ``data`` is the staged (train, eval) pair when the caller staged it already;
    ``on_submitted(job)`` runs once the job is created, before the wait.
    """
    s = cloud.settings
    if data is None:
        data = [ensure_staged(cloud, f) for f in data_files(s)]
    package_uri = ensure_staged(cloud, package).uri
    display_name = display_name or f"{s.model_name}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    trainer_args = [
        *("--job-dir", job_output(s, display_name), "--train-steps", str(train_steps)),
        *("--train-file", data[0].uri, "--eval-file", data[1].uri),
        *extra_args,
    ]
    labels = {"data-hash": data_hash(data), "git-sha": git_sha(s)}
    body = job_body(s, pools, package_uri, trainer_args, display_name, labels)
    job = JOBS.submit(cloud, body)
    replicas = sum(p.replicas for p in pools)
    cloud.log(f"submitted {job['name']} ({replicas} replica(s), {train_steps} steps)")
    local_cap_note(cloud, replicas)
    if on_submitted is not None:
        on_submitted(job)
    job = wait(cloud, job, timeout)
    if job["state"] != SUCCEEDED:
        cloud.log(log_tail(cloud, job))
        last = (job.get("error", {}).get("message") or job["state"]).strip().splitlines()[-1]
        raise CiError(f"job {job['name']} ended {job['state']}: {last}")
    directory = job_dir(job)
    metrics = read_metrics(cloud, f"{directory}/metrics.json")
    return TrainResult(job, directory, metrics)


def local_cap_note(cloud: Cloud, replicas: int) -> None:
    """Say so when the embedded emulators run fewer local processes than replicas asked for."""
    if not cloud.settings.embedded:
        return
    from ci.emulator.replicas import LOCAL_REPLICA_LIMIT

    cap = min(cloud.settings.local_max_replicas or LOCAL_REPLICA_LIMIT, LOCAL_REPLICA_LIMIT)
    if replicas > cap:
        why = (
            f"setting local_max_replicas={cloud.settings.local_max_replicas}"
            if cloud.settings.local_max_replicas
            else f"the emulator's limit of {LOCAL_REPLICA_LIMIT} local processes a job"
        )
        cloud.log(f"note: {replicas} replicas asked for; {why} runs {cap} of them here")


def add_arguments(parser) -> None:
    """The job's flags, shared by ``train`` and ``pipeline``; steps and tier are settings."""
    parser.add_argument(
        "--timeout", type=flags.positive_float, help="seconds from submission; then cancel"
    )
    parser.add_argument(
        "--job-display-name", type=flags.display_name, help="default: MODEL-<UTC timestamp>"
    )
    parser.add_argument(
        "--parameter-server-count",
        type=flags.count,
        default=0,
        help="CUSTOM: refused with an explanation (all-reduce has no parameter servers)",
    )


def pools_for(settings: Settings, parameter_server_count: int = 0) -> list[tiers.Pool]:
    """The pools asked for by the ``scale_tier`` setting and CUSTOM's machine settings."""
    custom = tiers.Custom(
        settings.master_type,
        settings.worker_type,
        settings.worker_count or 0,
        parameter_server_count,
        settings.accelerator_type,
        settings.accelerator_count or 0,
    )
    return tiers.pools(settings.scale_tier.upper(), custom)


def main(argv: list[str]) -> int:
    ours, extra = flags.split_passthrough(argv)
    parser = flags.parser("train", __doc__)
    add_arguments(parser)
    parser.add_argument("--package", help="sdist path or gs:// URI (default: build --package-dir)")
    packaging.add_arguments(parser)
    parser.add_argument(
        "--tuning-config",
        default="",
        metavar="FILE",
        help="tune with this study instead (docs/tuning.md); job_name is the best trial's job",
    )
    args = parser.parse_args(ours)
    settings = resolve(args)
    study = tuning_config.load(Path(args.tuning_config)) if args.tuning_config else None
    pools = pools_for(settings, args.parameter_server_count)
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    data = [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]
    if args.package:  # what `ci stage` refuses is refused here, before anything is uploaded
        check_sdist(args.package)
    check_local(data)
    package = args.package
    if not package:
        package = str(packaging.build_sdist(Path(args.package_dir), Path(args.dist_dir)))
    if study:
        from ci import tune  # tune builds on this module

        with connect(settings) as cloud:
            tuned = tune.tune(cloud, study, pools, package, None, args.timeout, tuple(extra))
        print(tuned.candidate())
        outputs.write_outputs(args.outputs, tuned.candidate_outputs())
        outputs.write_summary(args.summary, tuned.summary(study.metric))
        return 0
    with connect(settings) as cloud:
        result = train(
            cloud,
            pools,
            package,
            settings.train_steps,
            args.timeout,
            tuple(extra),
            args.job_display_name,
        )
    print(f"metrics: {outputs.one_line(result.metrics)}")
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(args.summary, result.summary())
    return 0
