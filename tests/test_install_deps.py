"""``python -m ci install-deps``: the workflows' setup step, run by a Python of its own.

Each test runs the command in a fresh virtual environment, as a runner's job does after
setup-python: the tooling from this checkout (``PYTHONPATH``, ``-P``), nothing imported from
the tests' environment unless a test lends it (a ``.pth`` file, as the act stand-in of
setup-python does with the host's packages).
"""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from ci.errors import UsageError
from ci.install_deps import group_requirements, missing
from tests.merge_path import ROOT


def _venv(dest: Path, lend: list[str] = ()) -> Path:
    """A venv without pip of its own that also imports from the paths in ``lend``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    python = dest / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "zz-lent.pth").write_text("".join(f"{p}\n" for p in lend))
    return python


def _these_packages() -> list[str]:
    """This environment's site-packages, as the act stand-in lends the host's to a job."""
    return list(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))


def _old_pip() -> list[str]:
    """The pip wheel bundled with this Python (ensurepip's: older than 25.1, no --group)."""
    (wheel,) = (Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl")
    return [str(wheel)]


def _install_deps(python: Path, *args: str, env: dict | None = None):
    return subprocess.run(
        [python, "-P", "-m", "ci", "install-deps", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
             **(env or {})},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _wheel(dest: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of one module, written by hand (no build backend offline)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for rel, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{rel},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for rel, text in files.items():
            whl.writestr(rel, text)
    return path


def test_groups_resolve_includes_in_order_once(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[dependency-groups]\n"
        'Base_Deps = ["a==1", "b>=2"]\n'
        'ci = [{include-group = "base-deps"}, "c==3", "a==1"]\n'
    )
    assert group_requirements(pyproject, "ci") == ["a==1", "b>=2", "c==3"]
    assert group_requirements(pyproject, "BASE.deps") == ["a==1", "b>=2"]


@pytest.mark.parametrize(
    ("text", "group", "message"),
    [
        ('[dependency-groups]\nci = ["a==1"]\n', "dev", "no dependency group 'dev' (groups: ci)"),
        ("[project]\nname = 'x'\n", "ci", "no [dependency-groups] table"),
        (
            '[dependency-groups]\na = [{include-group = "b"}]\nb = [{include-group = "a"}]\n',
            "a",
            "dependency groups include each other: a -> b -> a",
        ),
        ('[dependency-groups]\nci = "a==1"\n', "ci", "dependency group 'ci' is not a list"),
        ('[dependency-groups]\nci = [{pip = "a"}]\n', "ci", "neither a requirement nor"),
        ("[dependency-groups\n", "ci", "not a readable TOML file"),
    ],
)
def test_bad_pyproject_names_file_and_group(tmp_path, text, group, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(text)
    with pytest.raises(UsageError) as err:
        group_requirements(pyproject, group)
    assert str(err.value).startswith(f"{pyproject}: ")
    assert message in str(err.value)


def test_only_exact_pins_installed_at_that_version_count_as_present():
    pytest_version = pytest.__version__
    assert missing([f"pytest=={pytest_version}", f"PyTest == {pytest_version}"]) == []
    # Another version, a range, extras, a marker, an absent distribution: pip decides.
    others = [
        "pytest==0.0.1",
        f"pytest>={pytest_version}",
        f"pytest[testing]=={pytest_version}",
        f'pytest=={pytest_version}; python_version >= "3"',
        "surely-not-installed-dist==1.0",
    ]
    assert missing(others) == others


def test_tooling_group_present_means_pip_never_runs(tmp_path):
    # A venv that sees this environment's packages (uv made it: no pip among them), so pip
    # cannot run at all there: success proves the pins were recognised without it.
    python = _venv(tmp_path / "venv", lend=_these_packages())
    assert subprocess.run([python, "-c", "import pip"], capture_output=True).returncode == 1
    done = _install_deps(python, "--group", "ci")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "group ci: all 8 requirements installed"
    assert len(group_requirements(ROOT / "pyproject.toml", "ci")) == 8


def test_missing_requirement_is_installed_with_a_pip_that_knows_no_groups(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "parcelx", "0.2.0")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[dependency-groups]\nci = ["parcelx==0.2.0"]\n')
    python = _venv(tmp_path / "venv", lend=_old_pip())
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    first = _install_deps(python, "--group", "ci", "--pyproject", str(pyproject), env=offline)
    assert first.returncode == 0, first.stderr
    assert "installing 1 requirements (1 not installed as pinned: parcelx==0.2.0)" in first.stdout
    check = [python, "-c", "import parcelx; print(parcelx.VERSION)"]
    assert subprocess.run(check, capture_output=True, text=True).stdout == "0.2.0\n"
    again = _install_deps(python, "--group", "ci", "--pyproject", str(pyproject), env=offline)
    assert again.stdout.strip() == "group ci: all 1 requirements installed"


def test_failed_pip_is_one_error_line_and_exit_1(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[dependency-groups]\nci = ["parcelx==9.9.9"]\n')
    python = _venv(tmp_path / "venv")
    failed = _install_deps(python, "--group", "ci", "--pyproject", str(pyproject))
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == (
        "Error: pip could not install dependency group 'ci' (its output above)"
    )
    assert "Traceback" not in failed.stderr


def test_bad_group_or_file_is_a_usage_error(tmp_path):
    python = _venv(tmp_path / "venv")
    for args, message in [
        (["--group", "nope"], f"Error: {ROOT / 'pyproject.toml'}: no dependency group 'nope'"),
        (["--group", "ci", "--pyproject", str(tmp_path / "gone.toml")], "no such file"),
        ([], "the following arguments are required: --group"),
    ]:
        done = _install_deps(python, *args)
        assert done.returncode == 2, args
        (line,) = done.stderr.splitlines()
        assert line.startswith("Error: ") and message in line, line
