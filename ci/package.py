"""``python -m ci package``: build the trainer's source distribution.

As pypa/build does: the package's ``[build-system]`` (``requires``, ``build-backend``,
``backend-path``; PEP 517/518's setuptools defaults without one) is installed into an
isolated environment, and the backend's hooks run there through ``pyproject_hooks``. So a
trainer built with setuptools, hatchling, flit or pdm works, and nothing of the package or
of this process's site-packages takes part. Environments are kept per set of requirements
under ``~/.cache/tf-vertex-ci/build-envs/``, so only the first build of a kind installs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

from ci import flags, local_dirs, outputs
from ci.errors import CiError, UsageError
from ci.inputs import output_dir

LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
# PEP 518's default for a project without [build-system].requires.
DEFAULT_REQUIRES = ("setuptools>=40.8.0",)


@dataclass(frozen=True)
class BuildSystem:
    """A project's ``[build-system]`` table, with the PEP 517/518 defaults filled in."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


def build_system(package_dir: Path) -> BuildSystem:
    """What ``package_dir`` declares: its backend, that backend's requirements and path."""
    pyproject = package_dir / "pyproject.toml"
    table: dict = {}
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text()).get("build-system", {})
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{pyproject}: not valid TOML: {exc}") from None
    requires = table.get("requires", list(DEFAULT_REQUIRES))
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise UsageError(f"{pyproject}: build-system.requires must be a list of strings")
    return BuildSystem(
        tuple(requires),
        table.get("build-backend") or LEGACY_BACKEND,
        tuple(table.get("backend-path", ())),
    )


def backend_of(package_dir: Path) -> str:
    """The build backend the package declares, or setuptools' legacy backend."""
    return build_system(package_dir).backend


def _cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tf-vertex-ci" / "build-envs"


def _install(python: Path, requirements: list[str]) -> None:
    # uv installs from its cache in milliseconds; pip is the fallback everyone has.
    uv = shutil.which("uv")
    if uv:
        argv = [uv, "pip", "install", "--quiet", "--python", str(python), *requirements]
    else:
        argv = [str(python), "-m", "pip", "install", "--quiet", *requirements]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CiError(f"installing build requirements {requirements} failed: {tail}")


def build_env(requires: tuple[str, ...]) -> Path:
    """The Python of an isolated environment holding ``requires`` (made on first use)."""
    key = hashlib.sha256("\n".join(sorted(requires)).encode()).hexdigest()[:16]
    env_dir = _cache_root() / key
    python = env_dir / "bin" / "python"
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time per environment: concurrent pipelines must not half-install it.
    with open(env_dir.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (env_dir / ".complete").is_file():
            shutil.rmtree(env_dir, ignore_errors=True)
            venv.create(env_dir, with_pip=shutil.which("uv") is None, symlinks=True)
            if requires:
                _install(python, list(requires))
            (env_dir / ".complete").write_text("\n".join(requires) + "\n")
    return python


def build_sdist(package_dir: Path, dist_dir: Path) -> Path:
    """Build the sdist of ``package_dir`` into ``dist_dir``; return its path."""
    from pyproject_hooks import BackendUnavailable, BuildBackendHookCaller

    package_dir = package_dir.resolve()
    if not (package_dir / "setup.py").is_file() and not (package_dir / "pyproject.toml").is_file():
        raise UsageError(f"no setup.py or pyproject.toml in package dir {str(package_dir)!r}")
    system = build_system(package_dir)
    python = build_env(system.requires)
    dist_dir = local_dirs.ensure(dist_dir, "built packages", announce=False).resolve()
    hooks = BuildBackendHookCaller(
        str(package_dir),
        system.backend,
        list(system.backend_path) or None,
        runner=_runner,
        python_executable=str(python),
    )
    # setuptools leaves NAME.egg-info in the source tree; remove what this build added.
    before = set(package_dir.glob("*.egg-info"))
    try:
        extra = hooks.get_requires_for_build_sdist()
        if extra:
            _install(python, list(extra))
        name = hooks.build_sdist(str(dist_dir))
    except BackendUnavailable as exc:
        raise CiError(f"build backend {system.backend!r} unavailable: {exc.message}") from None
    except subprocess.CalledProcessError as exc:
        tail = ((exc.output or "").strip().splitlines() or ["(no output)"])[-1]
        raise CiError(f"building the sdist in {str(package_dir)!r} failed: {tail}") from None
    finally:
        for leftover in set(package_dir.glob("*.egg-info")) - before:
            shutil.rmtree(leftover, ignore_errors=True)
    return dist_dir / name


def _runner(cmd, cwd=None, extra_environ=None) -> None:
    # The hook's output is kept for the error message, not streamed into ours.
    env = {**os.environ, **(extra_environ or {})}
    subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def add_arguments(parser) -> None:
    """Where the package is and where its sdist goes (shared by package, train, pipeline)."""
    parser.add_argument("--package-dir", default=".", help="the trainer package (default .)")
    parser.add_argument(
        "--dist-dir", default="dist", type=output_dir, help="where the sdist goes (default dist)"
    )


def main(argv: list[str]) -> int:
    parser = flags.parser("package", __doc__, with_settings=False)
    add_arguments(parser)
    args = parser.parse_args(argv)
    sdist = build_sdist(Path(args.package_dir), Path(args.dist_dir))
    print(sdist)
    outputs.write_outputs(args.outputs, {"sdist": sdist})
    outputs.write_summary(args.summary, f"### Package\n\nBuilt `{sdist.name}`.")
    return 0
