"""``python -m ci batch-predict``: a Vertex AI batch prediction job over JSON-lines instances.

The instances (a local file is staged first, content-addressed) are predicted by a version
of the model (``--model-version``: a number or an alias, default ``default``). Waiting prints
state changes and progress; at the end, where the results are and how many instances
succeeded and failed. A bad instance is counted and listed in the errors file, the job
still succeeds. ``--timeout`` and Ctrl-C cancel the job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci import flags, gcs, job_wait, outputs, vertex
from ci.cloud import Cloud, connect
from ci.errors import CiError
from ci.inputs import check_json_lines, input_file
from ci.settings import resolve
from ci.stage import check_local, ensure_staged

JOBS = job_wait.JobKind("batchPredictionJobs", "batch prediction job")


@dataclass(frozen=True)
class BatchResult:
    """A finished batch prediction job, where its output is and its counts."""

    job: dict
    output_directory: str
    successful: int
    failed: int

    def outputs(self) -> dict:
        """The ``--outputs`` values."""
        return {
            "batch_job_name": self.job["name"],
            "output_directory": self.output_directory,
            "successful_count": self.successful,
            "failed_count": self.failed,
        }


def job_body(
    model: str, instances_uri: str, output: str, batch_size: int, name: str, machine_type: str
) -> dict:
    """The BatchPredictionJob resource (pure). A model served by a prebuilt container
    supports dedicated resources only, so a batch job must name its machines."""
    return {
        "displayName": name,
        "model": model,
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [instances_uri]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": output},
        },
        "dedicatedResources": {
            "machineSpec": {"machineType": machine_type},
            "startingReplicaCount": 1,
        },
        "manualBatchTuningParameters": {"batchSize": batch_size},
    }


def batch_predict(
    cloud: Cloud,
    instances: str,
    output: str,
    model_version: str = vertex.DEFAULT,
    batch_size: int = 64,
    timeout: float | None = None,
) -> BatchResult:
    """Stage the instances if local, submit, wait; the result's location and counts."""
    model = vertex.find_model(cloud)
    if model is None:
        raise CiError(f"no model named {cloud.settings.model_name!r}; promote a version first")
    versions = vertex.list_versions(cloud, model["name"])
    chosen = next(
        (v for v in versions
         if model_version in (v["versionId"], *v.get("versionAliases", []))),
        None,
    )  # fmt: skip
    if chosen is None:
        raise CiError(
            f"model {model['name']} has no version or alias {model_version!r} (not found)"
        )
    uri = ensure_staged(cloud, instances).uri
    name = f"{cloud.settings.model_name}-batch"
    version = f"{model['name']}@{chosen['versionId']}"
    machine = cloud.settings.serving_machine_type
    body = job_body(version, uri, output, batch_size, name, machine)
    job = JOBS.submit(cloud, body)
    cloud.log(f"submitted {job['name']} (version {chosen['versionId']} over {uri})")
    try:
        job = job_wait.wait_until_done(cloud, JOBS, job, timeout, _counts)
    except KeyboardInterrupt:
        job_wait.cancel(cloud, JOBS, job, job_wait.INTERRUPT_GRACE, report=False)
        raise
    JOBS.check_succeeded(job)
    stats = job.get("completionStats", {})
    return BatchResult(
        job,
        job.get("outputInfo", {}).get("gcsOutputDirectory", ""),
        int(stats.get("successfulCount", 0)),
        int(stats.get("failedCount", 0)),
    )


def _counts(job: dict) -> str:
    stats = job.get("completionStats", {})
    return f": {stats.get('successfulCount', 0)} ok, {stats.get('failedCount', 0)} failed"


def main(argv: list[str]) -> int:
    parser = flags.parser("batch-predict", __doc__)
    parser.add_argument(
        "--instances", required=True, type=input_file, help="JSON-lines file or gs:// URI"
    )
    parser.add_argument("--output", required=True, help="gs:// prefix for the results")
    parser.add_argument(
        "--model-version", default=vertex.DEFAULT, help="version number or alias (default default)"
    )
    parser.add_argument(
        "--batch-size", type=flags.positive_int, default=64, help="instances per batch (default 64)"
    )
    parser.add_argument("--timeout", type=flags.positive_float, help="seconds; then cancel")
    args = parser.parse_args(argv)
    settings = resolve(args)
    gcs.split(args.output)  # a bad --output is a usage error before anything starts
    vertex.check_version_ref(args.model_version, "--model-version")
    check_local([args.instances])
    if not args.instances.startswith("gs://"):  # checked here, so a bad file is never uploaded
        check_json_lines(args.instances, "instances file")
    with connect(settings) as cloud:
        result = batch_predict(
            cloud, args.instances, args.output, args.model_version, args.batch_size, args.timeout
        )
    print(f"results: {result.output_directory}")
    print(f"{result.successful} predictions, {result.failed} failed instances")
    if result.failed:
        print(f"failed instances and their errors: {result.output_directory}/"
              "prediction.errors_stats-*")  # fmt: skip
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(
        args.summary,
        f"### Batch prediction\n\n{result.successful} predictions, {result.failed} failed: "
        f"`{result.output_directory}`",
    )
    return 0
