"""Argument parsing shared by the commands: one-line errors and checked number types."""

from __future__ import annotations

import argparse
import functools
import json
import re

from ci import outputs, settings
from ci.errors import UsageError

# Help is wrapped at a fixed width, not the terminal's, so docs/cli.md can be generated.
HELP_WIDTH = 100


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageError (one line, exit code 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "formatter_class", functools.partial(argparse.HelpFormatter, width=HELP_WIDTH)
        )
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def parser(
    command: str, doc: str | None, with_settings: bool = True, with_outputs: bool = True
) -> Parser:
    """A parser for ``python -m ci COMMAND`` with --outputs/--summary and the settings flags."""
    # Every setting is a flag too; listing them all in the usage line would bury the rest.
    usage = "%(prog)s [options]" + (" [settings]" if with_settings else "")
    p = Parser(
        prog=f"python -m ci {command}", usage=usage, description=(doc or "").split("\n\n")[0]
    )
    if with_outputs:
        outputs.add_arguments(p)
    if with_settings:
        settings.add_arguments(p)
    return p


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):  # NaN compares false with everything
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    return value


def percent(text: str) -> int:
    """An argparse type: a whole percentage, 1 to 100."""
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a percentage is at most 100: {text!r}")
    return value


# Vertex AI's label rules: a key starts with a letter; both are at most 63 of [a-z0-9_-].
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def labels(text: str) -> dict[str, str]:
    """An argparse type: labels as a JSON object of strings (``ci tune``'s version_labels).

    An empty string is no labels, so a workflow can pass an output that was never set.
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    for key, item in value.items():
        if not _LABEL_KEY.fullmatch(key):
            raise argparse.ArgumentTypeError(f"bad label key {key!r} (a-z first, then a-z0-9_-)")
        if not isinstance(item, str) or not _LABEL_VALUE.fullmatch(item):
            raise argparse.ArgumentTypeError(f"bad value {item!r} of label {key!r}")
    return value


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: our flags, then arguments for the trainer."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []
