"""Scalar curves from TensorBoard event files, read without importing TensorFlow.

Event files are TFRecord files of ``tensorflow.Event`` protocol buffers. TensorFlow's own
readers (``tf.compat.v1.train.summary_iterator``) need ``import tensorflow``, which takes
7-9 s here: more than the report's whole budget. The two formats are small and stable, so
they are decoded here with the standard library; ``tests/test_report.py`` checks the result
against TensorFlow's reader on files written by ``tf.summary``.

A scalar is a summary value with ``simple_value`` (TF1, Keras callbacks of old) or a rank-0
numeric ``tensor`` (``tf.summary.scalar`` in TF2). Histograms, images and text are skipped.
"""

from __future__ import annotations

import struct
from pathlib import Path

# Curves: run -> tag -> [(step, value)] sorted by step.
Curves = dict[str, dict[str, list[tuple[int, float]]]]

# TensorProto dtypes that hold one number, with the struct format of their tensor_content.
_DTYPES = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 4: "<B", 5: "<h", 6: "<b", 17: "<H"}
_HALF = 19


def records(data: bytes):
    """The payloads of a TFRecord byte string; a truncated last record (still being
    written) ends the iteration instead of failing. CRCs are not checked."""
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        start, end = at + 12, at + 12 + length
        if end + 4 > len(data):
            return
        yield data[start:end]
        at = end + 4


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[at]
        result |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return result, at
        shift += 7


def fields(buf: bytes):
    """``(field number, wire type, value)`` of a protobuf message; value is int or bytes."""
    at = 0
    while at < len(buf):
        key, at = _varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buf, at)
        elif wire == 1:
            value, at = buf[at : at + 8], at + 8
        elif wire == 2:
            length, at = _varint(buf, at)
            value, at = buf[at : at + length], at + length
        elif wire == 5:
            value, at = buf[at : at + 4], at + 4
        else:  # groups (3, 4) are not used by these messages
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_scalar(buf: bytes) -> float | None:
    """The number in a rank-0 TensorProto, or None (higher rank, strings, ...)."""
    dtype, content, rank, vals = 0, b"", 0, {}
    for number, wire, value in fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:  # TensorShapeProto: each dim (field 2) adds one to the rank
            rank = sum(1 for n, _, _ in fields(value) if n == 2)
        elif number == 4:
            content = value
        else:  # float_val 5, double_val 6, int_val 7, int64_val 10: packed or one value
            vals.setdefault(number, (wire, value))
    if rank:
        return None
    if content and dtype in _DTYPES:
        return float(struct.unpack_from(_DTYPES[dtype], content)[0])
    if content and dtype == _HALF:
        return float(struct.unpack_from("<e", content)[0])
    for number, fmt in ((5, "<f"), (6, "<d")):
        if number in vals and len(vals[number][1]) >= struct.calcsize(fmt):
            return float(struct.unpack_from(fmt, vals[number][1])[0])
    for number in (7, 10):
        wire, value = vals.get(number, (None, None))
        if wire == 0:
            return float(_signed(value))
        if wire == 2 and value:
            return float(_signed(_varint(value, 0)[0]))
    return None


def _values(summary: bytes):
    for number, _, value in fields(summary):
        if number != 1:
            continue
        tag, scalar = None, None
        for n, _, v in fields(value):
            if n == 1:
                tag = v.decode("utf-8", "replace")
            elif n == 2:
                scalar = struct.unpack("<f", v)[0]
            elif n == 8:
                scalar = _tensor_scalar(v)
        if tag is not None and scalar is not None:
            yield tag, scalar


def scalars(data: bytes) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` of one event file's contents."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records(data):
        step, summary = 0, None
        for number, _, value in fields(record):
            if number == 2:
                step = _signed(value)
            elif number == 5:
                summary = value
        if summary is not None:
            for tag, value in _values(summary):
                out.setdefault(tag, []).append((step, value))
    return out


def is_event_file(path: Path) -> bool:
    """TensorBoard names them ``events.out.tfevents.<time>.<host>...``."""
    return ".tfevents." in path.name


def read_dir(root: Path) -> Curves:
    """Every event file under ``root``; the run is the file's directory relative to
    ``root`` (``train``, ``eval``; ``.`` for files in ``root`` itself). Files of one run
    (a restarted job) are merged; for a step seen twice the later file wins."""
    curves: Curves = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and is_event_file(p)):
        run = path.parent.relative_to(root).as_posix()
        for tag, points in scalars(path.read_bytes()).items():
            merged = dict(curves.setdefault(run, {}).get(tag, []))
            merged.update(points)
            curves[run][tag] = sorted(merged.items())
    return {run: tags for run, tags in curves.items() if tags}
