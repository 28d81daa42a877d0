"""Checks for each kind of input value, so every command rejects bad input the same way.

Each function takes the value and what to call it in the message, and raises a one-line
:class:`~ci.errors.UsageError` (exit 2) naming the value: a text file that cannot be read or
is not UTF-8, JSON that does not parse or nests too deeply, a number that is not finite or
not whole, and an output path whose directory is missing or is a file. Output paths are
checked when the flags are parsed, before any work that would be lost.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from ci.errors import BadData, UsageError


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path`` (after a byte order mark, if any: editors on Windows write
    one); a missing, unreadable or binary file is a BadData error."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a byte order mark is no text
    except UnicodeDecodeError as exc:
        raise BadData(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadData(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def shown(value: str, limit: int = 120) -> str:
    """``repr(value)``, shortened: an error line names a 100,000-character value by its start."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


# A quoted value in a message, long enough to drown the line it is in.
_LONG_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.){200,}'|\"(?:[^\"\\\n]|\\.){200,}\"")


def shorten_quoted(message: str, limit: int = 120) -> str:
    """``message`` with each long quoted value cut to its start and its length, so that an
    error naming a 10,000-character value stays one readable line."""

    def cut(match: re.Match) -> str:
        text = match[0]
        return f"{text[:limit]}... ({len(text) - 2} characters)"

    return _LONG_QUOTED.sub(cut, message)


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for a near miss of one of ``known``, else ''."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# PEP 508: a requirement starts with a project name (never "-": pip would take an option).
_REQUIREMENT_START = re.compile(r"\s*[A-Za-z0-9]")


def is_requirement(text: str) -> bool:
    """Whether ``text`` can be a PEP 508 requirement (pip's options, ``--index-url=...``,
    cannot: handed to pip they would change where it installs from)."""
    return bool(_REQUIREMENT_START.match(text))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def parse_json(text: str, source: str, strict: bool = False) -> Any:
    """``json.loads(text)``; malformed or absurdly nested JSON is a BadData error.

    ``strict``: NaN, Infinity and numbers too large for a float are refused too (they are
    not JSON, and a server would refuse what ``json.dumps`` makes of them).
    """
    hooks = {"parse_constant": _no_constant, "parse_float": _finite_float} if strict else {}
    try:
        return json.loads(text, **hooks)
    except ValueError as exc:
        raise BadData(f"{source}: not JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise BadData(f"{source}: JSON nested too deeply") from None


def json_lines_hint(number: int, line: str) -> str:
    """A hint for a first line that does not parse but opens an array or object: the file
    is likely one JSON document over several lines, not JSON lines."""
    if number == 1 and line.lstrip().startswith(("[", "{")):
        return " (one JSON document over several lines? instances are JSON lines: one a line)"
    return ""


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
                    parse_json(line, where, strict=True)
                except BadData as exc:
                    hint = json_lines_hint(number, line)
                    raise BadData(f"{exc}: {line.strip()[:80]!r}{hint}") from None
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


def optional_file(path: str | Path, what: str) -> bool:
    """Whether the default file ``path`` is there: True for a file, False when nothing is;
    anything else at that name (a directory, a symlink loop or to nothing) is a BadData error,
    never silently taken for "no file"."""
    path = Path(path)
    if path.is_file():
        return True
    if not os.path.lexists(path):
        return False
    raise BadData(f"{what} {str(path)!r} is not a file ({_not_a_file(path)})")


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "a directory"
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return "a symbolic link to nothing" if path.is_symlink() else (exc.strerror or str(exc))
    return "not a regular file"


def input_file(text: str) -> str:
    """An argparse type: a file to read; a blank name is an error (it would read '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"blank file name {text!r}")
    return text


def output_file(text: str) -> str:
    """An argparse type: a file to write, whose directory exists (checked before the work).

    An empty value means "no file", as an unset ``$GITHUB_STEP_SUMMARY`` expands to.
    """
    if not text:
        return text
    if not text.strip():
        raise argparse.ArgumentTypeError(f"blank file name {text!r}")
    _no_control(text)
    try:
        return _output_file(text)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise argparse.ArgumentTypeError(f"cannot write {shown(text)}: {_why(exc)}") from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(text: str) -> None:
    """An output path is echoed in ``key=value`` lines and messages: a newline, a carriage
    return or another control character in it would split or garble them."""
    if _CONTROL.search(text):
        raise argparse.ArgumentTypeError(f"control character in the path {shown(text)}")


def _writable(directory: Path, text: str) -> None:
    """A directory the output goes in must let us create files (checked before the work)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"directory {str(directory)!r} of {text!r} is read-only")


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _output_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if path.is_symlink() and not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} is {_not_a_file(path)}")
    if path.is_file():  # opening to append creates nothing and changes nothing
        with path.open("a"):
            pass
        return text
    parent = path.parent
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"directory {str(parent)!r} of {text!r} does not exist")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{str(parent)!r} in {text!r} is not a directory")
    _writable(parent, text)
    return text


def output_dir(text: str) -> str:
    """An argparse type: a directory to create or reuse; none of its parts may be a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"blank directory name {text!r}")
    _no_control(text)
    try:
        return _output_dir(text)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise argparse.ArgumentTypeError(f"cannot use {shown(text)}: {_why(exc)}") from None


def _output_dir(text: str) -> str:
    path = Path(text)
    for part in (path, *path.parents):
        if part.is_symlink() and not part.exists():
            where = "" if part == path else f" in {text!r}"
            raise argparse.ArgumentTypeError(f"{str(part)!r}{where} is {_not_a_file(part)}")
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f" in {text!r}"
                raise argparse.ArgumentTypeError(f"{str(part)!r}{where} is a file, not a directory")
            _writable(part, text)
            break
    return text
