"""Start ``python -m ci emulator`` as a child process and know when it is ready.

Used by ``ci pipeline`` when no cloud project is configured, and by the tests::

    with process.start(tmp_path / "state") as emu:
        client = clients.vertex("us-central1", emu.vertex_url, anonymous=True)
        subprocess.run([...], env={**os.environ, **emu.env()})
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ci.emulator.runtime import RUNTIMES
from ci.errors import CiError, UsageError

READY_TIMEOUT = 60


class Emulators:
    """A running emulator process: its URLs, its state directory, how to stop it."""

    def __init__(self, proc: subprocess.Popen, vertex_url: str, storage_url: str, state_dir: Path):
        self.proc = proc
        self.vertex_url = vertex_url
        self.storage_url = storage_url
        # google-cloud-storage reads a URL with its scheme from STORAGE_EMULATOR_HOST
        # ("despite name, includes scheme"), so this is the value to put there.
        self.storage_host = storage_url
        self.state_dir = state_dir

    @property
    def pid(self) -> int:
        """The emulator process id."""
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """Variables for child processes that should use these emulators."""
        return {
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "VERTEX_API_ENDPOINT": self.vertex_url,
        }

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (clean shutdown: running jobs are terminated) and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self._reaped(self.proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL, as if the machine lost the process; state on disk stays as it was."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self._reaped(self.proc.wait())

    def _reaped(self, code: int) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return code

    def __enter__(self) -> Emulators:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    state_dir: Path,
    *,
    vertex_port: int = 0,
    storage_port: int = 0,
    max_local_replicas: int | None = None,
    serving_runtime: str | None = None,
    warm_up: str | None = None,
    env: dict[str, str] | None = None,
) -> Emulators:
    """Launch the emulators and return once both print their URL (no sleeping).

    ``env`` is added to this process's environment for the child. The child's stderr
    goes to ``<state_dir>/emulator.log``; on a failed start its tail is in the error.
    ``serving_runtime`` (``local`` or ``image``, see :mod:`ci.emulator.runtime`) is
    checked here, so a bad setting is a usage error before anything starts. ``warm_up``
    (``""``, or the image the job's export will be served with) starts serving's TensorFlow
    while the first job runs, for callers that deploy its export.
    """
    if serving_runtime is not None and serving_runtime not in RUNTIMES:
        raise UsageError(
            f"emulator_serving_runtime {serving_runtime!r}: choose one of {', '.join(RUNTIMES)}"
        )
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-P",  # not the caller's directory first: its own ``ci/`` must not shadow this one
        "-m",
        "ci",
        "emulator",
        "--port",
        str(vertex_port),
        "--storage-port",
        str(storage_port),
        "--state-dir",
        str(state_dir),
    ]
    if max_local_replicas is not None:
        argv += ["--max-local-replicas", str(max_local_replicas)]
    if serving_runtime is not None:
        argv += ["--serving-runtime", serving_runtime]
    if warm_up is not None:
        argv += ["--warm-up", warm_up] if warm_up else ["--warm-up"]
    # Its own session: a terminal's Ctrl-C (SIGINT to the whole foreground process group)
    # reaches only the caller, which then cancels its job here before stopping this process;
    # the pipe on stdin, never written, closes when the caller exits however it exits.
    argv.append("--exit-with-stdin")
    # The child must import this very ``ci`` package, whatever the caller's directory.
    root = str(Path(__file__).resolve().parents[2])
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, child_env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    log_path = state_dir / "emulator.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.PIPE,
            env=child_env,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    urls: dict[str, str] = {}
    try:
        while len(urls) < 2:
            line = lines.get(timeout=READY_TIMEOUT)
            if line is None:
                break
            key, _, url = line.strip().partition(": ")
            if key in ("vertex", "storage") and url.startswith("http://"):
                urls[key] = url
    except queue.Empty:
        pass
    if len(urls) < 2:
        proc.kill()
        proc.stdin.close()
        proc.wait()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise CiError(
            f"the emulator did not start (exit code {proc.returncode}); "
            f"{' | '.join(tail) or 'no output'} (log: {log_path})"
        )
    return Emulators(proc, urls["vertex"], urls["storage"], state_dir)


def _pump(stream, lines: queue.Queue) -> None:
    # Keep reading after the ready lines so the child never blocks on a full pipe.
    for line in stream:
        lines.put(line)
    lines.put(None)
