"""``python -m ci package``: build the trainer's source distribution.

As pypa/build does: the package's ``[build-system]`` (``requires``, ``build-backend``,
``backend-path``; PEP 517/518's setuptools defaults without one) is installed into an
isolated environment, and the backend's hooks (``get_requires_for_build_sdist``, then
``build_sdist``) run there, in one process (:mod:`ci.sdist_hooks`). So a trainer built with
setuptools, hatchling, flit or pdm works, and nothing of the package or of this process's
site-packages takes part. Environments are kept per set of requirements under
``~/.cache/tf-vertex-ci/build-envs/``, so only the first build of a kind installs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

from ci import flags, local_dirs, outputs
from ci.errors import CiError, UsageError
from ci.inputs import did_you_mean, is_requirement, output_dir, read_text

LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
# PEP 518's default for a project without [build-system].requires.
DEFAULT_REQUIRES = ("setuptools>=40.8.0",)
HOOKS = Path(__file__).with_name("sdist_hooks.py")


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
            data = tomllib.loads(read_text(pyproject, "file"))
        except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise UsageError(f"{pyproject}: not valid TOML: {exc}") from None
        table = data.get("build-system", {})
        for key in set(data) - {"build-system"}:  # a misspelt table would build with defaults
            hint = did_you_mean(key, ["build-system"])
            if hint and key not in ("project", "tool", "dependency-groups"):
                raise UsageError(f"{pyproject}: unknown table {key!r}{hint}")

    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{pyproject}: build-system{key} must be {what}")

    if not isinstance(table, dict):
        raise bad("", "a table ([build-system])")
    requires = table.get("requires", list(DEFAULT_REQUIRES))
    if not _strings(requires):
        raise bad(".requires", "a list of strings")
    odd = [r for r in requires if not is_requirement(r)]
    if odd:
        raise bad(".requires", f"requirements (PEP 508), not {odd[0]!r}")
    backend = table.get("build-backend", LEGACY_BACKEND)
    if not isinstance(backend, str) or not backend.strip():
        raise bad(".build-backend", "a module name such as 'setuptools.build_meta'")
    backend_path = table.get("backend-path", [])
    if not _strings(backend_path):
        raise bad(".backend-path", "a list of strings")
    root = package_dir.resolve()
    for entry in backend_path:  # PEP 517: relative, inside the source tree
        if not (root / entry).resolve().is_relative_to(root):
            raise bad(".backend-path", f"paths inside {str(package_dir)!r}, not {entry!r}")
    return BuildSystem(tuple(requires), backend, tuple(backend_path))


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def backend_of(package_dir: Path) -> str:
    """The build backend the package declares, or setuptools' legacy backend."""
    return build_system(package_dir).backend


# What a build environment holds besides its requirements: "compiled" bytecode (_install).
_ENV_LAYOUT = "compiled"


def _cache_root() -> tuple[Path, str]:
    """Where build environments are kept, and the variable that says so."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "tf-vertex-ci" / "build-envs", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "tf-vertex-ci" / "build-envs", "HOME"


def _install(python: Path, requirements: list[str]) -> None:
    # uv installs from its cache in milliseconds; pip is the fallback everyone has. Both
    # compile the bytecode (pip does by default): where Python may not write it
    # (PYTHONDONTWRITEBYTECODE), every build would compile the backend from source again,
    # 0.5 s a build with setuptools instead of 0.25.
    uv = shutil.which("uv")
    if uv:
        argv = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python)]
        argv += requirements
    else:
        argv = [str(python), "-m", "pip", "install", "--quiet", *requirements]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CiError(f"installing build requirements {requirements} failed: {tail}")


def build_env(requires: tuple[str, ...]) -> Path:
    """The Python of an isolated environment holding ``requires`` (made on first use)."""
    # The layout is part of the key: environments made before their bytecode was compiled
    # are made again rather than used as they are.
    key = hashlib.sha256("\n".join([_ENV_LAYOUT, *sorted(requires)]).encode()).hexdigest()[:16]
    root, variable = _cache_root()
    env_dir = root / key
    python = env_dir / "bin" / "python"
    try:
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
    except OSError as exc:
        where = f" {str(exc.filename)!r}" if exc.filename else ""
        raise UsageError(
            f"cannot use the build cache {str(root)!r} (from ${variable}):{where} "
            f"{exc.strerror or exc}"
        ) from None
    return python


def build_sdist(package_dir: Path, dist_dir: Path) -> Path:
    """Build the sdist of ``package_dir`` into ``dist_dir``; return its path."""
    given, package_dir = str(package_dir), package_dir.resolve()
    if not package_dir.is_dir():
        why = "does not exist" if not os.path.lexists(package_dir) else "is not a directory"
        raise UsageError(f"no setup.py or pyproject.toml in package dir {given!r}: it {why}")
    if not (package_dir / "setup.py").is_file() and not (package_dir / "pyproject.toml").is_file():
        raise UsageError(f"no setup.py or pyproject.toml in package dir {str(package_dir)!r}")
    system = build_system(package_dir)
    python = build_env(system.requires)
    # A dist dir this build creates is removed again if the build fails: nothing half-made.
    created = next((p for p in (*reversed(dist_dir.parents), dist_dir) if not p.exists()), None)
    dist_dir = local_dirs.ensure(dist_dir, "built packages", announce=False).resolve()
    try:
        return _build(system, package_dir, dist_dir, python)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _build(system: BuildSystem, package_dir: Path, dist_dir: Path, python: Path) -> Path:
    request = {
        "backend": system.backend,
        "backend_path": [str((package_dir / p).resolve()) for p in system.backend_path],
        "sdist_dir": str(dist_dir),
        "requires_known": False,
    }
    # setuptools leaves NAME.egg-info in the source tree; remove what this build added.
    before = set(package_dir.glob("*.egg-info"))
    try:
        result = _hooks(python, package_dir, request)
        if "requires" in result:  # the backend's extra requirements, then build
            _install(python, result["requires"])
            result = _hooks(python, package_dir, {**request, "requires_known": True})
    finally:
        for leftover in set(package_dir.glob("*.egg-info")) - before:
            shutil.rmtree(leftover, ignore_errors=True)
    if "unavailable" in result:
        raise CiError(f"build backend {system.backend!r} unavailable: {result['unavailable']}")
    return dist_dir / result["sdist"]


def _hooks(python: Path, package_dir: Path, request: dict) -> dict:
    """Run :mod:`ci.sdist_hooks` in the build environment; its result."""
    with tempfile.TemporaryDirectory(prefix="ci-sdist-") as scratch:
        result_file = Path(scratch) / "result.json"
        # The hooks' output is kept for the error message, not streamed into ours.
        proc = subprocess.run(
            [str(python), "-P", str(HOOKS), str(result_file)],
            cwd=package_dir,
            input=json.dumps(request),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode != 0 or not result_file.is_file():
            tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            raise CiError(f"building the sdist in {str(package_dir)!r} failed: {tail}")
        return json.loads(result_file.read_text())


def add_package_dir(parser) -> None:
    """Where the trainer package is (package, train, pipeline, local-train)."""
    parser.add_argument("--package-dir", default=".", help="the trainer package (default .)")


def add_arguments(parser) -> None:
    """Where the package is and where its sdist goes (shared by package, train, pipeline)."""
    add_package_dir(parser)
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
