"""What Google's Vertex AI REST reference documents, checked the way a client written from it
would call: raw HTTP for ids scoped to a project and location, mergeVersionAliases and
deleteVersion names and alias rules, mutateDeployedModel, readMask, query parameters the
method does not have, the HTTP method override, and body size limits."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

from tests.conftest import DEDICATED, PARENT, Poll, upload

OTHER = "projects/emulator-docs-other/locations/us-central1"
ELSEWHERE = "projects/emulator-tests/locations/europe-west4"
INSTANCE = {"PetalLength": 1.7, "PetalWidth": 0.5, "SepalLength": 5.1, "SepalWidth": 3.3}


def call(base: str, method: str, path: str, body=None, headers=None, raw=None, **query):
    """(status, JSON answer) of one raw request; ``path`` starts with /v1/."""
    url = base + urllib.parse.quote(path) + ("?" + urllib.parse.urlencode(query) if query else "")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def finished(base: str, op: dict) -> dict:
    """The operation once done (polled with a deadline)."""
    return Poll(None)._until(
        lambda: op if op.get("done") else call(base, "GET", f"/v1/{op['name']}")[1],
        lambda got: got.get("done"),
        120,
        f"operation {op['name']}",
    )


def test_caller_chosen_ids_are_scoped_to_their_project_and_location(emulator):
    # endpointId and modelId are ids within a location: another project may use the same
    # one, and a URL naming another location does not reach the resource.
    url = emulator.vertex_url
    for parent in (PARENT, OTHER):
        status, op = call(
            url,
            "POST",
            f"/v1/{parent}/endpoints",
            {"displayName": parent},
            endpointId="docs-shared",
        )
        assert status == 200, op
        body = {"modelId": "docs-shared", "model": {"displayName": parent}}
        status, op = call(url, "POST", f"/v1/{parent}/models:upload", body)
        assert status == 200, op
    for parent in (PARENT, OTHER):
        status, got = call(url, "GET", f"/v1/{parent}/endpoints/docs-shared")
        assert (status, got["displayName"]) == (200, parent)
        status, got = call(url, "GET", f"/v1/{parent}/models/docs-shared")
        assert (status, got["displayName"]) == (200, parent)
    status, error = call(url, "GET", f"/v1/{ELSEWHERE}/endpoints/docs-shared")
    assert (status, error["error"]["status"]) == (404, "NOT_FOUND")
    status, error = call(
        url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "again"}, endpointId="docs-shared"
    )
    assert (status, error["error"]["status"]) == (409, "ALREADY_EXISTS")
    for parent in (PARENT, OTHER):
        assert call(url, "DELETE", f"/v1/{parent}/endpoints/docs-shared")[0] == 200
        assert call(url, "DELETE", f"/v1/{parent}/models/docs-shared")[0] == 200
    assert call(url, "GET", f"/v1/{OTHER}/models/docs-shared")[0] == 404


def test_version_methods_need_a_version_and_follow_the_alias_rules(emulator):
    url = emulator.vertex_url
    body = {"modelId": "docs-aliases", "model": {"displayName": "docs-aliases"}}
    model = finished(url, call(url, "POST", f"/v1/{PARENT}/models:upload", body)[1])
    name = model["response"]["model"]
    # "The name of the model version ..., with a version ID explicitly included."
    for method, verb in (("mergeVersionAliases", "POST"), ("deleteVersion", "DELETE")):
        payload = {"versionAliases": ["x1"]} if verb == "POST" else None
        status, error = call(url, verb, f"/v1/{name}:{method}", payload)
        assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT"), method
    assert call(url, "GET", f"/v1/{name}")[0] == 200  # nothing was deleted
    # "Deleting the only version in the Model is not allowed. Use DeleteModel ... instead."
    status, error = call(url, "DELETE", f"/v1/{name}@1:deleteVersion")
    assert (status, error["error"]["status"]) == (400, "FAILED_PRECONDITION")
    # listVersions orders by "create_time, update_time" only.
    assert call(url, "GET", f"/v1/{name}:listVersions", orderBy="display_name")[0] == 400
    status, listed = call(url, "GET", f"/v1/{name}:listVersions", orderBy="create_time desc")
    assert [v["versionId"] for v in listed["models"]] == ["1"]
    # The alias pattern [a-z][a-zA-Z0-9-]{0,126}[a-z-0-9] ends in a hyphen as well.
    status, merged = call(
        url, "POST", f"/v1/{name}@1:mergeVersionAliases", {"versionAliases": ["blue-"]}
    )
    assert status == 200 and "blue-" in merged["versionAliases"]
    # "Adding and deleting the same alias in the request ... will be cancelled out."
    change = {"versionAliases": ["green", "-green", "-blue-"]}
    status, merged = call(url, "POST", f"/v1/{name}@1:mergeVersionAliases", change)
    assert status == 200 and sorted(merged["versionAliases"]) == ["default"]
    # models.delete names a model: with a version it is refused, not read as "all of them".
    status, error = call(url, "DELETE", f"/v1/{name}@1")
    assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "deleteVersion" in error["error"]["message"]
    assert call(url, "GET", f"/v1/{name}")[0] == 200
    assert call(url, "DELETE", f"/v1/{name}")[0] == 200


def test_lists_read_mask_order_by_and_unknown_query_parameters(emulator):
    url = emulator.vertex_url
    body = {"displayName": "docs-masked", "labels": {"suite": "docs-mask"}}
    name = call(url, "POST", f"/v1/{PARENT}/endpoints", body)[1]["response"]["name"]
    status, found = call(
        url,
        "GET",
        f"/v1/{PARENT}/endpoints",
        filter="labels.suite=docs-mask",
        readMask="display_name",
    )
    assert (status, found["endpoints"]) == (200, [{"displayName": "docs-masked"}])
    # "A key including a space must be quoted. `labels."a key"`."
    status, found = call(url, "GET", f"/v1/{PARENT}/endpoints", filter='labels."suite"="docs-mask"')
    assert [e["name"] for e in found["endpoints"]] == [name]
    status, error = call(url, "GET", f"/v1/{PARENT}/endpoints", readMask="colour")
    assert status == 400 and "colour" in error["error"]["message"]
    # orderBy: "Supported fields: display_name, create_time, update_time".
    status, error = call(url, "GET", f"/v1/{PARENT}/models", orderBy="model")
    assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT")
    # A query parameter the method does not have is refused, as Google's frontends do;
    # system parameters ($alt, alt, prettyPrint) are not.
    status, error = call(url, "GET", f"/v1/{name}", colour="blue")
    assert status == 400 and "Cannot bind query parameter" in error["error"]["message"]
    query = {"$alt": "json;enum-encoding=int", "prettyPrint": "false"}
    assert call(url, "GET", f"/v1/{name}", **query)[0] == 200
    # A client that can only POST names the method in X-HTTP-Method-Override.
    override = {"X-HTTP-Method-Override": "PATCH"}
    status, patched = call(
        url,
        "POST",
        f"/v1/{name}",
        {"displayName": "docs-renamed"},
        override,
        updateMask="display_name",
    )
    assert (status, patched["displayName"]) == (200, "docs-renamed")
    assert call(url, "DELETE", f"/v1/{name}")[0] == 200


def test_mutate_deployed_model_and_the_prediction_payload_limit(emulator, vertex, poll, trained):
    url = emulator.vertex_url
    model = upload(vertex, poll, trained["artifact_uri"])["model"]
    endpoint = call(url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "docs-mutate"})[1]
    endpoint = endpoint["response"]["name"]
    body = {"deployedModel": {"model": model, "dedicatedResources": DEDICATED}}
    deployed = finished(url, call(url, "POST", f"/v1/{endpoint}:deployModel", body)[1])
    deployed_id = deployed["response"]["deployedModel"]["id"]

    mask = "dedicated_resources.min_replica_count,dedicated_resources.max_replica_count"
    change = {"id": deployed_id, "dedicatedResources": {"minReplicaCount": 2, "maxReplicaCount": 3}}
    status, op = call(
        url,
        "POST",
        f"/v1/{endpoint}:mutateDeployedModel",
        {"deployedModel": change, "updateMask": mask},
    )
    assert status == 200, op
    op = finished(url, op)
    assert op["response"]["@type"].endswith("v1.MutateDeployedModelResponse")
    resources = op["response"]["deployedModel"]["dedicatedResources"]
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (2, 3)
    assert resources["machineSpec"] == DEDICATED["machineSpec"]  # not in the mask: kept
    got = call(url, "GET", f"/v1/{endpoint}")[1]["deployedModels"][0]["dedicatedResources"]
    assert got == resources
    # Only replica counts, autoscaling and logging may change; counts stay consistent.
    wrong = {"deployedModel": {"id": deployed_id, "displayName": "x"}, "updateMask": "display_name"}
    assert call(url, "POST", f"/v1/{endpoint}:mutateDeployedModel", wrong)[0] == 400
    low = {
        "deployedModel": {"id": deployed_id, "dedicatedResources": {"maxReplicaCount": 1}},
        "updateMask": "dedicated_resources.max_replica_count",
    }
    assert call(url, "POST", f"/v1/{endpoint}:mutateDeployedModel", low)[0] == 400
    missing = {
        "deployedModel": {"id": "404"},
        "updateMask": "dedicated_resources.min_replica_count",
    }
    assert call(url, "POST", f"/v1/{endpoint}:mutateDeployedModel", missing)[0] == 404

    # Online prediction accepts "up to the payload limit size (currently, 1.5MB)".
    assert call(url, "POST", f"/v1/{endpoint}:predict", {"instances": [INSTANCE]})[0] == 200
    big = {"instances": [INSTANCE] * 20000}  # ~1.6 MB
    for method in ("predict", "rawPredict"):
        status, error = call(url, "POST", f"/v1/{endpoint}:{method}", big)
        assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT"), method
        assert "1572864" in error["error"]["message"]

    # Endpoint.trafficSplit: "must add up to 100, or map must be empty if the Endpoint is to
    # not accept any traffic at a moment".
    status, patched = call(
        url, "PATCH", f"/v1/{endpoint}", {"trafficSplit": {}}, updateMask="traffic_split"
    )
    assert status == 200 and "trafficSplit" not in patched and patched["deployedModels"]
    status, error = call(url, "POST", f"/v1/{endpoint}:predict", {"instances": [INSTANCE]})
    assert (status, error["error"]["status"]) == (400, "FAILED_PRECONDITION")
    half = {"trafficSplit": {deployed_id: 50}}
    assert call(url, "PATCH", f"/v1/{endpoint}", half, updateMask="traffic_split")[0] == 400

    undeploy = {"deployedModelId": deployed_id}
    finished(url, call(url, "POST", f"/v1/{endpoint}:undeployModel", undeploy)[1])
    assert call(url, "DELETE", f"/v1/{endpoint}")[0] == 200


def test_a_body_over_the_limit_gets_413_and_the_connection_stays_usable(emulator):
    host, port = urllib.parse.urlsplit(emulator.vertex_url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    huge = b" " * (33 * 1024 * 1024)
    connection.request(
        "POST", f"/v1/{PARENT}/endpoints", huge, {"Content-Type": "application/json"}
    )
    answer = connection.getresponse()
    assert answer.status == 413 and json.loads(answer.read())["error"]["code"] == 413
    # A chunked body (no Content-Length) is read as well.
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({"displayName": "docs-chunked"}).encode()
    connection.request(
        "POST",
        f"/v1/{PARENT}/endpoints",
        iter([body[:5], body[5:]]),
        {"Content-Type": "application/json"},  # an iterable body: http.client sends it chunked
    )
    answer = connection.getresponse()
    created = json.loads(answer.read())
    assert answer.status == 200 and created["response"]["displayName"] == "docs-chunked"
    assert call(emulator.vertex_url, "DELETE", f"/v1/{created['response']['name']}")[0] == 200


def test_display_names_and_filter_timestamps_follow_the_reference(emulator):
    url = emulator.vertex_url
    # "The name can be up to 128 characters long and can consist of any UTF-8 characters."
    status, error = call(url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "x" * 129})
    assert status == 400 and "128" in error["error"]["message"]
    upload = {"model": {"displayName": "é" * 129}}
    assert call(url, "POST", f"/v1/{PARENT}/models:upload", upload)[0] == 400
    status, op = call(url, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "é" * 128})
    assert status == 200
    assert call(url, "DELETE", f"/v1/{op['response']['name']}")[0] == 200
    # A filter's timestamp is RFC 3339, offset included; a date alone is a 400, not a 500.
    for text in ('create_time>"2024-01-01"', "create_time>2024-01-01T00:00:00"):
        status, error = call(url, "GET", f"/v1/{PARENT}/models", filter=text)
        assert (status, error["error"]["status"]) == (400, "INVALID_ARGUMENT"), text
    status, _ = call(
        url, "GET", f"/v1/{PARENT}/models", filter='create_time>"2024-01-01T00:00:00Z"'
    )
    assert status == 200
