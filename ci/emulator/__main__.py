"""``python -m ci emulator``: serve the Vertex AI and Cloud Storage emulators until a signal.

Prints ``vertex: http://127.0.0.1:P`` and ``storage: http://127.0.0.1:Q`` (one line each,
flushed) once both accept connections; :mod:`ci.emulator.process` waits for those lines.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from ci.emulator.runtime import RUNTIMES
from ci.errors import UsageError
from ci.quick_exit import quick_exit


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"emulator: {message}")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ci emulator", description=__doc__.split("\n")[0])
    p.add_argument(
        "--port",
        type=_port,
        default=0,
        help="Vertex AI port on 127.0.0.1; 0 picks a free one (default: 0)",
    )
    p.add_argument(
        "--storage-port",
        type=_port,
        default=0,
        help="Cloud Storage port on 127.0.0.1; 0 picks a free one (default: 0)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="where jobs, models, endpoints, objects and logs are kept across restarts",
    )
    p.add_argument(
        "--max-local-replicas",
        type=int,
        default=None,
        help="cap on the processes one job may start; the job log says when it "
        "applies (default: no cap)",
    )
    p.add_argument(
        "--serving-runtime",
        choices=RUNTIMES,
        default="local",
        help="TensorFlow that serves deployed models: this process's (local), or the "
        "serving image's in a cached virtual environment (image) (default: local)",
    )
    p.add_argument(
        "--warm-up",
        nargs="?",
        const="",
        metavar="IMAGE",
        help="while the first job runs, import serving's TensorFlow (with --serving-runtime "
        "image, start the worker of IMAGE's TensorFlow), so a deploy after it does not wait "
        "for it (default: on the first model load)",
    )
    p.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="also stop when standard input closes: the process that started this one and "
        "holds the other end of the pipe has exited, even by SIGKILL (set by ci's embedded "
        "mode, which starts this in its own session, out of reach of a terminal's Ctrl-C) "
        "(default: off)",
    )
    return p


def serve(args: argparse.Namespace) -> int:
    """Run both emulators (flags as parsed) in the foreground until SIGINT or SIGTERM; then
    shut down cleanly."""
    from ci.emulator.app import Emulator

    if args.max_local_replicas is not None and args.max_local_replicas < 1:
        raise UsageError("--max-local-replicas must be at least 1")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_with_stdin:
        threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    emulator = Emulator(
        args.state_dir,
        args.port,
        args.storage_port,
        args.max_local_replicas,
        args.serving_runtime,
        args.warm_up,
    )
    try:
        emulator.start()
    except OSError as exc:
        raise UsageError(f"emulator: cannot listen: {exc.strerror or exc}") from None
    print(f"vertex: {emulator.vertex_url}", flush=True)
    print(f"storage: {emulator.storage_url}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


def _wait_for_eof(stop: threading.Event) -> None:
    # Nothing is ever written to the pipe: read() returns when the parent's end closes.
    sys.stdin.buffer.read()
    stop.set()


def main(argv: list[str]) -> NoReturn:
    """Parse ``argv``, :func:`serve`, and exit with its code."""
    code = serve(_parser().parse_args(argv))
    quick_exit(code)  # state is on disk and jobs are stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
