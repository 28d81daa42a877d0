"""``patch`` semantics shared by endpoints and models: update masks and etags.

An update mask (``updateMask=display_name,labels``, snake_case or camelCase, as
``google.protobuf.FieldMask`` allows) names the fields to replace; the rest of the body
is ignored. An etag sent with the body must be the resource's current one, otherwise the
update is refused with ABORTED (AIP-154), and every change gives the resource a new etag.
"""

from __future__ import annotations

import copy
import re
import uuid

from ci.emulator.httpd import ApiError, field_error


def fields(mask: str | None, allowed: tuple[str, ...]) -> list[str]:
    """The camelCase fields of ``mask``; 400 for an empty mask or a field not in ``allowed``."""
    names = [_camel(p.strip()) for p in (mask or "").split(",") if p.strip()]
    if not names:
        raise field_error("update_mask")
    for name in names:
        if name not in allowed:
            snake = ", ".join(_snake(a) for a in allowed)
            raise field_error(
                "update_mask", f"update_mask path {_snake(name)!r} cannot be updated ({snake})."
            )
    return names


def check_etag(body: dict, current: set, what: str) -> None:
    """Refuse an etag not in ``current`` (a missing one means "overwrite", as on Vertex)."""
    sent = body.get("etag")
    if sent and sent not in current:
        raise ApiError(
            409,
            f"The etag of {what} does not match: it was changed since it was read; "
            "read it again and retry.",
            "ABORTED",
        )


def apply(record: dict, body: dict, names: list[str]) -> None:
    """Copy each named field from ``body`` (absent there: cleared) into ``record``."""
    for name in names:
        if name in body and body[name] not in (None, "", {}, []):
            record[name] = copy.deepcopy(body[name])
        else:
            record.pop(name, None)


def read(record: dict, mask: str) -> dict:
    """``record`` with only the fields ``mask`` names (a list's ``readMask``: snake_case or
    camelCase paths, ``a.b`` for a nested field); ``*`` or an empty mask keeps everything."""
    paths = [_camel(p.strip()) for p in mask.split(",") if p.strip()]
    if not paths or "*" in paths:
        return record
    kept: dict = {}
    for path in paths:
        _copy_path(record, kept, path.split("."))
    return kept


def _copy_path(source: dict, target: dict, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head not in source:
        return
    if not rest:
        target[head] = copy.deepcopy(source[head])
    elif isinstance(source[head], dict):
        _copy_path(source[head], target.setdefault(head, {}), rest)
    # a path into a list or a scalar selects nothing more than proto3 JSON could send


def new_etag() -> str:
    """A fresh opaque etag."""
    return uuid.uuid4().hex[:16]


def camel(name: str) -> str:
    """A field mask path's snake_case name as its JSON name (``display_name`` → ``displayName``)."""
    return _camel(name)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m[1].upper(), name)


def snake(name: str) -> str:
    """A JSON name as its proto (snake_case) name, as Vertex's messages spell fields."""
    return _snake(name)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def partial_response(body, selector: str):
    """``body`` cut down to Google's ``fields`` system parameter (partial response:
    ``name,displayName``, ``a/b`` for a nested field, ``models(name,labels)`` for fields of
    each item, ``*`` for every field); 400 for a selector that does not parse."""
    return _select(body, _selector(selector))


def _selector(text: str) -> dict:
    """The tree of ``text``: field → None (all of it) or a sub-tree."""
    tree, rest = _selection(text.replace(" ", ""), 0)
    if rest != len(text.replace(" ", "")) or not tree:
        raise ApiError(400, f"Invalid field selection {text!r} (the fields parameter).")
    return tree


def _selection(text: str, at: int) -> tuple[dict, int]:
    """Parse ``item (',' item)*`` from ``at``; the tree and where parsing stopped."""
    tree: dict = {}
    while True:
        match = re.compile(r"[A-Za-z_*][\w/*]*").match(text, at)
        if match is None:
            return tree, at
        parts = [_camel(p) for p in match[0].split("/")]
        at = match.end()
        sub = None
        if text.startswith("(", at):
            sub, at = _selection(text, at + 1)
            if not sub or not text.startswith(")", at):
                return tree, at  # the caller sees it did not reach the end
            at += 1
        _merge(tree, parts, sub)
        if not text.startswith(",", at):
            return tree, at
        at += 1


def _merge(tree: dict, parts: list[str], sub: dict | None) -> None:
    head = parts[0]
    if len(parts) == 1:
        if sub is None or tree.get(head, {}) is None:
            tree[head] = None
        else:
            tree[head] = {**(tree.get(head) or {}), **sub}
        return
    if tree.get(head, {}) is not None:
        _merge(tree.setdefault(head, {}), parts[1:], sub)


def _select(value, tree: dict | None):
    if tree is None or ("*" in tree and len(tree) == 1):
        return value
    if isinstance(value, list):
        return [_select(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in tree:
        return {k: _select(v, tree.get(k)) for k, v in value.items()}
    return {k: _select(value[k], sub) for k, sub in tree.items() if k in value}
