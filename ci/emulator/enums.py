"""Enum values in proto3 JSON: a name or its number, both accepted, answered as asked.

The discovery document lists each enum's names but not their numbers, and the numbers
are not always the positions in that list (``acceleratorType``: ``TPU_V2`` is 6, listed
15th). ``enum_numbers.json`` holds the fields whose numbers differ from their positions,
taken from the aiplatform v1 protos; every other enum is numbered by position.
Regenerate it with ``python -m ci.emulator.enums`` where google-cloud-aiplatform is
installed (the dev group); tests/test_sdk.py checks it is current.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("enum_numbers.json")


@functools.cache
def _table() -> dict[str, dict[str, int]]:
    return json.loads(TABLE.read_text())


def numbers(field: str, names: list[str]) -> dict[str, int]:
    """``{name: number}`` of the enum of ``field`` (``Schema.property``)."""
    return _table().get(field) or {name: i for i, name in enumerate(names)}


def to_name(field: str, names: list[str], value):
    """The enum name for ``value`` (a name or a number), or None when it is neither."""
    if isinstance(value, str):
        return value if value in names else None
    if isinstance(value, int) and not isinstance(value, bool):
        return {n: name for name, n in numbers(field, names).items()}.get(value)
    return None


def to_number(field: str, names: list[str], value):
    """The number of the enum name ``value`` (anything else is returned unchanged)."""
    return numbers(field, names).get(value, value) if isinstance(value, str) else value


def generate() -> dict[str, dict[str, int]]:
    """The table from the installed google-cloud-aiplatform protos (dev dependency)."""
    import importlib
    import pkgutil

    import google.cloud.aiplatform_v1.types as types

    from ci.emulator import schema

    messages = {}

    def walk(descriptor) -> None:
        short = descriptor.full_name.removeprefix("google.cloud.aiplatform.v1.")
        messages["GoogleCloudAiplatformV1" + short.replace(".", "")] = descriptor
        for nested in descriptor.nested_types:
            walk(nested)

    files = set()
    for info in pkgutil.iter_modules(types.__path__):
        module = importlib.import_module(f"{types.__name__}.{info.name}")
        for obj in vars(module).values():
            if hasattr(obj, "pb") and isinstance(obj, type):
                files.add(obj.pb().DESCRIPTOR.file)
    for file in files:
        for descriptor in file.message_types_by_name.values():
            walk(descriptor)
    table = {}
    for name, sch in schema.document()["schemas"].items():
        for prop_name, prop in sch.get("properties", {}).items():
            names = prop.get("enum") or prop.get("items", {}).get("enum")
            message = messages.get(name)
            if not names or message is None:
                continue
            field = next((f for f in message.fields if f.json_name == prop_name), None)
            if field is None or field.enum_type is None:
                continue
            found = {v.name: v.number for v in field.enum_type.values if v.name in names}
            if any(found.get(n) != i for i, n in enumerate(names)):
                table[f"{name}.{prop_name}"] = found
    return dict(sorted(table.items()))


if __name__ == "__main__":
    TABLE.write_text(json.dumps(generate(), indent=1, sort_keys=True) + "\n")
    sys.exit(0)
