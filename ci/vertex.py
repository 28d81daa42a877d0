"""Vertex AI resources by name: the model and its versions, the endpoint, jobs, metrics.

Models and endpoints are found by display name (the settings ``model_name`` and
``endpoint_name``), so nothing has to remember generated resource ids between runs.
A version's metrics live beside its export: ``<artifactUri>/../metrics.json``, which is
where the trainer contract writes them (``<job-dir>/model`` and ``<job-dir>/metrics.json``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ci import gcs
from ci.cloud import Cloud, api, create, guard, wait_operation
from ci.errors import BadData, CiError, UsageError
from ci.inputs import parse_json, read_text

DEFAULT = "default"
PREVIOUS = "previous"


def _locations(cloud: Cloud):
    return cloud.vertex.projects().locations()


def _list_all(method, key: str, what: str, **kwargs) -> list[dict]:
    items, token = [], None
    while True:
        page = api(method(pageToken=token, **kwargs) if token else method(**kwargs), what)
        items += page.get(key, [])
        token = page.get("nextPageToken")
        if not token:
            return items


def _by_display_name(items: list[dict], display_name: str, kind: str) -> dict | None:
    found = [i for i in items if i.get("displayName") == display_name]
    if len(found) > 1:
        names = ", ".join(i["name"] for i in found)
        raise CiError(f"several {kind}s are named {display_name!r} ({names}); rename all but one")
    return found[0] if found else None


def find_model(cloud: Cloud) -> dict | None:
    """The model named ``settings.model_name``, or None before the first upload."""
    models = _list_all(
        _locations(cloud).models().list, "models", "list models", parent=cloud.parent
    )
    return _by_display_name(models, cloud.settings.model_name, "model")


def list_versions(cloud: Cloud, model_name: str) -> list[dict]:
    """Every version of ``model_name``, oldest first."""
    versions = _list_all(
        _locations(cloud).models().listVersions, "models", "list versions", name=model_name
    )
    return sorted(versions, key=lambda v: int(v.get("versionId", 0)))


def with_alias(versions: list[dict], alias: str) -> dict | None:
    """The version holding ``alias``, or None."""
    return next((v for v in versions if alias in v.get("versionAliases", [])), None)


def set_alias(cloud: Cloud, model_name: str, version_id: str, *aliases: str) -> None:
    """Add (or with a ``-`` prefix remove) aliases; an alias held elsewhere moves here."""
    body = {"versionAliases": list(aliases)}
    request = (
        _locations(cloud).models().mergeVersionAliases(name=f"{model_name}@{version_id}", body=body)
    )
    api(request, f"set aliases {', '.join(aliases)} on version {version_id}")


def staging_name(cloud: Cloud) -> str:
    """The display name of the endpoint where new versions are smoke-tested before serving."""
    return f"{cloud.settings.endpoint_display_name}-staging"


def find_endpoint(cloud: Cloud, display_name: str | None = None) -> dict | None:
    """The endpoint named ``display_name`` (default: the serving endpoint), or None."""
    endpoints = _list_all(
        _locations(cloud).endpoints().list, "endpoints", "list endpoints", parent=cloud.parent
    )
    wanted = display_name or cloud.settings.endpoint_display_name
    return _by_display_name(endpoints, wanted, "endpoint")


def ensure_endpoint(cloud: Cloud, display_name: str | None = None) -> dict:
    """The endpoint named ``display_name`` (default: the serving endpoint), created if new."""
    endpoint = find_endpoint(cloud, display_name)
    if endpoint:
        return endpoint
    body = {"displayName": display_name or cloud.settings.endpoint_display_name}

    def find() -> dict | None:  # the endpoint a create whose answer was lost made
        made = find_endpoint(cloud, body["displayName"])
        return {"done": True, "response": made} if made else None

    request = _locations(cloud).endpoints().create(parent=cloud.parent, body=body)
    op = create(request, "create endpoint", find)
    created = wait_operation(cloud, op, "create endpoint")
    cloud.log(f"created endpoint {created['name']}")
    return get_endpoint(cloud, created["name"])


def get_endpoint(cloud: Cloud, name: str) -> dict:
    """An endpoint by resource name, with its deployed models and traffic split."""
    return api(_locations(cloud).endpoints().get(name=name), "get endpoint")


def deployed_version(deployed: dict) -> str:
    """The model version a deployed model serves."""
    return str(deployed.get("modelVersionId") or deployed.get("model", "").rpartition("@")[2])


def traffic_by_version(endpoint: dict, model_name: str) -> dict[str, int]:
    """Percent of traffic per version of ``model_name`` on ``endpoint``."""
    split = endpoint.get("trafficSplit", {})
    shares: dict[str, int] = {}
    for deployed in endpoint.get("deployedModels", []):
        if deployed.get("model", "").split("@")[0] == model_name:
            version = deployed_version(deployed)
            shares[version] = shares.get(version, 0) + int(split.get(deployed["id"], 0))
    return shares


def deploy(
    cloud: Cloud, endpoint: dict, model_name: str, version_id: str, traffic: dict, sent=None
) -> str:
    """Deploy a version with ``traffic`` (key "0" = this deployment); return its deployed id.

    ``sent(operation)`` is called as soon as the request is accepted: from then on the
    deployment may happen whatever the polls answer, and a caller undoing it must know.
    """
    body = {
        "deployedModel": {
            "model": f"{model_name}@{version_id}",
            "displayName": f"{cloud.settings.model_name}-v{version_id}",
            "dedicatedResources": {
                "machineSpec": {"machineType": cloud.settings.serving_machine_type},
                "minReplicaCount": 1,
                "maxReplicaCount": 1,
            },
        },
        "trafficSplit": {k: int(v) for k, v in traffic.items()},
    }
    request = _locations(cloud).endpoints().deployModel(endpoint=endpoint["name"], body=body)
    what = f"deploy version {version_id}"
    there = set(deployed_ids(endpoint, model_name, version_id))

    def find() -> dict | None:  # the deployment a request whose answer was lost made
        now = get_endpoint(cloud, endpoint["name"])
        made = [i for i in deployed_ids(now, model_name, version_id) if i not in there]
        return {"done": True, "response": {"deployedModel": {"id": made[0]}}} if made else None

    operation = create(request, what, find)
    if sent is not None:
        sent(operation)
    return wait_operation(cloud, operation, what)["deployedModel"]["id"]


def deployed_ids(endpoint: dict, model_name: str, version_id: str) -> list[str]:
    """The deployed model ids on ``endpoint`` that serve ``model_name`` version ``version_id``."""
    return [
        d["id"]
        for d in endpoint.get("deployedModels", [])
        if d.get("model", "").split("@")[0] == model_name and deployed_version(d) == version_id
    ]


def undeploy(cloud: Cloud, endpoint: dict, deployed_id: str, traffic: dict) -> None:
    """Undeploy ``deployed_id``, setting the endpoint's split to ``traffic`` meanwhile."""
    body = {"deployedModelId": deployed_id, "trafficSplit": traffic}
    request = _locations(cloud).endpoints().undeployModel(endpoint=endpoint["name"], body=body)
    what = f"undeploy {deployed_id}"

    def gone() -> dict | None:  # undeployed by a request whose answer was lost
        now = get_endpoint(cloud, endpoint["name"])
        there = any(d["id"] == deployed_id for d in now.get("deployedModels", []))
        return None if there else {"done": True}

    wait_operation(cloud, create(request, what, gone), what)


# Vertex AI's resource ids are int64 numbers; a job is named by its id or its resource name.
_ID = r"[0-9]{1,19}"
_JOB_NAME = re.compile(
    rf"projects/[a-z0-9][a-z0-9.:-]{{0,62}}/locations/[a-z]+(-[a-z]+)+[0-9]+/customJobs/{_ID}"
)
# Vertex AI's rule for a version alias ([a-z] first, so it is never a version id).
_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]")


def check_job_ref(job: str, what: str = "--job") -> str:
    """``job`` itself if it is a custom job id or resource name (not whether it exists).

    A malformed one is a UsageError (exit 2) before anything connects; a well-formed one
    that does not exist is a CiError (exit 1) "not found" from :func:`get_job`.
    """
    if not (re.fullmatch(_ID, job) or _JOB_NAME.fullmatch(job)):
        raise UsageError(
            f"{what}: bad value {job!r} (a custom job id, a number, or its resource name "
            "projects/P/locations/L/customJobs/ID)"
        )
    return job


def check_version_id(version: str, what: str) -> str:
    """``version`` itself if it is a model version id (a number)."""
    if not re.fullmatch(_ID, version):
        raise UsageError(f"{what}: bad value {version!r} (a model version id, a number)")
    return version


def check_version_ref(version: str, what: str) -> str:
    """``version`` itself if it is a version id or a version alias such as ``default``."""
    if not (re.fullmatch(_ID, version) or _ALIAS.fullmatch(version)):
        raise UsageError(
            f"{what}: bad value {version!r} (a version id, a number, or an alias: a letter, "
            "then letters, digits or '-')"
        )
    return version


def get_job(cloud: Cloud, job: str) -> dict:
    """A custom job by resource name or bare id; a UsageError if it is neither, a CiError
    naming it "not found" if there is no such job."""
    check_job_ref(job)
    name = job if "/" in job else f"{cloud.parent}/customJobs/{job}"
    request = _locations(cloud).customJobs().get(name=name)
    return api(request, f"get job {job}", on_404=f"job {name} not found")


def job_dir(job: dict) -> str:
    """The job's output directory (``baseOutputDirectory``), without a trailing slash."""
    base = job.get("jobSpec", {}).get("baseOutputDirectory", {}).get("outputUriPrefix")
    if not base:
        raise CiError(f"job {job['name']} has no baseOutputDirectory")
    return base.rstrip("/")


def version_metrics_uri(version: dict) -> str:
    """Where a version's ``metrics.json`` is: beside its export."""
    return gcs.join(version["artifactUri"].rstrip("/").rpartition("/")[0], "metrics.json")


def read_metrics(cloud: Cloud, location: str) -> dict:
    """``metrics.json`` from a ``gs://`` URI or a local path."""
    if location.startswith("gs://"):
        try:
            text = guard(lambda: gcs.read_text(cloud.storage, location), f"read {location}")
        except UnicodeDecodeError as exc:
            raise BadData(f"metrics {location!r} are not UTF-8 text (byte {exc.start})") from None
    else:  # a path the user gave: what is wrong with it is bad usage
        text = read_text(Path(location), "metrics file")
    if text is None:
        raise CiError(f"metrics not found: {location}")
    metrics = parse_json(text, f"metrics {location}")
    if not isinstance(metrics, dict):
        raise BadData(f"metrics are not a JSON object: {location}")
    return metrics
