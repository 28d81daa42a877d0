"""``python -m ci promote``: a trained job's export becomes the serving model version.

Steps: upload as a new version (labelled git-sha, job-id, data-hash, and the trainer's seed
when its metrics record one) → deploy it alone on the staging endpoint
(``<endpoint>-staging``) and smoke-test it there → undeploy it from staging → deploy it on
the serving endpoint (100% of traffic, or ``--canary N`` percent) → check a prediction
through the serving endpoint → move ``default`` (the former champion gets ``previous``; a
canary gets ``canary`` instead) → undeploy what no longer takes traffic. So no production
request is ever answered by a version whose smoke test has not passed (Vertex AI v1 cannot
address one deployed model of an endpoint directly; see docs/promotion.md), and ``default``
names only a version that passed on the endpoint it serves from. A canary shares traffic
with the champion, so ``--canary`` is refused, before anything changes, when the champion
does not serve on the endpoint promoted to (another ``endpoint_name``).

Any failure (or Ctrl-C) after the upload restores traffic and aliases as they were and
deletes the version this run created, including a deployment whose request was sent but
whose operation could not be followed; a restore that fails says what is left and how to
repair it. A failed upload deletes the version it may have made anyway.

Idempotent: the version of a job is found by its ``job-id`` label, so a re-run neither
uploads twice nor touches a serving version that is already where it should be, and a run
killed half-way continues from where it stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ci import flags, outputs, vertex
from ci.cloud import Cloud, connect, create, wait_operation
from ci.errors import CiError, UsageError
from ci.inputs import input_file
from ci.predict import predict, read_instances
from ci.restore import drop_upload, restore
from ci.settings import git_sha, resolve, serving_image
from ci.train import SUCCEEDED

CANARY = "canary"
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{1,63}$")


@dataclass
class Promotion:
    """What serves after a promotion, and the smoke test's predictions."""

    model: str
    version_id: str
    endpoint: str
    deployed_id: str
    created: bool
    predictions: list
    traffic_percent: int = 100

    def outputs(self) -> dict:
        """The ``--outputs`` values: which version of which model serves where."""
        return {
            "model_version": self.version_id,
            "model_name": self.model,
            "endpoint_name": self.endpoint,
        }

    def summary(self) -> str:
        """The step summary: the version, and its share when it is a canary."""
        share = f" ({self.traffic_percent}% canary)" if self.traffic_percent < 100 else ""
        return (
            f"### Promoted\n\nVersion **{self.version_id}** of `{self.model}` on "
            f"`{self.endpoint}`{share}."
        )


# The labels every version gets from promote (version_labels): --labels may not set them
# (a new ``job-id`` would hide the version from the look-up after a lost answer), and they
# count towards Vertex AI's limit.
VERSION_LABELS = ("job-id", "git-sha", "data-hash", "seed")


def check_extra_labels(labels: dict[str, str]) -> None:
    """UsageError for ``--labels`` that would replace promote's own or pass Vertex AI's limit."""
    taken = sorted(set(labels) & set(VERSION_LABELS))
    if taken:
        raise UsageError(f"--labels: {', '.join(taken)} is set by promote itself")
    room = flags.MAX_LABELS - len(VERSION_LABELS)
    if len(labels) > room:
        raise UsageError(
            f"--labels: {len(labels)} labels; with promote's own "
            f"({', '.join(VERSION_LABELS)}) Vertex AI allows {room}"
        )


def version_labels(cloud: Cloud, job: dict, metrics: dict) -> dict[str, str]:
    """What a version is rebuilt from: job, commit, data and (when recorded) the seed."""
    job_labels = job.get("labels", {})
    labels = {
        "job-id": job["name"].rsplit("/", 1)[-1],
        "git-sha": job_labels.get("git-sha") or git_sha(cloud.settings),
        "data-hash": job_labels.get("data-hash", "unknown"),
    }
    seed = metrics.get("seed")
    # A label value is at most 63 lowercase letters, digits, '-' or '_'.
    if not isinstance(seed, bool) and isinstance(seed, int | str):
        value = str(seed).lower()
        if _LABEL_VALUE.match(value):
            labels["seed"] = value
    return labels


def upload(
    cloud: Cloud, job: dict, parent_model: str | None, extra_labels: dict | None = None
) -> tuple[str, str]:
    """Upload the job's export; return (model name, version id)."""
    s = cloud.settings
    directory = vertex.job_dir(job)
    metrics = vertex.read_metrics(cloud, f"{directory}/metrics.json")
    model = {
        "displayName": s.model_name,
        "artifactUri": f"{directory}/model",
        "containerSpec": {"imageUri": serving_image(s)},
        "labels": {**version_labels(cloud, job, metrics), **(extra_labels or {})},
        "versionDescription": f"trained by {job['name']}",
    }
    body = {"model": model, **({"parentModel": parent_model} if parent_model else {})}
    models = cloud.vertex.projects().locations().models()
    job_id = model["labels"]["job-id"]

    def find() -> dict | None:  # the version an upload whose answer was lost made
        found = vertex.find_model(cloud)
        for version in vertex.list_versions(cloud, found["name"]) if found else []:
            if version.get("labels", {}).get("job-id") == job_id:
                uploaded = {"model": found["name"], "modelVersionId": version["versionId"]}
                return {"done": True, "response": uploaded}
        return None

    op = create(models.upload(parent=cloud.parent, body=body), "upload model", find)
    response = wait_operation(cloud, op, "upload model")
    cloud.log(f"uploaded {response['model']} version {response['modelVersionId']}")
    return response["model"], str(response["modelVersionId"])


def _smoke(cloud: Cloud, endpoint: dict, deployed_id: str, instances: list, only: bool) -> list:
    response = predict(cloud, endpoint["name"], instances)
    answered = response.get("deployedModelId")
    if only and answered and answered != deployed_id:
        raise CiError(f"smoke test answered by deployed model {answered}, not {deployed_id}")
    cloud.log(f"smoke test passed on {endpoint['displayName']}: {len(instances)} predictions")
    return response["predictions"]


@dataclass
class Before:
    """What served before this run: the state a failed promotion goes back to."""

    model: str | None
    champion: dict | None
    previous: dict | None
    endpoint: dict
    split: dict[str, int]
    deployed: dict[str, str]  # deployed model id -> version id

    def deployed_id(self, version_id: str | None) -> str | None:
        """The deployed model id serving ``version_id`` before this run, if any."""
        return next((i for i, v in self.deployed.items() if v == version_id), None)


@dataclass
class Changes:
    """What this run has set in motion, recorded before each request is sent."""

    model: str
    version_id: str
    created: bool
    job: str
    deploys: list[tuple[dict, dict]] = field(default_factory=list)  # (endpoint, operation)
    aliases_moved: bool = False


def promote(
    cloud: Cloud,
    job_ref: str,
    instances_file: Path,
    canary: int | None = None,
    labels: dict[str, str] | None = None,
):
    """Make the job's export serve; return a :class:`Promotion` (``labels``: extra ones)."""
    instances = read_instances(instances_file)  # a bad file fails before anything changes
    job = vertex.get_job(cloud, job_ref)
    if job.get("state") != SUCCEEDED:
        raise CiError(f"job {job['name']} is {job.get('state')}, not {SUCCEEDED}")
    job_id = job["name"].rsplit("/", 1)[-1]
    model = vertex.find_model(cloud)
    versions = vertex.list_versions(cloud, model["name"]) if model else []
    mine = next((v for v in versions if v.get("labels", {}).get("job-id") == job_id), None)
    champion = vertex.with_alias(versions, vertex.DEFAULT)
    endpoint = vertex.find_endpoint(cloud)
    serving = {
        d["id"]: vertex.deployed_version(d) for d in (endpoint or {}).get("deployedModels", [])
    }
    if mine != champion:
        check_canary(cloud, canary, champion, endpoint)
    endpoint = endpoint or vertex.ensure_endpoint(cloud)
    before = Before(
        model["name"] if model else None,
        champion,
        vertex.with_alias(versions, vertex.PREVIOUS),
        endpoint,
        dict(endpoint.get("trafficSplit", {})),
        serving,
    )
    champ_id = before.deployed_id(champion and champion["versionId"])
    if mine is None:
        try:
            model_name, version_id = upload(cloud, job, before.model, labels)
        except (CiError, KeyboardInterrupt) as exc:
            drop_upload(cloud, before.model, job_id, exc)
            raise
    else:
        model_name, version_id = before.model, mine["versionId"]
        cloud.log(f"job {job_id} is already version {version_id}; not uploading again")
    mine_id = before.deployed_id(version_id)
    # A canary needs a serving champion beside it; a version already serving stays full.
    full = canary is None or champ_id is None or mine_id == champ_id
    share = 100 if full else canary
    run = Changes(model_name, version_id, mine is None, job["name"])
    try:
        if mine_id is None:
            # Only a version that passed its smoke test on staging reaches production.
            _smoke_on_staging(cloud, run, instances)
            traffic = {"0": share, **{i: 0 for i in before.deployed}}
            if not full:
                traffic[champ_id] = 100 - share
            mine_id = vertex.deploy(
                cloud, endpoint, model_name, version_id, traffic, _sent(run, endpoint)
            )
            cloud.log(f"deployed version {version_id} as {mine_id} with {share}% of traffic")
        endpoint = vertex.get_endpoint(cloud, endpoint["name"])
        # Only a deployment made now with 100% must answer every request; a canary being
        # completed shares traffic until the others are undeployed below.
        exclusive = full and bool(run.deploys)
        predictions = _smoke(cloud, endpoint, mine_id, instances, exclusive)
        # 'default' moves only once the version has passed on the endpoint it serves from.
        run.aliases_moved = True
        _move_aliases(cloud, model_name, version_id, mine, before.champion, full)
    except (CiError, KeyboardInterrupt) as exc:
        restore(cloud, before, run, exc)
        raise
    keep = {mine_id: share} if full else {mine_id: share, champ_id: 100 - share}
    _undeploy_others(cloud, endpoint, keep)
    return Promotion(
        model_name, version_id, endpoint["name"], mine_id, mine is None, predictions, share
    )


def check_canary(cloud: Cloud, canary: int | None, champion: dict | None, endpoint) -> None:
    """A canary shares traffic with the champion on the serving endpoint: promoting it alone
    there (100% and 'default') would skip the canary asked for, so that is refused first."""
    deployed = (endpoint or {}).get("deployedModels", [])
    if canary is None or not champion:
        return
    if champion["versionId"] not in {vertex.deployed_version(d) for d in deployed}:
        raise UsageError(
            f"--canary {canary}: the champion (version {champion['versionId']}, alias "
            f"'default') does not serve on endpoint {cloud.settings.endpoint_display_name!r};"
            " promote there without --canary, or set endpoint_name to the champion's"
        )


def _sent(run: Changes, endpoint: dict):
    return lambda operation: run.deploys.append((endpoint, operation))


def _smoke_on_staging(cloud: Cloud, run: Changes, instances: list) -> None:
    """Deploy the version alone on the staging endpoint, smoke-test it, undeploy it."""
    staging = vertex.ensure_endpoint(cloud, vertex.staging_name(cloud))
    leftovers = [d["id"] for d in staging.get("deployedModels", [])]  # of a killed run
    traffic = {"0": 100, **{i: 0 for i in leftovers}}
    staged_id = vertex.deploy(
        cloud, staging, run.model, run.version_id, traffic, _sent(run, staging)
    )
    cloud.log(f"deployed version {run.version_id} as {staged_id} on {staging['displayName']}")
    _undeploy_others(cloud, staging, {staged_id: 100})
    _smoke(cloud, vertex.get_endpoint(cloud, staging["name"]), staged_id, instances, True)
    vertex.undeploy(cloud, staging, staged_id, {})
    cloud.log(f"undeployed {staged_id} from {staging['displayName']}")


def _move_aliases(cloud, model_name, version_id, mine, champion, full: bool) -> None:
    if not full:
        vertex.set_alias(cloud, model_name, version_id, CANARY)
        return
    if champion and champion["versionId"] != version_id:
        vertex.set_alias(cloud, model_name, champion["versionId"], vertex.PREVIOUS)
    was_canary = mine is not None and CANARY in mine.get("versionAliases", [])
    extra = ["-" + CANARY] if was_canary else []
    vertex.set_alias(cloud, model_name, version_id, vertex.DEFAULT, *extra)


def _undeploy_others(cloud: Cloud, endpoint: dict, keep: dict[str, int]) -> None:
    endpoint = vertex.get_endpoint(cloud, endpoint["name"])
    for deployed in endpoint.get("deployedModels", []):
        if deployed["id"] not in keep:
            vertex.undeploy(cloud, endpoint, deployed["id"], keep)
            cloud.log(f"undeployed {deployed['id']} (version {vertex.deployed_version(deployed)})")


def add_arguments(parser) -> None:
    """The promotion's flags, shared by ``promote`` and ``pipeline``."""
    parser.add_argument("--canary", type=flags.percent, help="percent of traffic (default 100)")
    parser.add_argument(
        "--instances", type=input_file, help="smoke-test instances (default: instances_file)"
    )


def instances_path(settings, instances: str | None) -> Path:
    """The smoke test's instances: ``--instances``, else the ``instances_file`` setting."""
    return Path(instances or settings.data_path(settings.instances_file))


def main(argv: list[str]) -> int:
    parser = flags.parser("promote", __doc__)
    parser.add_argument("--job", required=True, help="custom job resource name or id")
    add_arguments(parser)
    parser.add_argument(
        "--labels",
        type=flags.labels,
        default={},
        metavar="JSON",
        help="more labels for a new version, a JSON object (e.g. ci tune's version_labels)",
    )
    args = parser.parse_args(argv)
    settings = resolve(args)
    vertex.check_job_ref(args.job)  # malformed: bad usage, before anything connects
    check_extra_labels(args.labels)
    instances = instances_path(settings, args.instances)
    with connect(settings) as cloud:
        result = promote(cloud, args.job, instances, args.canary, args.labels)
    print(f"version {result.version_id} of {result.model} serves on {result.endpoint}")
    outputs.write_outputs(args.outputs, result.outputs())
    outputs.write_summary(args.summary, result.summary())
    return 0
