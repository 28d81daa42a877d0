"""``projects.locations.endpoints``: create, get, list, patch, delete, deployModel,
undeployModel, mutateDeployedModel, predict, rawPredict.

An endpoint record is a ``GoogleCloudAiplatformV1Endpoint`` plus ``_serving``: for each
deployed model id, the model id, version id and artifactUri predict needs, so a predict
request costs a weighted random choice and a dict lookup before the model runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re

from ci.emulator import listing, masks
from ci.emulator.deployments import Deployments, check_split, deployed_ids
from ci.emulator.httpd import (
    ApiError,
    RawResponse,
    Request,
    body_limit,
    not_found,
    precondition,
    raw_body,
)
from ci.emulator.models_api import Models
from ci.emulator.operations import Operations
from ci.emulator.predict import ModelCache, tf_serving
from ci.emulator.store import Store, key, now, public
from ci.errors import BadInstance

LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
ENDPOINT = LOC + r"/endpoints/(?P<endpoint>[^/:]+)"
API = "aiplatform.projects.locations.endpoints."
# endpoints.create's endpointId: a letter first (up to 63 of [a-z0-9-], the last a letter or
# digit), or a number of up to 9 digits without a leading zero. An id the emulator picks
# itself is a longer number, as Vertex's are.
ENDPOINT_ID = re.compile(r"^(?:[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$")
_ENDPOINT = "google.cloud.aiplatform.v1.Endpoint"
# Online prediction's payload limit: "the service itself will accept instances up to the
# payload limit size (currently, 1.5MB)" (gcloud ai endpoints predict).
PREDICT_LIMIT = 1572864
_TOO_LARGE = "Request payload size {size} bytes exceeds the limit: {limit} bytes."
_EMPTY = "google.protobuf.Empty"
# What endpoints.patch may change (camelCase; masks accept snake_case too).
UPDATABLE = (
    "displayName",
    "description",
    "labels",
    "trafficSplit",
    "predictRequestResponseLoggingConfig",
)
# What endpoints.update (the long-running one) may change; etag is compared, not stored.
LONG_RUNNING_UPDATABLE = ("clientConnectionConfig", "etag")


class Endpoints(Deployments):
    """Endpoint handlers; models are resolved through :class:`Models`, exports through the cache."""

    def __init__(self, store: Store, operations: Operations, models: Models, cache: ModelCache):
        self.store, self.operations, self.models, self.cache = store, operations, models, cache

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        return [
            ("POST", LOC + "/endpoints", API + "create", self.create),
            ("GET", LOC + "/endpoints", API + "list", self.list),
            ("GET", ENDPOINT, API + "get", self.get),
            ("PATCH", ENDPOINT, API + "patch", self.patch),
            ("POST", ENDPOINT + ":update", API + "update", self.update),
            ("DELETE", ENDPOINT, API + "delete", self.delete),
            ("POST", ENDPOINT + ":deployModel", API + "deployModel", self.deploy),
            ("POST", ENDPOINT + ":undeployModel", API + "undeployModel", self.undeploy),
            ("POST", ENDPOINT + ":mutateDeployedModel", API + "mutateDeployedModel", self.mutate),
            ("POST", ENDPOINT + ":predict", API + "predict", self.predict),
            ("POST", ENDPOINT + ":rawPredict", API + "rawPredict", self.raw_predict),
        ]

    def _endpoint(self, request: Request) -> dict:
        params = request.params
        name = f"projects/{params['project']}/locations/{params['location']}/endpoints/"
        record = self.store.get("endpoints", key(name + params["endpoint"]))
        if record is None or record["name"] != name + params["endpoint"]:
            raise not_found(f"Endpoint {request.raw_path.removeprefix('/v1/').split(':')[0]}")
        return record

    def create(self, request: Request):
        """``endpoints.create``: an operation whose response is the Endpoint."""
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        endpoint_id = request.query.get("endpointId") or self._new_id(parent)
        if not ENDPOINT_ID.match(endpoint_id):
            raise ApiError(
                400,
                f"Invalid endpointId {endpoint_id!r}: a letter, then up to 62 of [a-z0-9-] "
                "ending in a letter or digit; or up to 9 digits, no leading zero.",
            )
        body = request.body
        _check_public(body)
        name = f"{parent}/endpoints/{endpoint_id}"
        # A new endpoint has no DeployedModel yet, so its trafficSplit can only be empty
        # ("must add up to 100, or map must be empty"): a split naming an id would be
        # stored, and every predict would then be routed to a model that does not exist.
        check_split(body.get("trafficSplit") or {}, set(), name, allow_empty=True)
        body = {k: v for k, v in body.items() if k != "trafficSplit"}
        with self.store.lock:
            if self.store.get("endpoints", key(name)) is not None:
                raise ApiError(409, f"Endpoint {name} already exists.")
            stamp = now()
            record = {
                **body,
                "name": name,
                "createTime": stamp,
                "updateTime": stamp,
                "etag": masks.new_etag(),
                "_serving": {},
            }
            self.store.save("endpoints", key(record["name"]), record)
        return 200, self.operations.run(
            record["name"], "CreateEndpoint", lambda: public(record), response=_ENDPOINT
        )

    def _new_id(self, parent: str) -> str:
        # A caller may have taken a short number as its endpointId: skip the ones in use.
        while True:
            endpoint_id = self.store.new_id()
            if self.store.get("endpoints", key(f"{parent}/endpoints/{endpoint_id}")) is None:
                return endpoint_id

    def get(self, request: Request):
        """``endpoints.get``."""
        with self.store.lock:
            return 200, public(self._endpoint(request))

    def list(self, request: Request):
        """``endpoints.list`` with ``filter``, ``orderBy`` and pagination."""
        prefix = f"projects/{request.params['project']}/locations/{request.params['location']}/"
        with self.store.lock:
            found = [public(e) for e in self.store.all("endpoints") if e["name"].startswith(prefix)]
        fields = listing.ENDPOINT_FIELDS
        return 200, listing.page("endpoints", found, request.query, fields, listing.SORTABLE)

    def patch(self, request: Request):
        """``endpoints.patch``: the ``updateMask`` fields, etag-checked; a new etag."""
        names = masks.fields(request.query.get("updateMask"), UPDATABLE)
        body = request.body
        with self.store.lock:
            endpoint = self._endpoint(request)
            masks.check_etag(body, {endpoint.get("etag")}, endpoint["name"])
            if "trafficSplit" in names:
                split = body.get("trafficSplit") or {}
                # "The traffic percentage values must add up to 100, or map must be empty if
                # the Endpoint is to not accept any traffic at a moment."
                check_split(split, deployed_ids(endpoint), endpoint["name"], allow_empty=True)
                body = {**body, "trafficSplit": {k: v for k, v in split.items() if v}}
            masks.apply(endpoint, body, names)
            self._touch(endpoint)
            return 200, public(endpoint)

    def update(self, request: Request):
        """``endpoints.update`` (UpdateEndpointLongRunning): the body's Endpoint replaces the
        stored one, but "Currently we only support updating the `client_connection_config`
        field, all the other fields' update will be blocked": another field that differs
        from the stored one is a 400. An operation whose response is the Endpoint."""
        sent = request.body["endpoint"]
        with self.store.lock:
            endpoint = self._endpoint(request)
            masks.check_etag(sent, {endpoint.get("etag")}, endpoint["name"])
            for field, value in sent.items():
                if field not in LONG_RUNNING_UPDATABLE and value != endpoint.get(field):
                    raise ApiError(
                        400,
                        f"endpoints.update changes only client_connection_config, not "
                        f"{masks.snake(field)}: use endpoints.patch with an update_mask.",
                    )
            masks.apply(endpoint, sent, list(LONG_RUNNING_UPDATABLE))
            self._touch(endpoint)
            answer = public(endpoint)
        return 200, self.operations.run(
            endpoint["name"], "UpdateEndpoint", lambda: answer, response=_ENDPOINT
        )

    def _touch(self, endpoint: dict) -> None:
        endpoint["updateTime"] = now()
        endpoint["etag"] = masks.new_etag()
        self.store.save("endpoints", key(endpoint["name"]), endpoint)

    def delete(self, request: Request):
        """``endpoints.delete``, refused while models are deployed or being deployed."""
        with self.store.lock:
            record = self._endpoint(request)
            if record.get("deployedModels") or self.operations.pending(
                record["name"], "DeployModel"
            ):
                # Vertex refuses too, rather than deleting under a running deploy.
                raise precondition(
                    f"Endpoint {record['name']} has deployed or being-deployed "
                    "DeployedModel(s); undeploy them (or wait for the deploy) first."
                )
            self.store.delete("endpoints", key(record["name"]))
        return 200, self.operations.run(record["name"], "Delete", dict, response=_EMPTY)

    def _serving(self, request: Request):
        """The endpoint, the deployed model id the traffic split picks, its serving entry
        and its loaded predictor."""
        with self.store.lock:  # a consistent split and serving table; cheap, no I/O
            endpoint = self._endpoint(request)
            split = endpoint.get("trafficSplit") or {}
            if not split:
                raise precondition(
                    f"Endpoint {endpoint['name']} has no deployed model with traffic."
                )
            deployed_id = random.choices(list(split), weights=list(split.values()))[0]
            serving = endpoint["_serving"][deployed_id]
        predictor = self.cache.get(
            serving["model_id"],
            serving["version_id"],
            serving["artifact_uri"],
            serving.get("image_uri", ""),
        )
        return endpoint, deployed_id, serving, predictor

    @body_limit(PREDICT_LIMIT, _TOO_LARGE)
    def predict(self, request: Request):
        """``endpoints.predict``: route by traffic split, run the model, TF Serving rows out."""
        _, deployed_id, serving, predictor = self._serving(request)
        try:
            predictions = predictor.predict(request.body["instances"])
        except BadInstance as exc:
            raise ApiError(400, str(exc)) from None
        return 200, {
            "predictions": predictions,
            "deployedModelId": deployed_id,
            "model": serving["model"],
            "modelDisplayName": serving["display_name"],
            "modelVersionId": serving["version_id"],
        }

    @body_limit(PREDICT_LIMIT, _TOO_LARGE)
    @raw_body
    def raw_predict(self, request: Request):
        """``endpoints.rawPredict``: the body goes to the serving container as it is, and
        the container's answer (status and body) comes back as it is, with the headers
        naming the endpoint and the deployed model that answered."""
        endpoint, deployed_id, _, predictor = self._serving(request)
        status, answer = tf_serving(predictor, _http_body(request.raw))
        headers = {
            "X-Vertex-AI-Endpoint-Id": endpoint["name"].rsplit("/", 1)[-1],
            "X-Vertex-AI-Deployed-Model-Id": deployed_id,
        }
        return status, RawResponse(json.dumps(answer).encode(), headers=headers)


def _check_public(endpoint: dict) -> None:
    """400 for an endpoint Vertex would serve somewhere other than the public ``:predict``
    the emulator answers: private (VPC ``network``), Private Service Connect, or dedicated
    (its own DNS name; Vertex refuses the shared predict of such an endpoint). Accepting
    one would let code pass here that cannot reach the endpoint it made on Vertex."""
    kinds = []
    if endpoint.get("network"):
        kinds.append("network (a private endpoint)")
    if (endpoint.get("privateServiceConnectConfig") or {}).get("enablePrivateServiceConnect"):
        kinds.append("private_service_connect_config (a Private Service Connect endpoint)")
    if endpoint.get("dedicatedEndpointEnabled"):
        kinds.append("dedicated_endpoint_enabled (a dedicated endpoint)")
    if kinds:
        raise ApiError(
            400,
            f"endpoint.{kinds[0]} is not emulated: the emulator serves public shared "
            "endpoints only (docs/emulator.md).",
            "INVALID_ARGUMENT",
        )


def _http_body(raw: bytes) -> bytes:
    """The container's request: the HTTP body itself (as ``curl`` sends it), or the
    ``RawPredictRequest`` a gRPC-transcoding client sends, ``{"httpBody": {"data": BASE64}}``."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw
    if isinstance(body, dict) and set(body) == {"httpBody"} and isinstance(body["httpBody"], dict):
        data = body["httpBody"].get("data", "")
        try:
            return base64.b64decode(data, validate=True) if isinstance(data, str) else raw
        except binascii.Error:
            raise ApiError(400, "httpBody.data: not base64") from None
    return raw
