"""Checks for each kind of input value, so every command rejects bad input the same way.

Each function takes the value and what to call it in the message, and raises a one-line
:class:`~ci.errors.UsageError` (exit 2) naming the value: a text file that cannot be read or
is not UTF-8, JSON that does not parse or nests too deeply, a number that is not finite or
not whole, and an output path whose directory is missing or is a file. Output paths are
checked when the flags are parsed, before any work that would be lost.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ci.errors import BadData, UsageError


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or binary file is a BadData error."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadData(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadData(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def parse_json(text: str, source: str) -> Any:
    """``json.loads(text)``; malformed or absurdly nested JSON is a BadData error."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadData(f"{source}: not JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise BadData(f"{source}: JSON nested too deeply") from None


def check_json_lines(path: str | Path, what: str) -> int:
    """The number of instances in a JSON-lines file, read a line at a time (never the whole
    file at once); a file that is not UTF-8, a line that is not JSON, or no instances at all
    is a BadData error naming the file and line."""
    count = 0
    try:
        with Path(path).open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                where = f"{what} {str(path)!r} line {number}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadData(f"{where} is not UTF-8 text (byte {exc.start})") from None
                if not line.strip():
                    continue
                try:
                    parse_json(line, where)
                except BadData as exc:
                    raise BadData(f"{exc}: {line.strip()[:80]!r}") from None
                count += 1
    except OSError as exc:
        raise BadData(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if not count:
        raise BadData(f"{what} {str(path)!r} has no instances")
    return count


def finite(value: float, name: str) -> float:
    """``value`` itself; NaN and infinities are errors (every comparison with NaN is false)."""
    if not math.isfinite(value):
        raise UsageError(f"{name}: {value!r} is not a finite number")
    return value


def number(value: Any, name: str) -> float:
    """A finite float from a number or numeric text; booleans are not numbers."""
    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a number, not {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: expected a number, not {value!r}") from None
    if not math.isfinite(out):
        raise UsageError(f"{name}: {value!r} is not a finite number")
    return out


def whole(value: Any, name: str) -> int:
    """An int from an int or integer text; ``2.5`` is an error, never silently truncated."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"{name}: expected a whole number, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}: expected a whole number, not {value!r}") from None


def output_file(text: str) -> str:
    """An argparse type: a file to write, whose directory exists (checked before the work).

    An empty value means "no file", as an unset ``$GITHUB_STEP_SUMMARY`` expands to.
    """
    if not text:
        return text
    if not text.strip():
        raise argparse.ArgumentTypeError(f"blank file name {text!r}")
    try:
        return _output_file(text)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise argparse.ArgumentTypeError(f"cannot write {_short(text)}: {_why(exc)}") from None


def _short(text: str, limit: int = 120) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _output_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    parent = path.parent
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"directory {str(parent)!r} of {text!r} does not exist")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{str(parent)!r} in {text!r} is not a directory")
    return text


def output_dir(text: str) -> str:
    """An argparse type: a directory to create or reuse; none of its parts may be a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"blank directory name {text!r}")
    try:
        return _output_dir(text)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise argparse.ArgumentTypeError(f"cannot use {_short(text)}: {_why(exc)}") from None


def _output_dir(text: str) -> str:
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f" in {text!r}"
                raise argparse.ArgumentTypeError(f"{str(part)!r}{where} is a file, not a directory")
            break
    return text
