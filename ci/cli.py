"""``python -m ci COMMAND ...``: the dispatcher only dispatches.

Each command lives in its own module with a ``main(argv) -> int``; modules are imported
lazily so that commands which never touch TensorFlow never pay for importing it.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import threading
import traceback
from pathlib import Path

from ci.errors import CiError
from ci.inputs import did_you_mean, shorten_quoted, shown

COMMANDS = {
    "emulator": ("ci.emulator.__main__", "run the local Vertex AI + Cloud Storage emulators"),
    "local-train": ("ci.local_train", "train through the trainer's entry point on this machine"),
    "local-predict": ("ci.local_predict", "predict a JSON-lines file with a local export"),
    "package": ("ci.package", "build the trainer sdist; prints its path"),
    "stage": ("ci.stage", "upload the sdist and data, content-addressed"),
    "train": ("ci.train", "run a training job at a scale tier and wait for it"),
    "gate": ("ci.gate", "compare candidate metrics with thresholds and the champion"),
    "promote": ("ci.promote", "upload, smoke-test on staging, deploy, move 'default'"),
    "predict": ("ci.predict", "send JSON-lines instances to the model's endpoint"),
    "rollback": ("ci.rollback", "move traffic and 'default' back to the previous version"),
    "versions": ("ci.versions", "list versions with aliases, traffic, labels, metrics"),
    "pipeline": ("ci.pipeline", "package → stage → train → gate → promote, the merge path"),
    "report": ("ci.report", "report.md, plots and index.html: a job against the champion"),
    "pr-comment": ("ci.pr_comment", "post or update the one report comment on a pull request"),
    "workflow-plan": ("ci.workflow", "check train-and-deploy's inputs and decide how it runs"),
    "tune": ("ci.tune", "run a hyperparameter tuning job from tuning.toml and wait for it"),
    "batch-predict": ("ci.batch_predict", "batch prediction of a JSON-lines file to gs://"),
    "install-deps": ("ci.install_deps", "install a dependency group of the tooling unless present"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m ci COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` defaults to ``sys.argv[1:]`` (the console script's way)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("Error: no command given (python -m ci --help lists them)", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    # A NUL byte cannot be in a path, a name or a URI (and no shell can pass one).
    nul = next((a for a in argv if "\x00" in a), None)
    if nul is not None:
        print(f"Error: argument {shown(nul)} contains a NUL byte", file=sys.stderr)
        return 2
    if name not in COMMANDS:
        known = did_you_mean(name, COMMANDS) or f" (one of: {', '.join(COMMANDS)})"
        print(f"Error: unknown command {shown(name)}{known}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # SIGTERM (a cancelled workflow, `kill`) is handled like Ctrl-C: commands clean up
    # what they started (a running job is cancelled) and exit 130. SIGINT too, explicitly:
    # a process started in the background by a shell inherits SIGINT ignored, and its
    # Ctrl-C (or a runner's SIGINT) would then leave the job running.
    main_thread = threading.current_thread() is threading.main_thread()
    saved = {}
    if main_thread:
        for sig in (signal.SIGTERM, signal.SIGINT):
            saved[sig] = signal.signal(sig, _interrupt)
    try:
        return module.main(rest)
    except CiError as exc:
        print(f"Error: {shorten_quoted(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, and what to report
        if isinstance(exc, OSError) and exc.errno in _BAD_PATH and exc.filename is not None:
            # A path given that the system refuses (too long, a directory...): named.
            print(f"Error: {shown(str(exc.filename))}: {exc.strerror}", file=sys.stderr)
            return 2
        where = traceback.extract_tb(exc.__traceback__)[-1]
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        print(
            f"Error: unexpected {type(exc).__name__}: {first} (at {Path(where.filename).name}:"
            f"{where.lineno}; a bug in ci, please report it with the command)",
            file=sys.stderr,
        )
        return 1
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# What a path given on the command line or in the settings can be wrong with: bad input.
_BAD_PATH = {
    errno.ENAMETOOLONG,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.ELOOP,
    errno.EROFS,
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt
