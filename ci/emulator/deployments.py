"""``endpoints.deployModel`` and ``endpoints.undeployModel``, and the traffic-split rules.

A mixin of :class:`ci.emulator.endpoints_api.Endpoints` (it uses the endpoint's store,
operations, models and model cache, and its ``_endpoint`` and ``_touch``): deploying and
undeploying is a concern of its own, the longest part of the endpoint methods.
"""

from __future__ import annotations

import copy
import re

from ci.emulator import masks
from ci.emulator.httpd import REQUIRED, ApiError, Request, field_error, not_found, precondition
from ci.emulator.store import key, now, public

# What mutateDeployedModel may change (its request's reference: replica counts and
# autoscaling of the resources, container logging), as camelCase mask paths.
MUTABLE = (
    "dedicatedResources.minReplicaCount",
    "dedicatedResources.maxReplicaCount",
    "dedicatedResources.requiredReplicaCount",
    "dedicatedResources.autoscalingMetricSpecs",
    "automaticResources.minReplicaCount",
    "automaticResources.maxReplicaCount",
    "disableContainerLogging",
)

# DeployedModel.id, when the caller sets it: "1-10 characters, and valid characters are /[0-9]/".
DEPLOYED_ID = re.compile(r"^[0-9]{1,10}$")


class Deployments:
    """deployModel and undeployModel handlers; mixed into :class:`Endpoints`."""

    def deploy(self, request: Request):
        """``endpoints.deployModel``: validated now, model loaded in the operation."""
        wanted = request.body["deployedModel"]
        split = request.body.get("trafficSplit")
        with self.store.lock:
            endpoint = self._endpoint(request)
            if not wanted.get("model"):
                raise field_error("deployed_model.model")
            _, version = self.models.find(wanted["model"])
            check_resources(wanted, version, "deployed_model")
            check_deployed_id(wanted, endpoint)
            if split is not None:
                check_split(split, {*deployed_ids(endpoint), "0"}, endpoint["name"])
        model_id, version_id = key(version["name"]), version["versionId"]
        name = endpoint["name"]

        def work():
            # Loading before the operation is done is what Vertex does too: once deployModel
            # finishes, the first predict is as fast as any other.
            self.cache.get(model_id, version_id, version.get("artifactUri", ""), _image(version))

            def commit() -> dict:
                # The endpoint and the version as they are now: either may have changed
                # (or gone) while the model loaded, and a deleted endpoint stays deleted.
                current = self.store.get("endpoints", key(name))
                if current is None or current["name"] != name:
                    raise not_found(f"Endpoint {name}")
                _, now_version = self.models.find(f"{version['name']}@{version_id}")
                check_deployed_id(wanted, current)  # another deploy may have taken it since
                if split is not None:
                    check_split(split, {*deployed_ids(current), "0"}, name)
                return {"deployedModel": self._add(current, wanted, now_version, split)}

            return commit

        return 200, self.operations.run(name, "DeployModel", work, background=True)

    def _add(self, endpoint: dict, wanted: dict, version: dict, split) -> dict:
        # DeployedModel.id: "If not provided upon deployment, Vertex AI will generate a
        # value for this ID" (so one the caller gave is the id, as check_deployed_id let it).
        deployed_id = wanted.get("id") or self._new_deployed_id(endpoint)
        deployed = {
            **wanted,
            "id": deployed_id,
            "model": version["name"],
            "modelVersionId": version["versionId"],
            "createTime": now(),
        }
        deployed.setdefault("displayName", version.get("displayName", ""))
        old = endpoint.get("trafficSplit", {})
        if split is None:
            split = {**old, deployed_id: 0 if endpoint.get("deployedModels") else 100}
        split = {(deployed_id if k == "0" else k): v for k, v in split.items() if v}
        endpoint.setdefault("deployedModels", []).append(deployed)
        endpoint["trafficSplit"] = split
        endpoint["_serving"][deployed_id] = {
            "model_id": key(version["name"]),
            "version_id": version["versionId"],
            "artifact_uri": version.get("artifactUri", ""),
            "model": version["name"],
            "display_name": version.get("displayName", ""),
            "image_uri": _image(version),
        }
        self._touch(endpoint)
        ref = {"endpoint": endpoint["name"], "deployedModelId": deployed_id}
        record, _ = self.models.find(version["name"])
        version.setdefault("deployedModels", []).append(ref)
        self.store.save("models", key(record["name"]), record)
        return public(deployed)

    def _new_deployed_id(self, endpoint: dict) -> str:
        # A caller may have chosen a short number as an id on this endpoint: skip those.
        taken = deployed_ids(endpoint)
        while True:
            deployed_id = self.store.new_id()
            if deployed_id not in taken:
                return deployed_id

    def undeploy(self, request: Request):
        """``endpoints.undeployModel``, refused while the model still has traffic."""
        gone = request.body["deployedModelId"]
        split = request.body.get("trafficSplit")
        with self.store.lock:
            endpoint = self._endpoint(request)
            if gone not in deployed_ids(endpoint):
                raise not_found(f"DeployedModel {gone} in Endpoint {endpoint['name']}")
            remaining = deployed_ids(endpoint) - {gone}
            if split is not None:
                check_split(
                    split, deployed_ids(endpoint), endpoint["name"], allow_empty=not remaining
                )
                if split.get(gone):
                    raise precondition(f"trafficSplit still sends traffic to {gone}.")
            elif endpoint.get("trafficSplit", {}).get(gone) and remaining:
                raise precondition(
                    f"DeployedModel {gone} has traffic; give trafficSplit for the models that stay."
                )
            else:
                split = endpoint.get("trafficSplit", {})
            endpoint["trafficSplit"] = {k: v for k, v in split.items() if v and k != gone}
            endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != gone]
            serving = endpoint["_serving"].pop(gone)
            self._touch(endpoint)
            self._drop_ref(serving["model"], endpoint["name"], gone)
        return 200, self.operations.run(endpoint["name"], "UndeployModel", dict)

    def mutate(self, request: Request):
        """``endpoints.mutateDeployedModel``: the update mask's replica counts, autoscaling
        or logging of one DeployedModel; an operation whose response holds it."""
        wanted = request.body["deployedModel"]
        names = masks.fields(request.body.get("updateMask"), MUTABLE)
        with self.store.lock:
            endpoint = self._endpoint(request)
            gone = wanted.get("id")
            if not gone:
                raise field_error("deployed_model.id")
            deployed = next(
                (d for d in endpoint.get("deployedModels", []) if d["id"] == gone), None
            )
            if deployed is None:
                raise not_found(f"DeployedModel {gone} in Endpoint {endpoint['name']}")
            changed = copy.deepcopy(deployed)
            for name in names:
                _set_path(changed, wanted, name.split("."))
            _, version = self.models.find(f"{deployed['model']}@{deployed['modelVersionId']}")
            check_resources(changed, version, "deployed_model")
            deployed.clear()
            deployed.update(changed)
            self._touch(endpoint)
            result = {"deployedModel": public(deployed)}
        return 200, self.operations.run(endpoint["name"], "MutateDeployedModel", lambda: result)

    def _drop_ref(self, model_name: str, endpoint_name: str, deployed_id: str) -> None:
        try:
            record, _ = self.models.find(model_name)
        except ApiError:
            return  # the model is gone: nothing refers to the endpoint any more
        for version in record["versions"]:
            refs = version.get("deployedModels", [])
            kept = [
                r
                for r in refs
                if (r["endpoint"], r["deployedModelId"]) != (endpoint_name, deployed_id)
            ]
            if kept != refs:
                version["deployedModels"] = kept
        self.store.save("models", key(record["name"]), record)


def check_deployed_id(wanted: dict, endpoint: dict) -> None:
    """400 unless a DeployedModel.id the caller chose is "1-10 characters, and valid
    characters are /[0-9]/" (its reference); 409 if the endpoint already has it."""
    chosen = wanted.get("id")
    if not chosen:
        return
    if not DEPLOYED_ID.match(chosen):
        raise field_error(
            "deployed_model.id", f"Invalid DeployedModel ID {chosen!r}: 1-10 digits [0-9]."
        )
    if chosen in deployed_ids(endpoint):
        raise ApiError(
            409, f"DeployedModel {chosen} already exists in Endpoint {endpoint['name']}."
        )


def check_resources(wanted: dict, version: dict, where: str, batch: bool = False) -> None:
    """400 unless ``wanted`` (a DeployedModel, or a BatchPredictionJob when ``batch``) has
    prediction resources of a type the model supports, with at least one replica. ``where``
    is its request field (``deployed_model``, ``batch_prediction_job``), which the errors'
    field paths start with."""
    supported = version.get("supportedDeploymentResourcesTypes") or ["DEDICATED_RESOURCES"]
    dedicated = wanted.get("dedicatedResources")
    automatic = None if batch else wanted.get("automaticResources")
    if dedicated is None and automatic is None:
        if "AUTOMATIC_RESOURCES" in supported:
            return
        raise field_error(
            f"{where}.dedicated_resources",
            f"dedicated_resources is required: Model {version['name']} supports "
            f"{', '.join(supported)} only.",
        )
    kind = "DEDICATED_RESOURCES" if dedicated is not None else "AUTOMATIC_RESOURCES"
    if kind not in supported:
        raise ApiError(
            400,
            f"Model {version['name']} does not support {kind} "
            f"(it supports {', '.join(supported)}).",
        )
    if dedicated is None:
        return
    machine = dedicated.get("machineSpec")
    if not isinstance(machine, dict) or (batch and not machine.get("machineType")):
        field = "machine_spec.machine_type" if batch else "machine_spec"
        raise field_error(f"{where}.dedicated_resources.{field}", REQUIRED)
    first = "startingReplicaCount" if batch else "minReplicaCount"
    low = int(dedicated.get(first, 1 if batch else 0))  # int32: the schema checked it
    high = int(dedicated.get("maxReplicaCount", low))
    if low < 1:
        raise field_error(
            f"{where}.dedicated_resources.{_snake(first)}",
            f"{_snake(first)} must be at least 1, not {low}.",
        )
    if high and high < low:
        raise field_error(
            f"{where}.dedicated_resources.max_replica_count",
            f"max_replica_count ({high}) must not be less than {_snake(first)} ({low}).",
        )


def _set_path(target: dict, source: dict, parts: list[str]) -> None:
    """Copy ``source``'s field at ``parts`` into ``target`` (absent there: cleared)."""
    head, rest = parts[0], parts[1:]
    if not rest:
        if source.get(head) not in (None, "", [], {}):
            target[head] = copy.deepcopy(source[head])
        else:
            target.pop(head, None)
        return
    inner = source.get(head) if isinstance(source.get(head), dict) else {}
    _set_path(target.setdefault(head, {}), inner, rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _image(version: dict) -> str:
    return (version.get("containerSpec") or {}).get("imageUri", "")


def deployed_ids(endpoint: dict) -> set[str]:
    """The ids of the endpoint's DeployedModels."""
    return {d["id"] for d in endpoint.get("deployedModels", [])}


def check_split(split: dict, known: set[str], name: str, allow_empty: bool = False) -> None:
    """400 unless ``split`` names only ``known`` ids, none negative, adding up to 100."""
    unknown = sorted(set(split) - known)
    if unknown:
        raise ApiError(400, f"trafficSplit names {unknown[0]!r}, not a DeployedModel of {name}.")
    if any(v < 0 for v in split.values()):
        raise ApiError(400, "trafficSplit percentages must not be negative.")
    total = sum(split.values())
    if total != 100 and not (allow_empty and total == 0):
        raise ApiError(400, f"trafficSplit must add up to 100, not {total}.")
