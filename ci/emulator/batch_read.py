"""A batch prediction job's input, read as Vertex documents it for custom-trained models.

https://cloud.google.com/vertex-ai/docs/predictions/get-batch-predictions: each input format
becomes the instances sent to the model, and each instance has what its output line names it
by (``"instance": <what was sent>``, the URI for a file list, or ``"key": <value>`` with
``instanceConfig.keyField``):

- ``jsonl``: one JSON value per line;
- ``csv``: a header row, then one instance per row, sent as an array; quoted cells are
  strings, the others are read as floating point numbers;
- ``tf-record`` / ``tf-record-gzip``: each record as ``{"b64": <the record's bytes>}``;
- ``file-list``: each line a ``gs://`` URI, the object's content as ``{"b64": ...}``.

Everything streams: lines and records are read a chunk at a time, never a whole object.
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
import struct
import zlib
from dataclasses import dataclass

from ci.emulator.httpd import ApiError

CHUNK = 8 << 20  # bytes per read from the storage emulator


@dataclass(slots=True)
class Item:
    """One input instance: the JSON its output line starts with (``"instance": …`` or
    ``"key": …``), the instance to send, or why it cannot be sent (an error line)."""

    head: str
    instance: object = None
    error: str = ""
    status: str = "INVALID_ARGUMENT"


class Unreadable(Exception):
    """A file whose content cannot be read on (a partial failure: the job goes on)."""


def _instance(value_json: str) -> str:
    return f'"instance": {value_json}'


def _text(raw: bytes) -> str:
    return json.dumps(raw.decode("utf-8", errors="replace"))


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class Shape:
    """``instanceConfig``: which fields are sent, as an object or an array, and the key."""

    def __init__(self, config: dict | None):
        config = config or {}
        self.type = config.get("instanceType") or ""
        self.key = config.get("keyField") or ""
        self.included = list(config.get("includedFields") or [])
        self.excluded = list(config.get("excludedFields") or [])
        self.selects = bool(self.key or self.included or self.excluded)

    def columns(self, header: list[str], uri: str) -> None:
        """A CSV file's header must hold every field the config names."""
        for field in ([self.key] if self.key else []) + self.included + self.excluded:
            if field not in header:
                raise ApiError(
                    400,
                    f"instance_config names field {field!r}, which is not a column of {uri} "
                    f"(header: {', '.join(header)}).",
                )

    def value(self, value, original: str, ordered: bool = False) -> Item:
        """The instance sent for one input value (``original``: its JSON)."""
        if not isinstance(value, dict):
            if self.selects or self.type == "object":
                return Item(
                    _instance(original), error="instance_config: the line must be an object"
                )
            if self.type == "array" and not isinstance(value, list):
                return Item(_instance(original), error="instance_config: the line must be an array")
            return Item(_instance(original), value)
        head = _instance(original)
        if self.key:
            if self.key not in value:
                return Item(head, error=f"instance_config.key_field {self.key!r} is missing")
            head = f'"key": {json.dumps(value[self.key])}'
        missing = [f for f in self.included if f not in value]
        if missing:
            return Item(head, error=f"instance_config.included_fields: {missing[0]!r} is missing")
        if self.included:
            fields = {f: value[f] for f in self.included if f != self.key}
        else:
            fields = {f: v for f, v in value.items() if f not in self.excluded and f != self.key}
        if self.type == "array" or (ordered and self.type != "object"):
            if not (ordered or self.included):
                return Item(
                    head,
                    error="instance_config.included_fields must give the order of an object's "
                    "fields to send it as an array",
                )
            instance = list(fields.values())
        else:
            instance = fields
        if not self.key and not self.excluded:
            head = _instance(json.dumps(instance))  # "instance": what was sent
        return Item(head, instance)


def lines(stream, chunk_size: int = CHUNK):
    """The non-blank lines of a binary stream (without their end of line), chunk by chunk.
    A line that spans many chunks is joined once, when it ends: time linear in its length."""
    pending: list[bytes] = []  # the unfinished line's pieces
    while chunk := stream.read(chunk_size):
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            pending.append(chunk)
            continue
        parts[0] = b"".join([*pending, parts[0]])
        pending = [parts.pop()]
        for line in parts:
            if line.strip():
                yield line.rstrip(b"\r")
    rest = b"".join(pending)
    if rest.strip():
        yield rest.rstrip(b"\r")


def _decoded(raw: bytes) -> tuple[str | None, Item | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Item(_instance(_text(raw)), error=f"The line is not UTF-8 text: {exc}")


def jsonl(stream, shape: Shape):
    for raw in lines(stream):
        text, bad = _decoded(raw)
        if bad:
            yield bad
            continue
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            yield Item(_instance(json.dumps(text)), error=f"Not JSON: {exc}")
            continue
        if shape.selects or shape.type:
            yield shape.value(value, text.strip())
        else:
            yield Item(_instance(text.strip()), value)


def csv_rows(stream, shape: Shape, uri: str):
    header = None
    for raw in lines(stream):
        text, bad = _decoded(raw)
        if bad:
            yield bad
            continue
        if header is None:
            header = next(csv.reader([text]))
            shape.columns(header, uri)
            continue
        try:
            values = next(csv.reader([text], quoting=csv.QUOTE_NONNUMERIC))
        except (ValueError, csv.Error) as exc:
            message = f"Not a CSV row of quoted strings and unquoted numbers: {exc}"
            yield Item(_instance(json.dumps(text)), error=message)
            continue
        if len(values) != len(header):
            message = f"The row has {len(values)} values; the header has {len(header)} columns"
            yield Item(_instance(json.dumps(values)), error=message)
        elif shape.selects or shape.type == "object":
            yield shape.value(dict(zip(header, values, strict=True)), json.dumps(values), True)
        else:
            yield Item(_instance(json.dumps(values)), values)


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def tf_records(stream, uri: str, gzipped: bool):
    """``{"b64": …}`` per record: 8-byte length, its masked CRC-32C, the data, its CRC."""
    if gzipped:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    offset = 0
    try:
        while head := _exactly(stream, 12):
            length, crc = struct.unpack("<QI", head) if len(head) == 12 else (0, None)
            if crc is None or _masked_crc(head[:8]) != crc:
                raise Unreadable(f"{uri}: corrupted TFRecord length at byte {offset}")
            data, (footer,) = _exactly(stream, length), struct.unpack("<I", _exactly(stream, 4))
            if len(data) < length or _masked_crc(data) != footer:
                raise Unreadable(f"{uri}: corrupted TFRecord data at byte {offset}")
            offset += 16 + length
            b64 = json.dumps({"b64": base64.b64encode(data).decode("ascii")})
            yield Item(_instance(b64), json.loads(b64))
    except struct.error:
        raise Unreadable(f"{uri}: truncated TFRecord at byte {offset}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise Unreadable(f"{uri}: not a gzip-compressed TFRecord file: {exc}") from None


def file_list(stream, client):
    """One instance per listed object: its content, base64-encoded."""
    from google.api_core.exceptions import NotFound

    for raw in lines(stream):
        text, bad = _decoded(raw)
        if bad:
            yield bad
            continue
        uri = text.strip()
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if not uri.startswith("gs://") or not bucket or not name:
            yield Item(_instance(json.dumps(uri)), error=f"Not a gs:// object URI: {uri!r}")
            continue
        try:
            data = client.bucket(bucket).blob(name).download_as_bytes()
        except NotFound:
            yield Item(_instance(json.dumps(uri)), error=f"{uri} not found.", status="NOT_FOUND")
            continue
        yield Item(_instance(json.dumps(uri)), {"b64": base64.b64encode(data).decode("ascii")})
