"""Install a dependency group of the tooling into this Python, unless it is there already.

The workflows' setup step (``.github/actions/setup-tooling``) runs this before any other
command, so it uses the standard library only. A group (PEP 735, ``[dependency-groups]`` of
the tooling's pyproject.toml, ``include-group`` resolved) is installed with one
``python -m pip install`` of its requirements, which needs no pip that knows groups. When
every requirement is an exact pin (``name==version``) that is installed at that version, pip
is not run at all: a runner's second job, or a run on a machine that has the tooling,
spends milliseconds here instead of a second or more of pip checking what is there. Any
other requirement (a range, extras, a marker) is pip's to judge, so it runs pip.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from ci import flags
from ci.errors import CiError, UsageError
from ci.inputs import did_you_mean, is_requirement

# The tooling's own pyproject.toml: the checkout that holds this package.
DEFAULT_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# An exact pin without extras or markers: the only form checked without pip.
_PIN = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*([A-Za-z0-9._+!-]+)\s*")


def _normalize(name: str) -> str:
    """PEP 503 / PEP 735 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def group_requirements(pyproject: Path, group: str) -> list[str]:
    """The requirement strings of ``group``, its included groups resolved, in order."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{pyproject}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(f"{pyproject}: not a readable TOML file: {exc}") from None
    groups = data.get("dependency-groups")
    if not isinstance(groups, dict):
        raise UsageError(f"{pyproject}: no [dependency-groups] table")
    by_name = {_normalize(k): (k, v) for k, v in groups.items()}

    def resolve(name: str, seen: tuple[str, ...]) -> list[str]:
        key = _normalize(name)
        if key not in by_name:
            known = ", ".join(sorted(groups)) or "none"
            hint = did_you_mean(name, sorted(groups))
            raise UsageError(f"{pyproject}: no dependency group {name!r}{hint} (groups: {known})")
        if key in seen:
            cycle = " -> ".join([*seen, key])
            raise UsageError(f"{pyproject}: dependency groups include each other: {cycle}")
        declared, entries = by_name[key]
        if not isinstance(entries, list):
            raise UsageError(f"{pyproject}: dependency group {declared!r} is not a list")
        out: list[str] = []
        for entry in entries:
            if isinstance(entry, str):
                if not is_requirement(entry):
                    raise UsageError(
                        f"{pyproject}: dependency group {declared!r} has {entry!r}, "
                        "which is not a requirement (PEP 508: a project name first)"
                    )
                out.append(entry)
            elif isinstance(entry, dict) and set(entry) == {"include-group"}:
                out += resolve(str(entry["include-group"]), (*seen, key))
            else:
                raise UsageError(
                    f"{pyproject}: dependency group {declared!r} has an entry that is neither "
                    f"a requirement nor an include-group table: {entry!r}"
                )
        return out

    requirements = resolve(group, ())
    return list(dict.fromkeys(requirements))  # an included group may repeat one


def missing(requirements: list[str]) -> list[str]:
    """The requirements this Python cannot be shown to satisfy without pip."""
    out = []
    for requirement in requirements:
        pin = _PIN.fullmatch(requirement)
        if pin is None:
            out.append(requirement)
            continue
        try:
            installed = importlib.metadata.version(pin[1])
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != pin[2]:
            out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    # No --outputs/--summary: nothing to hand on but what it prints.
    parser = flags.parser("install-deps", __doc__, with_settings=False, with_outputs=False)
    parser.add_argument(
        "--group", required=True, metavar="NAME", help="the dependency group to install"
    )
    parser.add_argument(
        "--pyproject",
        type=Path,
        default=DEFAULT_PYPROJECT,
        metavar="FILE",
        help="the pyproject.toml that declares it (default: the tooling's own)",
    )
    args = parser.parse_args(argv)
    requirements = group_requirements(args.pyproject, args.group)
    lacking = missing(requirements)
    if not lacking:
        print(f"group {args.group}: all {len(requirements)} requirements installed")
        return 0
    print(f"group {args.group}: installing {len(requirements)} requirements ({len(lacking)} "
          f"not installed as pinned: {', '.join(lacking)})", flush=True)  # fmt: skip
    # All of the group, not only what lacks: pip resolves them together, as --group would.
    # -P: the working directory (the caller's checkout) stays off pip's sys.path too.
    pip = [sys.executable, "-P", "-m", "pip", "install", "--quiet", *requirements]
    if subprocess.run(pip).returncode != 0:
        raise CiError(f"pip could not install dependency group {args.group!r} (its output above)")
    return 0
