"""``projects.locations.models``: upload (versions, aliases), get, list, listVersions,
patch, mergeVersionAliases, deleteVersion, delete, evaluations.list and get (none).

A stored model is ``{"name", "createTime", "versions": [Model, ...]}``; each version is a
complete ``GoogleCloudAiplatformV1Model`` as get returns it. ``name@3`` and ``name@alias``
select a version; a bare name is the version holding the ``default`` alias.
"""

from __future__ import annotations

import re

from ci.emulator import listing, masks
from ci.emulator.httpd import ApiError, Request, not_found, precondition
from ci.emulator.operations import Operations
from ci.emulator.store import Store, key, now, public

LOC = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
MODEL = LOC + r"/models/(?P<model>[^/:@]+)(?:@(?P<version>[^/:]+))?"
API = "aiplatform.projects.locations.models."
_EMPTY = "google.protobuf.Empty"
# What models.patch may change: model-wide with a bare name, per version with name@v.
# models.upload: "up to 63 characters, and valid characters are [a-z0-9_-]. The first
# character cannot be a number or hyphen."
MODEL_ID = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
MODEL_WIDE = ("displayName", "description", "labels")
UPDATABLE = (*MODEL_WIDE, "versionDescription")
ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
MERGED_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]$")

# Batch prediction formats Vertex lists for a custom-trained model on a prebuilt container
# (the model's supportedInput/OutputStorageFormats); batchPredictionJobs accept these
# (BigQuery is refused there as not emulated).
INPUT_FORMATS = ("jsonl", "csv", "tf-record", "tf-record-gzip", "file-list", "bigquery")
OUTPUT_FORMATS = ("jsonl", "bigquery")


class Models:
    """Model and version handlers; :meth:`find` also serves the endpoints."""

    def __init__(self, store: Store, operations: Operations):
        self.store, self.operations = store, operations

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        return [
            ("POST", LOC + r"/models:upload", API + "upload", self.upload),
            ("GET", LOC + r"/models", API + "list", self.list),
            ("GET", MODEL, API + "get", self.get),
            ("PATCH", MODEL, API + "patch", self.patch),
            ("GET", MODEL + ":listVersions", API + "listVersions", self.list_versions),
            ("POST", MODEL + ":mergeVersionAliases", API + "mergeVersionAliases", self.merge),
            ("DELETE", MODEL + ":deleteVersion", API + "deleteVersion", self.delete_version),
            ("DELETE", MODEL, API + "delete", self.delete),
            ("GET", MODEL + "/evaluations", API + "evaluations.list", self.evaluations),
            (
                "GET",
                MODEL + r"/evaluations/(?P<evaluation>[^/:]+)",
                API + "evaluations.get",
                self.evaluation,
            ),
        ]

    # --- lookups used here and by endpoints ----------------------------------------

    def find(self, name: str) -> tuple[dict, dict]:
        """``(model record, version)`` for ``projects/../models/ID[@version|@alias]``."""
        match = re.match(r"^(projects/[^/]+/locations/[^/]+/models/[^/@]+)(?:@(.+))?$", name)
        if not match:
            raise ApiError(400, f"Invalid Model resource name: {name!r}.")
        record = self.store.get("models", key(match[1]))
        if record is None or record["name"] != match[1]:
            raise not_found(f"Model {name}")
        return record, _version(record, match[2] or "default", name)

    def _find(self, request: Request) -> tuple[dict, dict]:
        return self.find(request.raw_path.removeprefix("/v1/").split(":")[0])

    # --- handlers -------------------------------------------------------------------

    def upload(self, request: Request):
        """``models.upload``: a new model, or with ``parentModel`` its next version."""
        parent = f"projects/{request.params['project']}/locations/{request.params['location']}"
        result = self.register(parent, request.body)
        return 200, self.operations.run(result["model"], "UploadModel", lambda: result)

    def register(self, parent: str, body: dict) -> dict:
        """Store an UploadModelRequest's model under ``parent``; the UploadModelResponse.

        Also what a training pipeline calls for its ``modelToUpload``.
        """
        model = body["model"]
        aliases = model.get("versionAliases", [])
        for alias in aliases:
            if not ALIAS.match(alias) or alias.isdigit():
                raise ApiError(
                    400, f"Invalid version alias {alias!r}: it must match {ALIAS.pattern}."
                )
        with self.store.lock:
            if body.get("parentModel"):
                record, _ = self.find(body["parentModel"].split("@")[0])
                number = max(int(v["versionId"]) for v in record["versions"]) + 1
            else:
                model_id = body.get("modelId") or self._new_id(parent)
                if body.get("modelId") and not MODEL_ID.match(model_id):
                    raise ApiError(
                        400,
                        f"Invalid modelId {model_id!r}: up to 63 of [a-z0-9_-], the first "
                        "neither a digit nor a hyphen.",
                    )
                if self.store.get("models", key(f"{parent}/models/{model_id}")) is not None:
                    raise ApiError(409, f"Model {model_id} already exists.")
                record = {
                    "name": f"{parent}/models/{model_id}",
                    "createTime": now(),
                    "versions": [],
                }
                number = 1
                if "default" not in aliases:
                    aliases = ["default", *aliases]  # the first version is the default
            stamp = now()
            version = {
                **model,
                "name": record["name"],
                "versionId": str(number),
                "versionAliases": [],
                "createTime": record["createTime"],
                "updateTime": stamp,
                "versionCreateTime": stamp,
                "versionUpdateTime": stamp,
                "etag": masks.new_etag(),
                "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"],
                "supportedInputStorageFormats": list(INPUT_FORMATS),
                "supportedOutputStorageFormats": list(OUTPUT_FORMATS),
                # ModelSourceType CUSTOM: "The Model is uploaded by user or custom training
                # pipeline", which every model here is.
                "modelSourceInfo": {"sourceType": "CUSTOM"},
            }
            record["versions"].append(version)
            _assign(record, version, aliases)
            self.store.save("models", _id(record), record)
        return {"model": record["name"], "modelVersionId": str(number)}

    def _new_id(self, parent: str) -> str:
        # A caller may have taken a short number as its modelId: skip the ones in use.
        while True:
            model_id = self.store.new_id()
            if self.store.get("models", key(f"{parent}/models/{model_id}")) is None:
                return model_id

    def get(self, request: Request):
        """``models.get`` of ``name``, ``name@version`` or ``name@alias``."""
        with self.store.lock:
            return 200, public(self._find(request)[1])

    def evaluations(self, request: Request):
        """``models.evaluations.list``: none. Vertex has evaluations of a trained model only
        when they were imported or an evaluation pipeline ran, and neither is emulated."""
        with self.store.lock:
            self.find(request.raw_path.removeprefix("/v1/").split("/evaluations")[0])
        return 200, {}

    def evaluation(self, request: Request):
        """``models.evaluations.get``: a model of the emulator has no evaluation to get."""
        name = request.raw_path.removeprefix("/v1/")
        with self.store.lock:
            self.find(name.split("/evaluations")[0])
        raise not_found(f"ModelEvaluation {name}")

    def patch(self, request: Request):
        """``models.patch``: the ``updateMask`` fields of a version (``name@v``) or, for a
        bare name, the model-wide fields of every version; etag-checked, new etags."""
        names = masks.fields(request.query.get("updateMask"), UPDATABLE)
        versioned = request.params.get("version") is not None
        with self.store.lock:
            record, version = self._find(request)
            # A bare name addresses the model: the etag of any of its versions is current
            # (a client holding version 2 sends version 2's).
            held = [version] if versioned else record["versions"]
            masks.check_etag(request.body, {v.get("etag") for v in held}, version["name"])
            if versioned:
                targets = [version]
            else:
                for name in names:
                    if name not in MODEL_WIDE:
                        raise ApiError(
                            400, f"{name} belongs to a version: patch {record['name']}@VERSION."
                        )
                targets = record["versions"]
            stamp = now()
            for target in targets:
                masks.apply(target, request.body, names)
                target.update(updateTime=stamp, versionUpdateTime=stamp, etag=masks.new_etag())
            self.store.save("models", _id(record), record)
            return 200, public(version)

    def list(self, request: Request):
        """``models.list``: each model's default version; filter, orderBy, pages."""
        prefix = f"projects/{request.params['project']}/locations/{request.params['location']}/"
        with self.store.lock:
            models = [
                public(_version(r, "default", r["name"]))
                for r in self.store.all("models")
                if r["name"].startswith(prefix)
            ]
        fields = listing.MODEL_FIELDS
        return 200, listing.page("models", models, request.query, fields, listing.SORTABLE)

    def list_versions(self, request: Request):
        """``models.listVersions``, oldest first; filter, orderBy, pages."""
        with self.store.lock:
            record, _ = self._find(request)
            versions = [public(v) for v in record["versions"]]
        fields = listing.MODEL_FIELDS
        # listVersions' orderBy: "Supported fields: create_time, update_time".
        return 200, listing.page("models", versions, request.query, fields, listing.TIMES)

    def merge(self, request: Request):
        """``models.mergeVersionAliases`` of ``name@version``: add aliases (moved from other
        versions), ``-x`` drops one; ``x`` and ``-x`` in one request cancel out."""
        _versioned(request, "mergeVersionAliases")
        changes = request.body["versionAliases"]
        for change in changes:
            alias = change.removeprefix("-")
            # "match [a-z][a-zA-Z0-9-]{0,126}[a-z-0-9]" (the request's reference).
            if not MERGED_ALIAS.match(alias):
                raise ApiError(
                    400, f"Invalid version alias {change!r}: it must match {MERGED_ALIAS.pattern}."
                )
        added = {c for c in changes if not c.startswith("-")}
        removed = {c[1:] for c in changes if c.startswith("-")}
        added, removed = added - removed, removed - added
        if "default" in removed:
            raise ApiError(400, "The default alias cannot be removed; move it instead.")
        with self.store.lock:
            record, version = self._find(request)
            version["versionAliases"] = [a for a in version["versionAliases"] if a not in removed]
            _assign(record, version, [c for c in changes if c in added])
            version["versionUpdateTime"] = version["updateTime"] = now()
            version["etag"] = masks.new_etag()
            self.store.save("models", _id(record), record)
            return 200, public(version)

    def delete_version(self, request: Request):
        """``models.deleteVersion``, refused for a deployed, the default or the only version."""
        _versioned(request, "deleteVersion")
        with self.store.lock:
            record, version = self._find(request)
            if version.get("deployedModels"):
                raise precondition(
                    f"Model version {version['versionId']} is deployed to an endpoint; "
                    "undeploy it first."
                )
            if len(record["versions"]) == 1:
                # "Deleting the only version in the Model is not allowed. Use DeleteModel for
                # deleting the Model instead."
                raise precondition(
                    f"Version {version['versionId']} is the only version of {record['name']}; "
                    "delete the model instead."
                )
            if "default" in version["versionAliases"]:
                raise precondition("The default version cannot be deleted; move the alias first.")
            record["versions"].remove(version)
            self.store.save("models", _id(record), record)
        return 200, self.operations.run(record["name"], "Delete", dict, response=_EMPTY)

    def delete(self, request: Request):
        """``models.delete`` with all versions, refused while one is deployed."""
        if request.params.get("version") is not None:
            # Its name is the model's; deleting every version when one was named would be
            # the costliest possible reading of a typo.
            name = request.raw_path.removeprefix("/v1/")
            raise ApiError(
                400, f"models.delete takes a model name, not a version ({name}): use deleteVersion."
            )
        with self.store.lock:
            record, _ = self._find(request)
            if any(v.get("deployedModels") for v in record["versions"]):
                raise precondition(
                    f"Model {record['name']} has deployed versions; undeploy them first."
                )
            self.store.delete("models", _id(record))
        return 200, self.operations.run(record["name"], "Delete", dict, response=_EMPTY)


def _id(record: dict) -> str:
    return key(record["name"])


def _versioned(request: Request, method: str) -> None:
    """400 unless the name says which version: both methods' ``name`` is "Required. The
    name of the model version ..., with a version ID explicitly included"."""
    if request.params.get("version") is None:
        name = request.raw_path.removeprefix("/v1/").split(":")[0]
        raise ApiError(
            400,
            f"models.{method} needs a model version name (MODEL@VERSION_ID or MODEL@ALIAS), "
            f"not {name}.",
        )


def _version(record: dict, selector: str, name: str) -> dict:
    for version in record["versions"]:
        if selector == version["versionId"] or selector in version["versionAliases"]:
            return version
    raise not_found(f"Model {name}")


def _assign(record: dict, version: dict, aliases: list[str]) -> None:
    """Give ``version`` the aliases, taking them from any other version (an alias is unique)."""
    for other in record["versions"]:
        if other is not version:
            kept = [a for a in other["versionAliases"] if a not in aliases]
            if kept != other["versionAliases"]:
                other["versionAliases"] = kept
                other["versionUpdateTime"] = now()
    version["versionAliases"] += [a for a in aliases if a not in version["versionAliases"]]
