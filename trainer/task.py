"""``python -m trainer.task``: the one entry point, locally and on the training service.

Only parses flags and calls the training function; errors come out as one line.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet start-up
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from trainer import constants as C

# Packages that `import tensorflow` loads whenever they are installed, for features training
# never uses: Keras's plotting helpers import matplotlib (0.5 s) and TensorFlow's GCE
# cluster resolver googleapiclient (0.2 s), of a 3.7 s start where both are installed.
_UNUSED_BY_TENSORFLOW = ("matplotlib", "googleapiclient")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"Error: {message}\n")


def _positive(kind, most=None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}: {text!r}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an int: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1: {text!r}")
    return value


def _units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(u) for u in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers like 10,10: {text!r}")
    if max(units) > C.MAX_HIDDEN_UNITS:
        raise argparse.ArgumentTypeError(
            f"a layer may have at most {C.MAX_HIDDEN_UNITS} units: {text!r}"
        )
    return units


def parse_args(argv: list[str]):
    p = _parser()
    args = p.parse_args(argv)
    if not args.job_dir:
        model_dir = os.environ.get("AIP_MODEL_DIR", "").rstrip("/")
        if not model_dir:
            p.error("--job-dir is required when AIP_MODEL_DIR is not set")
        args.job_dir = model_dir.rsplit("/", 1)[0]
    return args


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m trainer.task", description="Train the Iris classifier.")
    p.add_argument(
        "--job-dir",
        help="output root, a local path or gs:// URI; the export goes to "
        "<job-dir>/model (or $AIP_MODEL_DIR) and metrics to <job-dir>/metrics.json "
        "(default: the parent of $AIP_MODEL_DIR)",
    )
    p.add_argument(
        "--train-file",
        default="data/iris_training.csv",
        help="training CSV, local or gs://; a glob or a comma-separated list reads shards, "
        "split by file among workers (default: %(default)s)",
    )
    p.add_argument(
        "--eval-file",
        default="data/iris_test.csv",
        help="evaluation CSV, local or gs://; a glob or a comma-separated list reads "
        "shards (default: %(default)s)",
    )
    p.add_argument(
        "--train-steps",
        type=_positive(int),
        default=C.TRAIN_STEPS,
        help="global training steps (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive(int, C.MAX_BATCH_SIZE),
        default=C.BATCH_SIZE,
        help=f"examples per step and replica, at most {C.MAX_BATCH_SIZE} (default: %(default)s)",
    )
    p.add_argument(
        "--learning-rate",
        type=_positive(float),
        default=C.LEARNING_RATE,
        help="Adam learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--hidden-units",
        type=_units,
        default=C.HIDDEN_UNITS,
        help="hidden layer sizes, comma-separated (default: 10,10)",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=C.SEED,
        help="seed of the initial weights and the shuffling; the same seed, data and flags "
        "train the same model (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from trainer import cluster, inputs

    # The inputs first, TensorFlow second: a bad file fails in a fraction of a second, and
    # a job's downloads are done when its training starts.
    with tempfile.TemporaryDirectory(prefix="trainer-inputs-") as work:
        try:
            role = cluster.role()
            ready = (
                None if role.idle else inputs.prepare(args.train_file, args.eval_file, role, work)
            )
        except (inputs.DataError, FileNotFoundError, ValueError) as exc:
            print(f"Error: {_one_line(exc)}", file=sys.stderr)
            return 1
        return _train(args, ready)


def _train(args, ready) -> int:
    atexit.register(_forget_autograph_bytecode)  # before TensorFlow's: runs after it
    tf = _import_tensorflow()
    from trainer import data, train

    config = train.Config(
        job_dir=args.job_dir,
        train_file=args.train_file,
        eval_file=args.eval_file,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hidden_units=args.hidden_units,
        seed=args.seed,
    )
    try:
        train.run(config, ready)
    except (data.DataError, FileNotFoundError, ValueError, train.TrainingError) as exc:
        print(f"Error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except tf.errors.OpError as exc:
        message = data.bad_data_message(exc)
        if message is None:
            raise
        print(f"Error: {_one_line(message)}", file=sys.stderr)
        return 1
    return 0


def _one_line(message, limit: int = 1000) -> str:
    """The message on one line and of a readable length, whatever it quotes."""
    text = " ".join(str(message).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# AutoGraph writes each converted function as a module in the temporary directory and
# deletes the files at exit; where Python writes bytecode, their ``__pycache__`` entries
# would stay behind.
_AUTOGRAPH_MODULES = "__autograph_generated_file"


def _forget_autograph_bytecode() -> None:
    """Delete the bytecode of the modules AutoGraph generated in this process (each known by
    its ``__cached__`` path: never another process's), and their ``__pycache__`` once empty."""
    folders = set()
    for name, module in list(sys.modules.items()):
        cached = (
            getattr(module, "__cached__", None) if name.startswith(_AUTOGRAPH_MODULES) else None
        )
        if cached:
            folders.add(os.path.dirname(cached))
            with contextlib.suppress(OSError):
                os.remove(cached)
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty: other programs may keep bytecode there


def _import_tensorflow():
    """``import tensorflow`` without the packages it would load for nothing: while it loads
    they look absent (None in ``sys.modules`` fails their guarded imports); afterwards they
    import as usual."""
    hidden = [name for name in _UNUSED_BY_TENSORFLOW if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden, None))
    try:
        import tensorflow as tf
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return tf


def _leave(code: int) -> None:
    """Exit with ``code``. A successful process that is the whole job skips TensorFlow's
    interpreter teardown (seconds of freeing what the OS frees): its outputs are written
    and closed. A task of a cluster leaves through TensorFlow's own shutdown, which its
    peers expect."""
    from trainer import cluster

    if code == 0 and cluster.role().replicas == 1:
        # What exit runs before the teardown still runs: TensorFlow deletes the temporary
        # files AutoGraph wrote (two per export) in an atexit handler.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _leave(main())
