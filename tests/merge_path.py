"""Helpers shared by the merge-path tests (plain functions; fixtures live in the modules)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

from ci.cloud import connect
from ci.settings import resolve

ROOT = Path(__file__).resolve().parents[1]
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}


def settings_env(emulator, model_name: str, **extra: str) -> dict[str, str]:
    """Settings that point every command at the session's running emulator."""
    env = {
        "CI_PROJECT": "test-project",
        "CI_BUCKET": "test-bucket",
        "CI_API_ENDPOINT": emulator.vertex_url,
        "STORAGE_EMULATOR_HOST": emulator.storage_host,
        "CI_MODEL_NAME": model_name,
        "CI_DATA_DIR": str(ROOT / "data"),
        "CI_TRAIN_FILE": "iris_training.csv",
        "CI_EVAL_FILE": "iris_test.csv",
        "CI_INSTANCES_FILE": "test.json",
        "CI_POLL_INTERVAL": "0.1",
        "CI_HEARTBEAT": "5",
        "CI_GIT_SHA": "0123456789abcdef0123456789abcdef01234567",
        **QUIET_TF,
    }
    env.update({k.upper() if k.startswith("ci_") else k: v for k, v in extra.items()})
    return env


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (and the signature checked)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def cloud_for(env: dict[str, str]):
    """``connect()`` with exactly these settings (the caller's environment is not read)."""
    return connect(resolve(None, env))


def run_ci(argv: list[str], env: dict[str, str], cwd: Path = ROOT, **kwargs):
    """``python -m ci ARGV`` as a real process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "ci", *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        **kwargs,
    )


def trainer_copy(dest: Path) -> Path:
    """A copy of the example trainer package (builds must not touch the repository)."""
    import shutil

    for name in ("setup.py", "MANIFEST.in"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "trainer", dest / "trainer", ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest
