"""List methods' ``filter``, ``orderBy`` and pagination, shared by every collection.

``filter`` is the AIP-160 subset Vertex documents for its lists: comparisons of a field
with a value (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; timestamps compare as times),
``field:"prefix*"`` (``*`` a wildcard), ``labels.KEY=value``, ``labels.KEY:*`` /
``labels:KEY`` (key present), joined by ``AND``
(or ``OR``, which binds tighter, as in AIP-160), each clause optionally after ``NOT``.
Which fields a list accepts is given per list; anything else is a 400 naming it.
Pure functions over plain records: tested directly and through the server.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable

from ci.emulator import masks
from ci.emulator.httpd import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Filterable fields per list: the filter's snake_case name → the record's JSON key.
TIMES = {"create_time": "createTime", "update_time": "updateTime"}
JOB_FIELDS = {"display_name": "displayName", "state": "state", "end_time": "endTime", **TIMES}
# trainingPipelines.list: "`training_task_definition` `=`, `!=` comparisons, and `:` wildcard".
PIPELINE_FIELDS = {**JOB_FIELDS, "training_task_definition": "trainingTaskDefinition"}
# models.list and endpoints.list: "`base_model_name` only supports =" (a Model Garden model's;
# none of the emulator's has one, so it matches nothing).
MODEL_FIELDS = {
    "display_name": "displayName",
    "model": "name",
    "base_model_name": "baseModelName",
    **TIMES,
}
ENDPOINT_FIELDS = {
    "display_name": "displayName",
    "endpoint": "name",
    "base_model_name": "baseModelName",
    **TIMES,
}
# The comparisons a field supports where its list's reference restricts them ("`state`
# supports `=`, `!=` comparisons"); the others take all (times: all but `:`).
OPERATORS = {
    "state": ("=", "!="),
    "model": ("=", "!="),
    "endpoint": ("=", "!="),
    "model_display_name": ("=", "!="),
    "done": ("=", "!="),
    "base_model_name": ("=",),
}
TIME_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
# What models.list, listVersions and endpoints.list document for orderBy: "Supported
# fields: display_name, create_time, update_time".
SORTABLE = {"display_name": "displayName", **TIMES}
OPERATION_FIELDS = {"done": "done"}
_CLAUSE = re.compile(
    r"""^\s*(?:(?P<not>NOT\s+|-))?\s*(?P<field>labels\."[^"]*"|[A-Za-z_][\w.-]*)\s*
    (?P<op>!=|<=|>=|=|<|>|:)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)\s*$""",
    re.VERBOSE,
)

Predicate = Callable[[dict], bool]


def parse_filter(text: str, fields: dict[str, str]) -> Predicate:
    """A predicate for ``text``; ApiError 400 names an unsupported field or clause."""
    _check_balanced(text)
    groups = []
    for part in _split(text.strip(), "AND"):
        alternatives = [_clause(c, fields) for c in _split(part, "OR")]
        groups.append(alternatives)
    return lambda record: all(any(t(record) for t in alts) for alts in groups)


def _check_balanced(text: str) -> None:
    """400 for an unterminated string or unbalanced parentheses: AIP-160's grammar has no
    reading of ``(display_name="a"`` that a clause-by-clause parse would otherwise guess."""
    depth, quoted, escaped = 0, False, False
    for char in text:
        if quoted:
            quoted, escaped = (char != '"' or escaped), (char == "\\" and not escaped)
        elif char == '"':
            quoted = True
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                break
    if quoted or depth:
        problem = "an unterminated string" if quoted else "unbalanced parentheses"
        raise ApiError(400, f"Invalid filter {text!r}: {problem}.")


def _split(text: str, word: str) -> list[str]:
    # Split outside quotes and strip the grouping parentheses AIP-160 allows.
    parts = re.split(rf'\s+{word}\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', text) if text else []
    return [p.strip().removeprefix("(").removesuffix(")") for p in parts if p.strip()]


def _clause(text: str, fields: dict[str, str]) -> Predicate:
    match = _CLAUSE.match(text)
    if not match:
        raise ApiError(400, f"Invalid filter clause {text!r}.")
    field, op, raw = match["field"], match["op"], match["value"]
    value = json.loads(raw) if raw.startswith('"') else raw
    test = _label_test(field, op, value) if field.split(".")[0] == "labels" else None
    if test is None:
        key = fields.get(field) or fields.get(_snake(field))
        if key is None:
            supported = ", ".join([*fields, "labels.KEY"])
            raise ApiError(400, f"Unsupported filter field {field!r} (supported: {supported}).")
        _check_operator(field, key, op)
        test = _compare(key, op, value, field)
    return (lambda r: not test(r)) if match["not"] else test


def _label_test(field: str, op: str, value: str) -> Predicate | None:
    if field == "labels" and op == ":":
        return lambda r: value in (r.get("labels") or {})
    key = field.removeprefix("labels.")
    if key.startswith('"'):  # "A key including a space must be quoted. `labels."a key"`."
        key = key[1:-1]
    if op == ":" and value == "*":
        return lambda r: key in (r.get("labels") or {})
    if op in ("=", ":"):
        return lambda r: (r.get("labels") or {}).get(key) == value
    if op == "!=":
        return lambda r: (r.get("labels") or {}).get(key) != value
    raise ApiError(400, f"Labels support =, != and :*, not {op!r} ({field}).")


def _check_operator(field: str, key, op: str) -> None:
    """400 for a comparison the list's reference does not give ``field``."""
    name = _snake(field)
    allowed = OPERATORS.get(name) or (
        TIME_OPERATORS if isinstance(key, str) and key.endswith("Time") else None
    )
    if allowed is not None and op not in allowed:
        raise ApiError(400, f"The filter field {name} supports {', '.join(allowed)}, not {op!r}.")


def _compare(key, op: str, value: str, field: str) -> Predicate:
    """``key`` is the record's JSON key, or a function reading the value off a record."""
    if callable(key):
        wanted, get = value, key
    elif key.endswith("Time"):
        wanted = _time(value, field)
        get = lambda r: _time(r.get(key), field) if r.get(key) else None  # noqa: E731
    elif key == "name":  # `model=123` / `endpoint=123` match the resource id
        wanted, get = str(value), lambda r: r["name"].rsplit("/", 1)[-1]
    elif key == "done":
        if str(value).lower() not in ("true", "false"):
            raise ApiError(400, f"Invalid filter value {value!r} for {field} (true or false).")
        wanted, get = str(value).lower() == "true", lambda r: bool(r.get("done"))
    else:
        wanted, get = value, lambda r: r.get(key)
        if key == "state" and value not in _job_states():
            raise ApiError(400, f"Invalid filter value {value!r} for state (a state's name).")
    matches = _wildcard(wanted) if op == ":" else None
    ops = {
        "=": lambda a: a == wanted,
        ":": lambda a: a == wanted if matches is None else matches(a),
        "!=": lambda a: a != wanted,
        "<": lambda a: a is not None and a < wanted,
        "<=": lambda a: a is not None and a <= wanted,
        ">": lambda a: a is not None and a > wanted,
        ">=": lambda a: a is not None and a >= wanted,
    }
    return lambda r: ops[op](get(r))


def _wildcard(value) -> Callable[[object], bool] | None:
    """``display_name:"my_job_*"``: ``*`` matches any run of characters (Vertex documents
    ``:`` as the wildcard comparison of display_name); None for a value without one."""
    if not isinstance(value, str) or "*" not in value:
        return None
    pattern = re.compile("".join(".*" if c == "*" else re.escape(c) for c in value), re.DOTALL)
    return lambda a: isinstance(a, str) and pattern.fullmatch(a) is not None


@functools.cache
def _job_states() -> frozenset[str]:
    """The names a ``state`` filter may compare with: JobState's and PipelineState's."""
    from ci.emulator import schema

    kinds = ("GoogleCloudAiplatformV1CustomJob", "GoogleCloudAiplatformV1TrainingPipeline")
    schemas = schema.document()["schemas"]
    return frozenset(n for k in kinds for n in schemas[k]["properties"]["state"]["enum"])


def _time(text: str, field: str) -> dt.datetime:
    # An RFC 3339 timestamp: with its offset ("Z" or "+01:00"); without one it names no
    # instant (and could not be compared with the records' times).
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(
            400, f"Invalid timestamp {text!r} for {field} (RFC 3339, e.g. 2024-01-01T00:00:00Z)."
        )
    return moment


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def order(records: list[dict], order_by: str, fields: dict[str, str]) -> list[dict]:
    """``records`` sorted by ``orderBy`` (``"create_time desc, display_name"``)."""
    keys = []
    for part in filter(None, (p.strip() for p in order_by.split(","))):
        name, _, direction = part.partition(" ")
        key = fields.get(name) or fields.get(_snake(name))
        if key is None or direction.strip().lower() not in ("", "asc", "desc"):
            raise ApiError(400, f"Unsupported orderBy {part!r} (fields: {', '.join(fields)}).")
        keys.append((key, direction.strip().lower() == "desc"))
    for key, descending in reversed(keys):  # stable sorts, least significant key first
        records = sorted(records, key=lambda r, k=key: str(r.get(k) or ""), reverse=descending)
    return records


def page(kind: str, records: list[dict], query: dict, fields: dict[str, str], sortable=None):
    """The list answer ``{kind: [...], "nextPageToken": ...}`` for ``query``.

    ``records`` are in creation order; ``filter``, then ``orderBy`` (when the list has
    ``sortable`` fields), then ``pageSize``/``pageToken``, then ``readMask`` apply.
    """
    text, order_by = query.get("filter", ""), query.get("orderBy", "")
    if text:
        keep = parse_filter(text, fields)
        records = [r for r in records if keep(r)]
    if order_by:
        if sortable is None:
            raise ApiError(400, f"The {kind} list has no orderBy.")
        records = order(records, order_by, sortable)
    size = _page_size(query.get("pageSize"))
    digest = hashlib.sha256(f"{kind}\0{text}\0{order_by}".encode()).hexdigest()[:12]
    start = _offset(query.get("pageToken"), digest)
    chunk = records[start : start + size]
    if query.get("readMask"):
        _check_read_mask(kind, query["readMask"])
        chunk = [masks.read(r, query["readMask"]) for r in chunk]
    answer: dict = {kind: chunk} if chunk else {}
    if start + size < len(records):
        token = json.dumps({"o": start + size, "q": digest}).encode()
        answer["nextPageToken"] = base64.urlsafe_b64encode(token).decode()
    return answer


def _check_read_mask(kind: str, mask: str) -> None:
    """400 for a readMask path whose first field the listed resource does not have."""
    from ci.emulator import schema

    name = "GoogleCloudAiplatformV1" + kind[0].upper() + kind[1:].removesuffix("s")
    fields = schema.document()["schemas"].get(name, {}).get("properties")
    if not fields:
        return
    for path in filter(None, (p.strip() for p in mask.split(","))):
        head = masks.camel(path.split(".")[0])
        if path != "*" and head not in fields:
            raise ApiError(400, f"Invalid readMask path {path!r}: {kind} have no such field.")


def _page_size(text: str | None) -> int:
    if not text:
        return DEFAULT_PAGE_SIZE
    if not re.match(r"^\d+$", text):
        raise ApiError(400, f"Invalid pageSize {text!r}.")
    return min(int(text), MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def _offset(token: str | None, digest: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, same = int(data["o"]), data["q"] == digest
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, f"Invalid pageToken {token!r}.") from None
    if not same:
        raise ApiError(400, "The pageToken belongs to a list with another filter or orderBy.")
    return offset
