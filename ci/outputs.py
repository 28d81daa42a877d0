"""Values and reports for the steps that follow: GitHub's ``$GITHUB_OUTPUT`` and step summary.

Both are plain files that a command appends to, so the same flags work on a laptop
(``--outputs out.txt``) and in a workflow (``--outputs "$GITHUB_OUTPUT"``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ci.errors import UsageError
from ci.inputs import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The two flags every value-producing command accepts."""
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        type=output_file,
        help="append key=value lines (GitHub $GITHUB_OUTPUT format)",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        type=output_file,
        help="append a Markdown report ($GITHUB_STEP_SUMMARY)",
    )


def compact_json(value) -> str:
    """``value`` as JSON on one line: a string's newlines are escaped, not printed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def one_line(value) -> str:
    """Render an output value on one line: dicts and lists as compact JSON."""
    if isinstance(value, dict | list):
        return compact_json(value)
    text = str(value)
    if "\n" in text or "\r" in text:  # GitHub's runner ends a line at either
        raise UsageError(f"output value spans several lines: {text[:40]!r}")
    return text


def write_outputs(path: str | None, values: dict) -> None:
    """Append ``key=value`` lines to ``path`` (nothing when no path was given)."""
    if not path:
        return
    lines = "".join(f"{key}={one_line(value)}\n" for key, value in values.items())
    with Path(path).open("a") as fh:
        fh.write(lines)


def write_summary(path: str | None, markdown: str) -> None:
    """Append a Markdown block to ``path`` (nothing when no path was given)."""
    if not path:
        return
    with Path(path).open("a") as fh:
        fh.write(markdown.rstrip("\n") + "\n\n")
