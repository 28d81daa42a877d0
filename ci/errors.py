"""One exception hierarchy; ``python -m ci`` turns each into a one-line error and exit code."""


class CiError(Exception):
    """Something broke. Messages say what was wrong and, where it helps, what to do."""

    exit_code = 1


class UsageError(CiError):
    """A bad flag, setting or input value."""

    exit_code = 2


class GateRejected(CiError):
    """The evaluation gate said no: not a failure of the tooling, a decision."""

    exit_code = 3


class Interrupted(CiError):
    """Ctrl-C or SIGTERM; the message says what was cleaned up (a cancelled job)."""

    exit_code = 130


class BadInstance(UsageError):
    """A prediction instance that does not fit the model's serving signature."""


class BadData(UsageError):
    """A data file that cannot be used (missing, empty, malformed)."""
