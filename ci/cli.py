"""``python -m ci COMMAND ...``: the dispatcher only dispatches.

Each command lives in its own module with a ``main(argv) -> int``; modules are imported
lazily so that commands which never touch TensorFlow never pay for importing it.
"""

from __future__ import annotations

import importlib
import sys

from ci.errors import CiError

COMMANDS = {
    "emulator": ("ci.emulator.__main__", "run the local Vertex AI + Cloud Storage emulators"),
    "local-predict": ("ci.local_predict", "predict a JSON-lines file with a local export"),
    "package": ("ci.package", "build the trainer sdist; prints its path"),
    "stage": ("ci.stage", "upload the sdist and data, content-addressed"),
    "train": ("ci.train", "run a training job at a scale tier and wait for it"),
    "gate": ("ci.gate", "compare candidate metrics with thresholds and the champion"),
    "promote": ("ci.promote", "upload, deploy, move 'default', smoke-test a trained job"),
    "predict": ("ci.predict", "send JSON-lines instances to the model's endpoint"),
    "rollback": ("ci.rollback", "move traffic and 'default' back to the previous version"),
    "versions": ("ci.versions", "list versions with aliases, traffic, labels, metrics"),
    "pipeline": ("ci.pipeline", "package → stage → train → gate → promote, the merge path"),
    "tune": ("ci.tune", "run a hyperparameter tuning job from tuning.toml and wait for it"),
    "batch-predict": ("ci.batch_predict", "batch prediction of a JSON-lines file to gs://"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m ci COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"Error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return module.main(rest)
    except CiError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
