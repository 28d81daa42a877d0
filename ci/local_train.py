"""``python -m ci local-train``: a real training run on this machine, through the entry point.

It runs ``python -m <trainer_module> --job-dir DIR --train-file ... --eval-file ...`` exactly
as a Vertex AI replica would (the package's import root from ``--package-dir`` on
``PYTHONPATH``, flat or src layout, the data files from the settings), then checks the
contract's outputs: ``DIR/metrics.json`` and the export in ``DIR/model``. A pull request
runs it before anything reaches a cloud.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ci import flags, outputs
from ci import package as packaging
from ci.errors import CiError, UsageError
from ci.inputs import output_dir
from ci.settings import Settings, resolve


def command(settings: Settings, job_dir: Path, trainer_args: list[str]) -> list[str]:
    """The trainer's command line (pure)."""
    # -P: the working directory is not on the trainer's path (PYTHONPATH says where it is).
    cmd = [sys.executable, "-P", "-m", settings.trainer_module]
    cmd += ["--job-dir", _path_arg(str(job_dir))]
    for flag, name in (("--train-file", settings.train_file), ("--eval-file", settings.eval_file)):
        if name:
            cmd += [flag, _path_arg(settings.data_path(name))]
    return cmd + trainer_args


def _path_arg(path: str) -> str:
    """A path as the trainer's argument: one starting with '-' would read as a flag."""
    return f"./{path}" if path.startswith("-") else path


def local_train(
    settings: Settings, package_dir: Path, job_dir: Path, trainer_args: list[str]
) -> dict:
    """Train in a child process and return the job's ``metrics.json``."""
    path = python_path(package_dir, settings.trainer_module, os.environ.get("PYTHONPATH", ""))
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = command(settings, job_dir, trainer_args)
    print("$ " + shlex.join(["python", *cmd[1:]]), flush=True)
    code, reason = _run(cmd, env)
    if code != 0:
        why = f": {reason}" if reason else ""
        # Status 2 is argparse's (and the contract's) "bad arguments": --trainer-args.
        error = UsageError if code == 2 else CiError
        raise error(f"the trainer {settings.trainer_module} exited with status {code}{why}")
    metrics = job_dir / "metrics.json"
    if not metrics.is_file():
        raise CiError(f"the trainer wrote no {metrics} (the contract's last output)")
    if not (job_dir / "model" / "saved_model.pb").is_file():
        raise CiError(f"the trainer wrote no SavedModel in {job_dir / 'model'}")
    try:
        return json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CiError(f"the trainer wrote an unreadable {metrics} ({exc})") from None


# The tooling's own root: on the tooling's path (PYTHONPATH=.ci-tooling in the workflows),
# never on the trainer's, where its example `trainer` package could shadow the caller's.
TOOLING_ROOT = Path(__file__).resolve().parents[1]


def python_path(package_dir: Path, module: str, inherited: str) -> str:
    """The trainer's PYTHONPATH: its package's import root first (``package_dir``, or
    ``package_dir/src`` for a src layout), then what was inherited less the tooling's root.

    On a replica the sdist is installed and nothing else of ours is importable; here the
    package is imported from its tree, so a module that is neither there nor installed is
    refused by name before a process starts.
    """
    if not package_dir.is_dir():
        raise UsageError(f"package directory not found: {str(package_dir)!r}")
    top = module.split(".")[0]
    root = package_dir.resolve()
    if not _holds(root, top) and _holds(root / "src", top):
        root = root / "src"  # src layout
    rest = [e for e in inherited.split(os.pathsep) if e and not _same(e, TOOLING_ROOT)]
    rest = [e for e in rest if not _same(e, root)]
    entries = [str(root), *rest]
    site = [e for e in sys.path if e.endswith(("site-packages", "dist-packages"))]
    if importlib.machinery.PathFinder.find_spec(top, entries + site) is None:
        raise UsageError(
            f"trainer module {module!r}: no package {top!r} in package directory "
            f"{str(package_dir)!r} (nor its src/), and none installed (setting trainer_module, "
            "--package-dir)"
        )
    return os.pathsep.join(entries)


def _holds(directory: Path, top: str) -> bool:
    return (directory / top).is_dir() or (directory / f"{top}.py").is_file()


def _same(entry: str, path: Path) -> bool:
    try:
        return Path(entry).resolve() == path
    except (OSError, RuntimeError):
        return False


ERROR_PREFIX = "Error: "


def _run(cmd: list[str], env: dict) -> tuple[int, str]:
    """Run the trainer, its stderr passed through line by line as it comes; return its exit
    status and, when its last line was an ``Error: ...`` line, that message.

    That line is held back and becomes part of ci's own one ``Error:`` line, so a failing
    trainer's diagnostic is shown once, not as a second ``Error:`` line.
    """
    held = None
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if held is not None:
                print(held, file=sys.stderr, flush=True)
                held = None
            if line.startswith(ERROR_PREFIX):
                held = line
            else:
                print(line, file=sys.stderr, flush=True)
        code = proc.wait()
    except BaseException:  # Ctrl-C or SIGTERM: no trainer is left running
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        proc.stderr.close()
    if held is not None and code == 0:
        print(held, file=sys.stderr, flush=True)
    reason = held[len(ERROR_PREFIX) :].strip() if held is not None and code != 0 else ""
    return code, reason


def summary(job_dir: Path, metrics: dict) -> str:
    """Markdown: the top-level numeric metrics of the run."""
    rows = "".join(
        f"| {k} | {v:.4g} |\n"
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    table = f"| metric | value |\n| --- | --- |\n{rows}"
    return f"### Local training\n\nExport: `{job_dir / 'model'}`\n\n{table}"


def main(argv: list[str]) -> int:
    parser = flags.parser("local-train", __doc__)
    parser.add_argument(
        "--job-dir",
        type=lambda text: Path(output_dir(text)),
        default=Path("build/local-job"),
        help="default build/local-job",
    )
    parser.add_argument(
        "--trainer-args",
        default="",
        metavar="ARGS",
        help="more trainer flags, one string split like a shell would, e.g. '--train-steps 300'",
    )
    packaging.add_package_dir(parser)
    args = parser.parse_args(argv)
    try:
        trainer_args = shlex.split(args.trainer_args)
    except ValueError as exc:
        raise UsageError(f"--trainer-args {args.trainer_args!r}: {exc}") from None
    metrics = local_train(resolve(args), Path(args.package_dir), args.job_dir, trainer_args)
    outputs.write_outputs(args.outputs, {"job_dir": args.job_dir, "metrics": metrics})
    outputs.write_summary(args.summary, summary(args.job_dir, metrics))
    print(f"export: {args.job_dir / 'model'}; metrics: {args.job_dir / 'metrics.json'}")
    return 0
