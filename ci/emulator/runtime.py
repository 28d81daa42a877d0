"""Runtime parity: serve an export under the TensorFlow of its serving image.

On Vertex AI a model is served by its container image (``.../prediction/tf2-cpu.2-15``
runs TensorFlow 2.15), not by the TensorFlow that trained it. With
``--serving-runtime image`` (setting ``emulator_serving_runtime = "image"``) the emulator
loads each deployed export in a worker process whose interpreter has that TensorFlow,
in a virtual environment built on first use from PyPI and cached under
``~/.cache/ci-emulator/serving/`` (``$XDG_CACHE_HOME`` respected). An export that only a
newer TensorFlow can load then fails the deploy, as it would on Vertex. Images whose
TensorFlow cannot be read from the name (custom containers) are served by the local one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from ci.emulator.httpd import ApiError, precondition
from ci.errors import BadInstance

RUNTIMES = ("local", "image")
_IMAGE_TF = re.compile(r"/prediction/tf2-(?:cpu|gpu)\.(\d+)-(\d+)(?:[:@].*)?$")
BUILD_TIMEOUT = 1800
ROOT = Path(__file__).resolve().parents[2]


def image_tf(image_uri: str) -> str | None:
    """``"2.15"`` for ``.../vertex-ai/prediction/tf2-cpu.2-15:latest``; None if not prebuilt."""
    match = _IMAGE_TF.search(image_uri or "")
    return f"{match[1]}.{match[2]}" if match else None


def cache_root() -> Path:
    """Where the per-version environments live."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ci-emulator" / "serving"


def requirement(tf: str) -> str:
    """The PyPI requirement for a serving image's TensorFlow (newest patch of the minor)."""
    return f"tensorflow-cpu~={tf}.0"


def environment(tf: str) -> Path:
    """The interpreter of the cached environment for TensorFlow ``tf``, built if missing.

    A file lock makes concurrent deploys (or emulators) build it once; ``.complete`` is
    written last, so a build cut short is rebuilt rather than half-used.
    """
    home = cache_root() / f"tf-{tf}"
    python = home / "bin" / "python"
    if (home / ".complete").exists() and not _uncompiled(home):
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"tf-{tf}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").exists():
            shutil.rmtree(home, ignore_errors=True)
            _build(home, requirement(tf))
            (home / ".complete").write_text(requirement(tf) + "\n")
        if _uncompiled(home):
            _compile(python)
            (home / ".compiled").touch()
    return python


def _uncompiled(home: Path) -> bool:
    # Where Python may not write bytecode, a worker would compile TensorFlow's modules from
    # source at each start (three times the import's cost): compile them once. Elsewhere
    # the first start writes what it imports.
    return bool(os.environ.get("PYTHONDONTWRITEBYTECODE")) and not (home / ".compiled").exists()


def _compile(python: Path) -> None:
    code = (
        "import compileall, sysconfig; "
        "compileall.compile_dir(sysconfig.get_path('purelib'), quiet=2, workers=0)"
    )
    subprocess.run([str(python), "-c", code], capture_output=True, timeout=BUILD_TIMEOUT)


def _build(home: Path, wanted: str) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    uv = shutil.which("uv")
    if uv:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(home)],
            [uv, "pip", "install", "--quiet", "--python", str(home / "bin/python"), wanted],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(home)],
            [str(home / "bin/python"), "-m", "pip", "install", "--quiet", wanted],
        ]
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise precondition(
                f"Cannot build the serving runtime {wanted} for Python {version}: "
                + " | ".join(tail)
            )


class Worker:
    """One process of a serving image's TensorFlow, holding every export loaded into it.

    One per TensorFlow version: TensorFlow is imported once, each deploy only loads.
    Requests are one JSON line each way, one at a time.
    """

    def __init__(self, python: Path, log: Path):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # Only ci.serving and ci.errors are imported there: stdlib plus TensorFlow.
        env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
        self._lock = threading.Lock()
        self._log = log
        # A file, not a pipe: TensorFlow's chatter must never fill a pipe and block.
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(
                # -P: the working directory (a caller's repository, maybe with a `ci`
                # package of its own) must not shadow the tooling on the worker's path.
                [str(python), "-P", "-m", "ci.emulator.runtime_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=out,
                env=env,
                text=True,
            )

    def ask(self, request: dict) -> dict:
        """Send one request, return the worker's answer (``{"error": ...}`` if it died)."""
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except OSError:
                line = ""
        if not line:
            self._proc.wait()
            err = self._log.read_text(errors="replace").strip().splitlines()[-3:]
            return {"error": "the serving runtime exited: " + " | ".join(err)}
        return json.loads(line)

    @property
    def alive(self) -> bool:
        """False once the process ended (it is then replaced)."""
        return self._proc.poll() is None


class RemotePredictor:
    """A ``ci.serving.Predictor`` for one export, living in a :class:`Worker`."""

    def __init__(self, worker: Worker, export_dir: Path, label: str):
        self.worker, self.key = worker, str(export_dir)
        ready = worker.ask({"load": self.key})
        if "error" in ready:
            raise precondition(f"Model {label} cannot be served by its image: {ready['error']}")
        self.tf_version = ready["tensorflow"]

    def predict(self, instances: list) -> list[dict]:
        """Predictions from the worker; BadInstance for what its Predictor refused."""
        answer = self.worker.ask({"predict": self.key, "instances": instances})
        if "bad_instance" in answer:
            raise BadInstance(answer["bad_instance"])
        if "error" in answer:
            raise ApiError(500, f"serving runtime error: {answer['error']}")
        return answer["predictions"]


_workers: dict[str, Worker] = {}
_workers_lock = threading.Lock()


def _worker(tf: str, log_dir: Path) -> Worker:
    """The running worker of TensorFlow ``tf``, started (its environment built) if needed."""
    python = environment(tf)
    with _workers_lock:
        worker = _workers.get(tf)
        if worker is None or not worker.alive:
            worker = _workers[tf] = Worker(python, log_dir / f"runtime-tf-{tf}.log")
    return worker


def load(image_uri: str, export_dir: Path, label: str):
    """A predictor for ``export_dir`` under ``image_uri``'s TensorFlow, or None for "local"."""
    tf = image_tf(image_uri)
    if tf is None:
        return None
    return RemotePredictor(_worker(tf, export_dir.parent), export_dir, label)


def workers() -> list[str]:
    """The TensorFlow versions whose worker is running."""
    with _workers_lock:
        return sorted(tf for tf, worker in _workers.items() if worker.alive)


def warm_up(image_uri: str, log_dir: Path) -> bool:
    """Start the worker of ``image_uri``'s TensorFlow now, so that it imports TensorFlow
    before the first deploy asks it to load; False if the image is served locally.

    A failure is left for the deploy to meet (and report) again.
    """
    tf = image_tf(image_uri)
    if tf is None:
        return False
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        _worker(tf, log_dir)
    except Exception:  # the deploy that needs it builds it again, and says why
        pass
    return True
