"""``python -m ci promote``: a trained job's export becomes the serving model version.

Steps: upload as a new version (labelled git-sha, job-id, data-hash) → deploy on the
endpoint (100% of traffic, or ``--canary N`` percent) → move ``default`` (the former
champion gets ``previous``; a canary gets ``canary`` instead) → smoke-test through the
endpoint → undeploy what no longer takes traffic. Any failure after the upload restores
the traffic split and aliases as they were and deletes the version this run created.

Idempotent: the version of a job is found by its ``job-id`` label, so a re-run neither
uploads twice nor touches a serving version that is already where it should be, and a run
killed half-way continues from where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ci import flags, outputs, tiers, vertex
from ci.cloud import Cloud, api, connect, wait_operation
from ci.errors import CiError
from ci.predict import predict, read_instances
from ci.settings import git_sha, resolve, tf_version
from ci.train import SUCCEEDED

CANARY = "canary"


@dataclass
class Promotion:
    """What serves after a promotion, and the smoke test's predictions."""

    model: str
    version_id: str
    endpoint: str
    deployed_id: str
    created: bool
    predictions: list


def upload(
    cloud: Cloud, job: dict, parent_model: str | None, extra_labels: dict | None = None
) -> tuple[str, str]:
    """Upload the job's export; return (model name, version id)."""
    s = cloud.settings
    job_id = job["name"].rsplit("/", 1)[-1]
    labels = {
        "job-id": job_id,
        "git-sha": job.get("labels", {}).get("git-sha") or git_sha(s),
        "data-hash": job.get("labels", {}).get("data-hash", "unknown"),
        **(extra_labels or {}),
    }
    model = {
        "displayName": s.model_name,
        "artifactUri": f"{vertex.job_dir(job)}/model",
        "containerSpec": {
            "imageUri": s.serving_image or tiers.serving_image(tf_version(s), s.region)
        },
        "labels": labels,
        "versionDescription": f"trained by {job['name']}",
    }
    body = {"model": model, **({"parentModel": parent_model} if parent_model else {})}
    models = cloud.vertex.projects().locations().models()
    op = api(models.upload(parent=cloud.parent, body=body), "upload model")
    response = wait_operation(cloud, op, "upload model")
    cloud.log(f"uploaded {response['model']} version {response['modelVersionId']}")
    return response["model"], str(response["modelVersionId"])


def _smoke(cloud: Cloud, endpoint: dict, deployed_id: str, instances: list, only: bool) -> list:
    response = predict(cloud, endpoint["name"], instances)
    answered = response.get("deployedModelId")
    if only and answered and answered != deployed_id:
        raise CiError(f"smoke test answered by deployed model {answered}, not {deployed_id}")
    cloud.log(f"smoke test passed: {len(instances)} predictions")
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
    endpoint = vertex.ensure_endpoint(cloud)
    before = Before(
        model["name"] if model else None,
        vertex.with_alias(versions, vertex.DEFAULT),
        vertex.with_alias(versions, vertex.PREVIOUS),
        endpoint,
        dict(endpoint.get("trafficSplit", {})),
        {d["id"]: vertex.deployed_version(d) for d in endpoint.get("deployedModels", [])},
    )
    if mine is None:
        model_name, version_id = upload(cloud, job, before.model, labels)
    else:
        model_name, version_id = before.model, mine["versionId"]
        cloud.log(f"job {job_id} is already version {version_id}; not uploading again")
    champ_id = before.deployed_id(before.champion and before.champion["versionId"])
    mine_id = before.deployed_id(version_id)
    # A canary needs a serving champion beside it; a version already serving stays full.
    full = canary is None or champ_id is None or mine_id == champ_id
    share = 100 if full else canary
    deployed_here = None
    try:
        if mine_id is None:
            traffic = {"0": share, **{i: 0 for i in before.deployed}}
            if not full:
                traffic[champ_id] = 100 - share
            mine_id = deployed_here = vertex.deploy(
                cloud, endpoint, model_name, version_id, traffic
            )
            cloud.log(f"deployed version {version_id} as {mine_id} with {share}% of traffic")
        _move_aliases(cloud, model_name, version_id, mine, before.champion, full)
        endpoint = vertex.get_endpoint(cloud, endpoint["name"])
        # Only a deployment made now with 100% must answer every request; a canary being
        # completed shares traffic until the others are undeployed below.
        exclusive = full and deployed_here is not None
        predictions = _smoke(cloud, endpoint, mine_id, instances, exclusive)
    except (CiError, KeyboardInterrupt) as exc:
        _restore(cloud, before, model_name, version_id, mine is None, deployed_here, exc)
        raise
    keep = {mine_id: share} if full else {mine_id: share, champ_id: 100 - share}
    _undeploy_others(cloud, endpoint, keep)
    return Promotion(model_name, version_id, endpoint["name"], mine_id, mine is None, predictions)


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


def _restore(cloud, before: Before, model_name, version_id, created, deployed_here, cause):
    """Best effort: traffic, aliases and the registry as before this run; say what failed."""
    why = str(cause) or type(cause).__name__
    cloud.log(f"promotion failed ({why}); restoring the previous state")
    alias = vertex.set_alias
    steps = []
    if deployed_here:
        live = {k: v for k, v in before.split.items() if k != deployed_here}
        steps.append(
            ("traffic", lambda: vertex.undeploy(cloud, before.endpoint, deployed_here, live))
        )
    old = before.champion and before.champion["versionId"]
    if old and old != version_id:
        steps.append(("default alias", lambda: alias(cloud, model_name, old, vertex.DEFAULT)))
        if before.previous:
            pv = before.previous["versionId"]
            steps.append(("previous alias", lambda: alias(cloud, model_name, pv, vertex.PREVIOUS)))
        else:
            steps.append(("previous alias", lambda: alias(cloud, model_name, old, "-previous")))
    if created:
        steps.append(("version", lambda: _delete_version(cloud, model_name, version_id, old)))
    failed = []
    for what, step in steps:
        try:
            step()
        except CiError as exc:
            failed.append(f"{what}: {exc}")
    if failed:
        cloud.log("restore incomplete, re-run promote or rollback: " + "; ".join(failed))
    else:
        cloud.log("restored: traffic and aliases are as they were")


def _delete_version(cloud: Cloud, model_name: str, version_id: str, champion: str | None):
    models = cloud.vertex.projects().locations().models()
    if champion is None:  # the model's only version: the model goes with it
        request = models.delete(name=model_name)
    else:
        request = models.deleteVersion(name=f"{model_name}@{version_id}")
    wait_operation(cloud, api(request, f"delete version {version_id}"), "delete version")


def main(argv: list[str]) -> int:
    parser = flags.parser("promote", __doc__)
    parser.add_argument("--job", required=True, help="custom job resource name or id")
    parser.add_argument("--canary", type=flags.percent, help="percent of traffic (default 100)")
    parser.add_argument("--instances", help="smoke-test instances (default: instances_file)")
    args = parser.parse_args(argv)
    settings = resolve(args)
    instances = Path(args.instances or settings.data_path(settings.instances_file))
    with connect(settings) as cloud:
        result = promote(cloud, args.job, instances, args.canary)
    print(f"version {result.version_id} of {result.model} serves on {result.endpoint}")
    outputs.write_outputs(
        args.outputs,
        {
            "model_version": result.version_id,
            "model_name": result.model,
            "endpoint_name": result.endpoint,
        },
    )
    outputs.write_summary(
        args.summary,
        f"### Promoted\n\nVersion **{result.version_id}** of `{result.model}` on "
        f"`{result.endpoint}`{f' ({args.canary}% canary)' if args.canary else ''}.",
    )
    return 0
