"""Argument parsing shared by the commands: one-line errors and checked number types."""

from __future__ import annotations

import argparse
import functools
import re

from ci import outputs, settings
from ci.errors import UsageError
from ci.inputs import did_you_mean, parse_json, shown

# A --timeout above this is a typo: Vertex AI runs a custom job for at most 7 days.
TIMEOUT_MAX = 7 * 86_400.0
# Vertex AI allows at most 64 labels on a resource.
MAX_LABELS = 64

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
        raise UsageError(f"{self.prog}: {message}{self._near_miss(message)}")

    def _near_miss(self, message: str) -> str:
        """`` (did you mean '--config'?)`` for a misspelt flag argparse did not recognize."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        flag = next((a for a in message.split(":", 1)[1].split() if a.startswith("--")), "")
        return did_you_mean(flag.partition("=")[0], self._option_string_actions) if flag else ""


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


def _int_from(text: str, low: int) -> int:
    """An integer from ``low`` to the settings' INT_MAX (what an API field takes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {shown(text)}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}: {shown(text)}")
    if value > settings.INT_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {settings.INT_MAX}: {shown(text)}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (and at most 2,147,483,647)."""
    return _int_from(text, 1)


def count(text: str) -> int:
    """An argparse type: an integer of at least 0 (and at most 2,147,483,647)."""
    return _int_from(text, 0)


def positive_float(text: str) -> float:
    """An argparse type: seconds above 0, at most :data:`TIMEOUT_MAX`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not value > 0 or value == float("inf"):  # NaN compares false with everything
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    if value > TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"at most {TIMEOUT_MAX:g} seconds (7 days, Vertex AI's longest job): {text!r}"
        )
    return value


def display_name(text: str) -> str:
    """An argparse type: a Vertex AI display name (up to 128 printable characters)."""
    try:
        settings.DISPLAY_NAME.check(text, "display name")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


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
        value = parse_json(text, "labels", strict=True)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(f"not a JSON object: {shown(text)} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {shown(text)}")
    if len(value) > MAX_LABELS:
        raise argparse.ArgumentTypeError(f"{len(value)} labels; Vertex AI allows {MAX_LABELS}")
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
