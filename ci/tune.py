"""``python -m ci tune``: a Vertex AI hyperparameter tuning job from ``tuning.toml``.

The study is checked offline first. Each trial is a training job of the trainer package with
the trial's parameters appended as flags; it reports the metric with cloudml-hypertune and
exports to ``<base>/<trial id>/model``. Waiting prints one line per finished trial (its
parameters, its metric, the best so far); ``--timeout`` and Ctrl-C cancel the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ci import flags, job_wait, outputs, tiers, train, tuning_config
from ci.cloud import Cloud, connect
from ci.errors import CiError, UsageError
from ci.inputs import input_file
from ci.package import add_arguments as package_arguments
from ci.package import build_sdist
from ci.settings import git_sha, resolve
from ci.stage import Staged, check_local, check_sdist, data_hash, ensure_staged
from ci.tuning_config import TuningConfig

FINISHED_TRIAL = ("SUCCEEDED", "INFEASIBLE")
JOBS = job_wait.JobKind("hyperparameterTuningJobs", "tuning job")


@dataclass(frozen=True)
class TuneResult:
    """A finished tuning job and its best trial."""

    job: dict
    best: dict
    params: dict
    value: float
    trial_dir: str

    def labels(self) -> dict[str, str]:
        """Labels naming the tuning job and trial, for the version promoted from it."""
        return {"tuning-job": self.job["name"].rsplit("/", 1)[-1], "tuning-trial": self.best["id"]}

    def outputs(self) -> dict:
        """The ``--outputs`` values."""
        return {
            "job_name": self.job["name"],
            "best_trial": self.best["id"],
            "best_params": self.params,
            "best_metric": self.value,
            "best_trial_dir": self.trial_dir,
            "best_trial_job": self.best.get("customJob", ""),
            # For `ci promote --labels` (the workflow): what `pipeline --tune` labels with.
            "version_labels": self.labels(),
        }

    def candidate(self) -> str:
        """The line that names the candidate: the best trial and its CustomJob."""
        return f"best trial {self.best['id']}: {self.best['customJob']}"

    def candidate_outputs(self) -> dict:
        """``ci train --tuning-config``'s outputs: ``job_name`` is the best trial's CustomJob,
        the candidate that gate, report and promote take; ``tuning_job`` is the tuning job."""
        return {
            **self.outputs(),
            "job_name": self.best["customJob"],
            "tuning_job": self.job["name"],
        }

    def summary(self, metric: str) -> str:
        """The step summary: the tuning job and its best trial."""
        return (
            f"### Tuning job\n\n`{self.job['name']}`: best trial {self.best['id']} "
            f"({metric} {self.value:.4g}) with `{outputs.one_line(self.params)}`"
        )


def _value(trial: dict) -> float:
    return trial["finalMeasurement"]["metrics"][0]["value"]


def best_trial(trials: list[dict], goal: str) -> dict | None:
    """The best succeeded trial (the first of equals), or None."""
    done = [t for t in trials if t.get("state") == "SUCCEEDED" and t.get("finalMeasurement")]
    if not done:
        return None
    pick = max if goal == "MAXIMIZE" else min
    return pick(done, key=_value)


def params_of(trial: dict) -> dict:
    """``{parameterId: value}`` of a trial."""
    return {p["parameterId"]: p["value"] for p in trial.get("parameters", [])}


def trial_line(trial: dict, best: dict | None, metric: str) -> str:
    """The progress line of a finished trial."""
    params = " ".join(f"{k}={v}" for k, v in params_of(trial).items())
    if trial["state"] == "SUCCEEDED":
        result = f"{metric}={_value(trial):.4g}"
    else:
        reason = (trial.get("infeasibleReason") or "").strip().splitlines()
        result = f"failed ({reason[-1] if reason else 'no reason given'})"
    so_far = f"trial {best['id']}, {metric}={_value(best):.4g}" if best else "none yet"
    return f"trial {trial['id']}: {params} -> {result}; best so far: {so_far}"


def job_body(cloud: Cloud, config: TuningConfig, pools, package_uri: str, data, extra, name):
    """The HyperparameterTuningJob resource (trials run the trainer like ``ci train``)."""
    s = cloud.settings
    # No --job-dir: each trial's outputs go under its own AIP_MODEL_DIR's parent.
    trainer_args = [
        *("--train-steps", str(config.train_steps)),
        *("--train-file", data[0].uri, "--eval-file", data[1].uri),
        *extra,
    ]
    labels = {"data-hash": data_hash(data), "git-sha": git_sha(s)}
    custom = train.job_body(s, pools, package_uri, trainer_args, name, labels)
    spec = custom["jobSpec"]
    spec["baseOutputDirectory"] = {"outputUriPrefix": f"gs://{s.bucket_name}/tuning/{name}"}
    return {"displayName": name, "labels": labels, **config.job_fields(), "trialJobSpec": spec}


def tune(
    cloud: Cloud,
    config: TuningConfig,
    pools: list[tiers.Pool],
    package: str,
    data: list[Staged] | None = None,
    timeout: float | None = None,
    extra_args: tuple[str, ...] = (),
) -> TuneResult:
    """Stage what is local, submit the tuning job, wait; return its best trial."""
    s = cloud.settings
    if data is None:
        data = [ensure_staged(cloud, f) for f in train.data_files(s)]
    package_uri = ensure_staged(cloud, package).uri
    name = config.display_name or f"{s.model_name}-tune-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    body = job_body(cloud, config, pools, package_uri, data, extra_args, name)
    job = JOBS.submit(cloud, body)
    cloud.log(
        f"submitted {job['name']} ({config.max_trial_count} trials, "
        f"{config.parallel_trial_count} at a time, {config.goal} {config.metric})"
    )
    try:
        job = wait(cloud, job, config, timeout)
    except KeyboardInterrupt:
        job_wait.cancel(cloud, JOBS, job, job_wait.INTERRUPT_GRACE)  # none left running
        raise
    JOBS.check_succeeded(job)
    best = best_trial(job.get("trials", []), config.goal)
    if best is None:
        raise CiError(f"tuning job {job['name']} has no succeeded trial with a measurement")
    base = body["trialJobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
    return TuneResult(job, best, params_of(best), _value(best), f"{base}/{best['id']}")


def wait(cloud: Cloud, job: dict, config: TuningConfig, timeout: float | None) -> dict:
    """Poll until the job ends: a line per state change and per finished trial."""
    printed: set[str] = set()

    def finished(job: dict) -> list[dict]:
        return [t for t in job.get("trials", []) if t["state"] in FINISHED_TRIAL]

    def each(job: dict) -> None:
        done = finished(job)
        for trial in sorted(done, key=lambda t: int(t["id"])):
            if trial["id"] not in printed:
                printed.add(trial["id"])
                seen = [t for t in done if t["id"] in printed]
                cloud.log(trial_line(trial, best_trial(seen, config.goal), config.metric))

    def progress(job: dict) -> str:
        return f", {len(finished(job))} trial(s) done"

    return job_wait.wait_until_done(cloud, JOBS, job, timeout, progress, each)


DEFAULT_TUNING_CONFIG = "tuning.toml"


def _tuning_file(text: str) -> str:
    """An argparse type: ``""`` is the default file, as a workflow input left empty is (the
    plan hands ``pipeline`` an empty ``--tuning-config`` when it does not tune)."""
    return input_file(text) if text else DEFAULT_TUNING_CONFIG


def add_arguments(parser) -> None:
    """``--tuning-config`` (shared with ``pipeline --tune``)."""
    parser.add_argument(
        "--tuning-config",
        default=DEFAULT_TUNING_CONFIG,
        type=_tuning_file,
        metavar="FILE",
        help=f"the study in TOML (default {DEFAULT_TUNING_CONFIG}, also for ''; docs/tuning.md)",
    )


def main(argv: list[str]) -> int:
    ours, extra = flags.split_passthrough(argv)
    parser = flags.parser("tune", __doc__)
    add_arguments(parser)
    train.add_arguments(parser)
    parser.add_argument("--package", help="sdist path or gs:// URI (default: build --package-dir)")
    package_arguments(parser)
    args = parser.parse_args(ours)
    settings = resolve(args)
    config = tuning_config.load(Path(args.tuning_config))  # refused before anything runs
    pools = train.pools_for(settings, args.parameter_server_count)
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    data = [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]
    if args.package:  # what `ci stage` refuses is refused here, before anything is uploaded
        check_sdist(args.package)
    check_local(data)
    package = args.package or str(build_sdist(Path(args.package_dir), Path(args.dist_dir)))
    with connect(settings) as cloud:
        result = tune(cloud, config, pools, package, None, args.timeout, tuple(extra))
    print(f"best_trial={result.best['id']}")
    print(f"best_params={outputs.one_line(result.params)}")
    print(f"job_name={result.job['name']}")
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(args.summary, result.summary(config.metric))
    return 0
