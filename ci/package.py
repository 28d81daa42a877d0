"""``python -m ci package``: build the trainer's source distribution.

The build runs the package's own PEP 517 backend (``[build-system]`` in ``pyproject.toml``,
else setuptools' legacy backend for a bare ``setup.py``) in a fresh interpreter, so nothing
of the package is imported into this process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from ci import flags, outputs
from ci.errors import CiError, UsageError
from ci.inputs import output_dir

LEGACY_BACKEND = "setuptools.build_meta:__legacy__"

# Runs in the package directory; prints the sdist's file name on its last line.
_BUILD = """
import importlib, sys
module, _, obj = sys.argv[1].partition(":")
backend = importlib.import_module(module)
for part in filter(None, obj.split(".")):
    backend = getattr(backend, part)
print(backend.build_sdist(sys.argv[2]))
"""


def backend_of(package_dir: Path) -> str:
    """The build backend the package declares, or setuptools' legacy backend."""
    pyproject = package_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{pyproject}: not valid TOML: {exc}") from None
        backend = data.get("build-system", {}).get("build-backend")
        if backend:
            return backend
    return LEGACY_BACKEND


def build_sdist(package_dir: Path, dist_dir: Path) -> Path:
    """Build the sdist of ``package_dir`` into ``dist_dir``; return its path."""
    package_dir = package_dir.resolve()
    if not (package_dir / "setup.py").is_file() and not (package_dir / "pyproject.toml").is_file():
        raise UsageError(f"no setup.py or pyproject.toml in package dir {str(package_dir)!r}")
    dist_dir = dist_dir.resolve()
    dist_dir.mkdir(parents=True, exist_ok=True)
    # setuptools leaves NAME.egg-info in the source tree; remove what this build added.
    before = set(package_dir.glob("*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, backend_of(package_dir), str(dist_dir)],
        cwd=package_dir,
        capture_output=True,
        text=True,
    )
    for leftover in set(package_dir.glob("*.egg-info")) - before:
        shutil.rmtree(leftover, ignore_errors=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CiError(f"building the sdist in {str(package_dir)!r} failed: {tail}")
    name = proc.stdout.strip().splitlines()[-1]
    return dist_dir / name


def main(argv: list[str]) -> int:
    parser = flags.parser("package", __doc__, with_settings=False)
    parser.add_argument("--package-dir", default=".", help="the package to build (default .)")
    parser.add_argument(
        "--dist-dir", default="dist", type=output_dir, help="where the sdist goes (default dist)"
    )
    args = parser.parse_args(argv)
    sdist = build_sdist(Path(args.package_dir), Path(args.dist_dir))
    print(sdist)
    outputs.write_outputs(args.outputs, {"sdist": sdist})
    outputs.write_summary(args.summary, f"### Package\n\nBuilt `{sdist.name}`.")
    return 0
