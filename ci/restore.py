"""Undo a failed promotion: traffic, aliases and the registry back to how they were.

A deployment counts from the moment its request was accepted, not from when its operation
was seen to finish: when the polls fail (429/503 beyond the retry budget, a lost network,
Ctrl-C) the deployment still happens on Vertex AI. So the restore first waits a while for
every deploy operation this run started, then undeploys whatever serves the new version
where this run deployed it, and only then deletes the version. What cannot be restored is
named in the error, with the commands that repair it.
"""

from __future__ import annotations

import time

from ci import vertex
from ci.cloud import Cloud, api, create, operations, wait_operation
from ci.errors import CiError

# How long the restore waits for a deploy operation it lost track of (Vertex deploys take
# minutes); after Ctrl-C only briefly, since the user asked to stop.
SETTLE_SECONDS = 900.0
SETTLE_INTERRUPTED = 30.0


class RestoreFailed(CiError):
    """The promotion failed and so did part of undoing it; the message says what is left."""


def restore(cloud: Cloud, before, run, cause: BaseException) -> None:
    """Undo ``run`` (a ``promote.Changes``) back to ``before``; raise RestoreFailed if stuck."""
    why = str(cause) or type(cause).__name__
    cloud.log(f"promotion failed ({why}); restoring the previous state")
    wait = SETTLE_SECONDS
    if isinstance(cause, KeyboardInterrupt):
        wait = SETTLE_INTERRUPTED
        cloud.fresh_connections()
    failed: list[str] = []

    def step(what: str, fn) -> None:
        try:
            fn()
        except CiError as exc:
            failed.append(f"{what}: {exc}")

    unsettled = [op["name"] for _, op in run.deploys if not settle(cloud, op, wait)]
    touched = {e["name"]: e for e, _ in run.deploys}
    for name in touched:
        step(f"undeploy from {name}", lambda n=name: _undeploy_mine(cloud, before, run, n))
    old = before.champion and before.champion["versionId"]
    alias = vertex.set_alias
    if run.aliases_moved and old and old != run.version_id:
        step("default alias", lambda: alias(cloud, run.model, old, vertex.DEFAULT))
        if before.previous:
            pv = before.previous["versionId"]
            step("previous alias", lambda: alias(cloud, run.model, pv, vertex.PREVIOUS))
        else:
            step("previous alias", lambda: alias(cloud, run.model, old, "-" + vertex.PREVIOUS))
    if run.created:
        first = before.model is None  # this run created the model: it goes with its version
        step(
            f"delete version {run.version_id}",
            lambda: _delete_version(cloud, first, run.model, run.version_id),
        )
    if unsettled:
        failed.append(f"deploy operation(s) {', '.join(unsettled)} still running")
    if not failed:
        cloud.log("restored: traffic and aliases are as they were")
        return
    left, repair = _left(cloud, before, run, old)
    raise RestoreFailed(
        f"{why}; restore incomplete ({'; '.join(failed)}); left: {left}; repair: {repair}"
    ) from None


def drop_upload(cloud: Cloud, had_model: str | None, job_id: str, cause: BaseException) -> None:
    """Best effort after a failed upload: delete a version it made anyway (found by label).

    The request may have been carried out although its answer or its operation was lost.
    A version not there yet does no harm: it serves nothing, and a re-run of ``promote``
    takes it up instead of uploading again.
    """
    if isinstance(cause, KeyboardInterrupt):
        cloud.fresh_connections()
    try:
        model = vertex.find_model(cloud)
        versions = vertex.list_versions(cloud, model["name"]) if model else []
        for version in versions:
            if version.get("labels", {}).get("job-id") != job_id:
                continue
            _delete_version(cloud, had_model is None, model["name"], version["versionId"])
            cloud.log(f"restore: deleted version {version['versionId']} of the failed upload")
    except CiError as exc:
        cloud.log(f"restore: cannot look for a version of the failed upload ({exc})")


def settle(cloud: Cloud, operation: dict, wait: float) -> bool:
    """True once the operation is done (either way); False if it cannot be told in time."""
    deadline = time.monotonic() + wait
    while not operation.get("done"):
        if time.monotonic() > deadline:
            return False
        try:
            ops = operations(cloud, operation["name"])
            operation = api(ops.get(name=operation["name"]), "poll deploy (restore)")
        except CiError as exc:
            cloud.log(f"restore: {exc}")
        if not operation.get("done"):
            time.sleep(cloud.settings.poll_seconds)
    return True


def _undeploy_mine(cloud: Cloud, before, run, endpoint_name: str) -> None:
    endpoint = vertex.get_endpoint(cloud, endpoint_name)
    kept = set(before.deployed) if endpoint_name == before.endpoint["name"] else set()
    for deployed_id in vertex.deployed_ids(endpoint, run.model, run.version_id):
        if deployed_id in kept:
            continue  # it served before this run: not ours to remove
        remaining = [d["id"] for d in endpoint.get("deployedModels", []) if d["id"] != deployed_id]
        if endpoint_name == before.endpoint["name"]:
            traffic = {k: v for k, v in before.split.items() if k in remaining}
        else:  # staging: nothing there serves anyone
            traffic = {remaining[0]: 100} if remaining else {}
        vertex.undeploy(cloud, endpoint, deployed_id, traffic)
        cloud.log(f"restore: undeployed {deployed_id} from {endpoint['displayName']}")
        endpoint = vertex.get_endpoint(cloud, endpoint_name)


def _delete_version(cloud: Cloud, whole_model: bool, model: str, version_id: str) -> None:
    models = cloud.vertex.projects().locations().models()
    if whole_model:  # the model's only version: the model goes with it
        request = models.delete(name=model)
    else:
        request = models.deleteVersion(name=f"{model}@{version_id}")
    what = f"delete version {version_id}"

    def gone() -> dict | None:  # deleted by a request whose answer was lost
        try:
            versions = vertex.list_versions(cloud, model)
        except CiError as exc:
            if getattr(exc, "status", None) == 404:  # the model went with its only version
                return {"done": True}
            raise
        return None if any(v["versionId"] == version_id for v in versions) else {"done": True}

    wait_operation(cloud, create(request, what, gone), what)


def _left(cloud: Cloud, before, run, old: str | None) -> tuple[str, str]:
    """What the registry and endpoints hold now, and the commands that repair it."""
    region = cloud.settings.region
    ours = f"version {run.version_id} of {run.model}"
    rollback = f"python -m ci rollback --to-version {old}" if old else None
    try:
        facts, repair = [], []
        for name in {before.endpoint["name"], *(e["name"] for e, _ in run.deploys)}:
            endpoint = vertex.get_endpoint(cloud, name)
            split = endpoint.get("trafficSplit", {})
            for deployed_id in vertex.deployed_ids(endpoint, run.model, run.version_id):
                if name == before.endpoint["name"] and deployed_id in before.deployed:
                    continue
                share = split.get(deployed_id, 0)
                facts.append(f"{ours} deployed as {deployed_id} on {name} with {share}% traffic")
                if name == before.endpoint["name"] and rollback:
                    repair.append(rollback)
                else:
                    repair.append(
                        f"gcloud ai endpoints undeploy-model {name.rsplit('/', 1)[-1]} "
                        f"--deployed-model-id={deployed_id} --region={region}"
                    )
        versions = _versions(cloud, run.model) if run.created else []
        default = vertex.with_alias(versions, vertex.DEFAULT)
        if default and old and default["versionId"] != old and rollback:
            facts.append(f"'default' is on version {default['versionId']}, not {old}")
            repair.append(rollback)
        if any(v["versionId"] == run.version_id for v in versions):
            facts.append(f"{ours} still exists")
            repair.append(
                f"gcloud ai models delete-version {run.model.rsplit('/', 1)[-1]}@"
                f"{run.version_id} --region={region}"
            )
    except CiError as exc:
        return f"unknown (cannot read it: {exc})", rollback or f"re-run promote --job {run.job}"
    unique = list(dict.fromkeys(repair))
    return ("; ".join(facts) or "as before"), (", then ".join(unique) or "nothing")


def _versions(cloud: Cloud, model_name: str) -> list[dict]:
    try:
        return vertex.list_versions(cloud, model_name)
    except CiError as exc:
        if "HTTP 404" in str(exc):  # the model went with its only version
            return []
        raise
