"""Request bodies checked against the schemas of the aiplatform v1 discovery document.

The document ships with google-api-python-client, so the emulator accepts exactly the
fields the client library can send. It marks output-only fields ``readOnly`` (ignored on
input, as Vertex does) but says "Required." only in descriptions, so that is where
required fields are read from.

Errors name fields as Vertex AI does: by the request message's field path in proto
(snake_case) names, with a google.rpc.BadRequest detail naming the same path. A method
whose HTTP body is one field of its request (``customJobs.create``: ``body: "custom_job"``)
has paths that start with that field (``custom_job.job_spec.worker_pool_specs[0]``); one
whose body is the whole request (``body: "*"``, a ``...Request`` schema: ``models.upload``)
has paths that start at the request's own fields (``model.display_name``).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from ci.emulator import enums
from ci.emulator.httpd import ApiError, bad_request, field_error

_INT = re.compile(r"^-?\d+$")
_CAMEL = re.compile(r"_([a-z0-9])")
_UPPER = re.compile(r"([A-Z])")
_INDEX = re.compile(r"(\[[^\]]*\])")
_PREFIX = "GoogleCloudAiplatformV1"


@functools.cache
def document() -> dict:
    """The static ``aiplatform`` v1 discovery document of the installed client library."""
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache/documents/aiplatform.v1.json"
    return json.loads(path.read_text())


@functools.cache
def methods() -> dict[str, dict]:
    """Every method of the document by id (``aiplatform.projects.locations.models.upload``)."""
    found: dict[str, dict] = {}

    def walk(resource: dict) -> None:
        for method in resource.get("methods", {}).values():
            found[method["id"]] = method
        for sub in resource.get("resources", {}).values():
            walk(sub)

    walk(document())
    return found


@functools.cache
def _paths() -> dict[str, list[tuple[re.Pattern, str]]]:
    """(path regex, method id) of every documented method, by HTTP method."""
    by_verb: dict[str, list[tuple[re.Pattern, str]]] = {}
    for method_id, method in methods().items():
        template = re.escape("/" + method["flatPath"])
        regex = re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/:]+", template) + "$")
        by_verb.setdefault(method["httpMethod"], []).append((regex, method_id))
    return by_verb


def documented(http_method: str, path: str) -> str | None:
    """The id of the documented method ``http_method`` on ``path`` calls, or None."""
    for regex, method_id in _paths().get(http_method, []):
        if regex.match(path):
            return method_id
    return None


def not_emulated(
    http_method: str, path: str, served: frozenset[str] = frozenset()
) -> ApiError | None:
    """The error for a request no route of the emulator took (``None`` for a path Vertex
    does not have either): 501 ``UNIMPLEMENTED`` naming the documented method it calls when
    the emulator does not serve that method; 400 ``INVALID_ARGUMENT`` when it does (in
    ``served``) but the name in the path is not one of that method's resources (an empty
    version, ``models/m@``), so an answer never calls a served method unemulated."""
    method_id = documented(http_method, path)
    if method_id is None:
        return None
    if method_id in served:
        name = path.split("/", 2)[-1].split(":")[0]
        return ApiError(400, f"Invalid resource name {name!r} for {method_id}.")
    return ApiError(501, f"{method_id} is not emulated (the methods served: docs/emulator.md).")


# Parameters every Google API takes besides a method's own (system parameters, also with
# a `$` prefix: the SDK's REST transports send `$alt=json;enum-encoding=int`).
_SYSTEM = ("alt", "fields", "prettyPrint", "quotaUser", "userProject", "callback", "key")


@functools.cache
def query_parameters(method_id: str) -> frozenset[str]:
    """The query parameters ``method_id`` accepts, by JSON name: its own, the document's
    global ones and the system parameters (also ``$``-prefixed)."""
    method = methods().get(method_id, {})
    own = [k for k, v in method.get("parameters", {}).items() if v.get("location") == "query"]
    names = {*own, *document().get("parameters", {}), *_SYSTEM}
    names |= {"$" + n for n in names}
    return frozenset(_CAMEL.sub(lambda m: m[1].upper(), n) for n in names)


def check_query(method_id: str, query: dict) -> None:
    """400 for a query parameter the method does not have, as Google's frontends answer
    ("Cannot bind query parameter")."""
    if method_id not in methods():
        return
    allowed = query_parameters(method_id)
    for name in query:
        if name not in allowed:
            raise ApiError(
                400,
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                f"parameter. Field '{name}' could not be found in request message.",
            )


def request_schema(method_id: str) -> str | None:
    """The name of the schema a method's body must follow, or None when it takes no body."""
    return methods()[method_id].get("request", {}).get("$ref")


@functools.cache
def _request_schemas() -> frozenset[str]:
    return frozenset(filter(None, map(request_schema, methods())))


def body_field(schema_name: str) -> str:
    """The request field, in proto names, that a body of ``schema_name`` fills: the
    ``body`` of the method's HTTP rule. ``""`` when the body is the whole request
    (``body: "*"``: the document names the request message itself, ``...Request``) or when
    ``schema_name`` is no method's body; otherwise the resource the request carries, in
    snake_case (``GoogleCloudAiplatformV1CustomJob`` -> ``custom_job``)."""
    short = schema_name.removeprefix(_PREFIX)
    if schema_name not in _request_schemas() or short == schema_name or short.endswith("Request"):
        return ""
    return _snake(short[:1].lower() + short[1:])


def field_path(root: str, where: str) -> str:
    """``where`` (a JSON path: ``jobSpec.workerPoolSpecs[0]``) in proto names under the
    body field ``root`` (``custom_job.job_spec.worker_pool_specs[0]``)."""
    path = "".join(p if p.startswith("[") else _snake(p) for p in _INDEX.split(where))
    return _join(root, path) if path else root


class _Problem(Exception):
    """A bad field found at JSON path ``where``; :func:`validate` turns it into the ApiError
    once the body field the path starts from is known. ``field``: Vertex's "List of found
    errors" for a field's value; otherwise ``message`` is the frontend's own wording
    (``Invalid JSON payload received...``), with the path in a BadRequest detail."""

    def __init__(self, where: str, message: str, field: bool = False):
        super().__init__(message)
        self.where, self.message, self.field = where, message, field

    def error(self, root: str) -> ApiError:
        path = field_path(root, self.where)
        if self.field:
            return field_error(path, self.message)
        return ApiError(400, self.message, details=[bad_request(self.message, path)])


def validate(
    schema_name: str,
    body,
    partial: bool = False,
    mask: str | None = None,
    deep: bool = False,
    root: str | None = None,
) -> dict:
    """Check ``body`` against ``schema_name``; return it without output-only fields.

    ``partial``: a patch body, where only the update mask's fields matter, so required
    fields may be missing, unless ``mask`` (the update mask) names them: a patch cannot
    empty a required field. ``deep``: nested messages are partial too (mutateDeployedModel
    sends only the masked fields of a DeployedModel's resources). Raises ApiError 400 naming
    the first offending field, the way Vertex does, by its path under ``root``: the request
    field the body fills (by default :func:`body_field` of ``schema_name``).
    """
    root = body_field(schema_name) if root is None else root
    try:
        if not isinstance(body, dict):
            raise _Problem("", f"Invalid JSON payload received. Expected an object, got {body!r}.")
        schema = document()["schemas"][schema_name]
        cleaned = _object(schema, body, "", partial, deep)
        props = schema.get("properties", {})
        for path in (mask or "").split(","):
            key = _CAMEL.sub(lambda m: m[1].upper(), path.strip())
            if key in props and _required(props[key]) and cleaned.get(key) in (None, "", [], {}):
                raise _Problem(key, _REQUIRED, field=True)
    except _Problem as problem:
        raise problem.error(root) from None
    return cleaned


_REQUIRED = "Required field is not set."


def _object(
    schema: dict, value: dict, where: str, partial: bool = False, deep: bool = False
) -> dict:
    props = schema.get("properties")
    if props is None:  # a free-form object (google.protobuf.Struct and friends)
        return value
    cleaned = {}
    for sent, item in value.items():
        # proto3 JSON parsers accept the proto field name (snake_case) as well as the
        # JSON name; handlers see the JSON name.
        key = sent if sent in props else _CAMEL.sub(lambda m: m[1].upper(), sent)
        prop = props.get(key)
        if prop is None:
            at = f" at '{where}'" if where else ""
            raise _Problem(
                where,
                f'Invalid JSON payload received. Unknown name "{sent}"{at}: Cannot find field.',
            )
        if prop.get("readOnly"):
            continue
        cleaned[key] = _value(prop, item, _join(where, key), f"{schema.get('id')}.{key}", deep)
        if key == "labels" and isinstance(cleaned[key], dict):
            _check_labels(cleaned[key], _join(where, key))
        _check_length(prop, cleaned[key], _join(where, key))
    for key, prop in props.items():
        if not partial and _required(prop) and cleaned.get(key) in (None, "", [], {}):
            raise _Problem(_join(where, key), _REQUIRED, field=True)
    return cleaned


_UP_TO = re.compile(r"can be up to (\d+) characters")


def _check_length(prop: dict, value, where: str) -> None:
    """400 for a string longer than its description allows ("The name can be up to 128
    characters long", as every resource's displayName says)."""
    found = _UP_TO.search(prop.get("description") or "")
    if found and isinstance(value, str) and len(value) > int(found[1]):
        raise _Problem(where, f"at most {found[1]} characters, not {len(value)}.", field=True)


def _check_labels(labels: dict, where: str) -> None:
    """Google Cloud's label rules: at most 64; a key of 1-63 lowercase letters, digits,
    ``_`` or ``-``, a letter first; a value of at most 63 of the same (international
    letters allowed in both)."""
    if len(labels) > 64:
        raise _Problem(where, f"at most 64 labels, not {len(labels)}.", field=True)
    for key, value in labels.items():
        if not (key and len(key) <= 63 and _label_char(key[0], first=True)) or not all(
            map(_label_char, key)
        ):
            raise _Problem(
                where,
                f"invalid label key {key!r} (a lowercase letter first, then lowercase "
                "letters, digits, _ or -; at most 63).",
                field=True,
            )
        if not isinstance(value, str) or len(value) > 63 or not all(map(_label_char, value)):
            raise _Problem(
                where,
                f"invalid value {value!r} of label {key!r} (lowercase letters, digits, _ or "
                "-; at most 63).",
                field=True,
            )


def _label_char(c: str, first: bool = False) -> bool:
    if not c.isascii():
        return c.isalpha() or (not first and c.isdigit())
    return c.islower() or (not first and (c.isdigit() or c in "_-"))


def _required(prop: dict) -> bool:
    # proto3 JSON leaves out a number's 0 and a boolean's false (the SDK sends min 0 that way):
    # for those, absent is a valid value, not a missing one.
    if prop.get("type") in ("number", "integer", "boolean") or prop.get("format") == "int64":
        return False
    return (prop.get("description") or "").startswith("Required.")


def _value(prop: dict, value, where: str, field: str = "", deep: bool = False):
    if value is None:
        return None
    if "$ref" in prop:
        ref = document()["schemas"][prop["$ref"]]
        if ref.get("type") == "object":
            if not isinstance(value, dict):
                raise _bad(where, "an object", value)
            return _object(ref, value, where, deep, deep)
        return _value(ref, value, where, field, deep)
    kind = prop.get("type")
    if kind == "array":
        if not isinstance(value, list):
            raise _bad(where, "a list", value)
        items = prop["items"]
        return [_value(items, v, f"{where}[{i}]", field, deep) for i, v in enumerate(value)]
    if kind == "object":
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        extra = prop.get("additionalProperties")
        if extra is None:
            return _object(prop, value, where, deep, deep) if "properties" in prop else value
        return {k: _value(extra, v, f"{where}[{k!r}]", "", deep) for k, v in value.items()}
    return _scalar(prop, value, where, field)


def _scalar(prop: dict, value, where: str, field: str = ""):
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "any":
        return value
    enum = prop.get("enum")
    if enum:
        # proto3 JSON: an enum is its name or its number (the SDK's REST transport sends
        # numbers); handlers always see the name.
        name = enums.to_name(field, enum, value)
        if name is None:
            raise _Problem(where, f"Invalid value at '{where}', {value!r}: not one of {enum}.")
        return name
    if kind == "boolean" and not isinstance(value, bool):
        raise _bad(where, "a boolean", value)
    if kind == "integer":
        if isinstance(value, bool) or not _is_int(value):
            raise _bad(where, "an integer", value)
        # A google.protobuf.Struct (trainingTaskInputs) carries every number as a double.
        return int(value)
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _bad(where, "a number", value)
    if kind == "string":
        # proto3 JSON writes 64-bit integers as strings but accepts numbers too.
        if fmt in ("int64", "uint64"):
            if isinstance(value, bool) or not _is_int(value):
                raise _bad(where, "an integer", value)
            return str(int(value)) if isinstance(value, float) else str(value)
        if not isinstance(value, str):
            raise _bad(where, "a string", value)
    return value


def response_schema(method_id: str) -> str | None:
    """The name of the schema a method answers with."""
    return methods()[method_id].get("response", {}).get("$ref")


def encode_enums(schema_name: str, body):
    """``body`` (an answer of ``schema_name``) with every enum name as its number.

    What ``$alt=json;enum-encoding=int`` asks for. ``Any`` fields (an operation's
    ``response`` and ``metadata``) are followed through their ``@type``.
    """
    if not isinstance(body, dict):
        return body
    return _encode(document()["schemas"][schema_name], body)


def _encode(schema: dict, value: dict) -> dict:
    props = schema.get("properties")
    if props is None:
        return _encode_any(value)
    out = {}
    for key, item in value.items():
        prop = props.get(key)
        out[key] = item if prop is None else _encode_value(prop, item, f"{schema.get('id')}.{key}")
    return out


def _encode_value(prop: dict, value, field: str):
    if "$ref" in prop:
        ref = document()["schemas"][prop["$ref"]]
        if ref.get("type") == "object":
            return _encode(ref, value) if isinstance(value, dict) else value
        return _encode_value(ref, value, field)
    if prop.get("type") == "array" and isinstance(value, list):
        return [_encode_value(prop["items"], v, field) for v in value]
    if prop.get("type") == "object" and isinstance(value, dict):
        extra = prop.get("additionalProperties")
        if extra is None or extra.get("type") == "any":  # google.protobuf.Any or Struct
            return _encode_any(value)
        return {k: _encode_value(extra, v, field) for k, v in value.items()}
    if prop.get("enum"):
        return enums.to_number(field, prop["enum"], value)
    return value


def _encode_any(value: dict) -> dict:
    kind = value.get("@type", "") if isinstance(value, dict) else ""
    name = "GoogleCloudAiplatformV1" + kind.rpartition("google.cloud.aiplatform.v1.")[2]
    if kind.startswith("type.googleapis.com/google.cloud.aiplatform.v1.") and (
        name in document()["schemas"]
    ):
        return _encode(document()["schemas"][name], value)
    return value


def _is_int(value) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and bool(_INT.match(value))


def _bad(where: str, expected: str, value) -> _Problem:
    return _Problem(where, f"Invalid value at '{where}': expected {expected}, got {value!r}.")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _snake(name: str) -> str:
    return _UPPER.sub(lambda m: "_" + m[1].lower(), name)
