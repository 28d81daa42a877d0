"""``ci package``: an sdist built by the package's own backend, leaving the tree clean."""

from __future__ import annotations

import tarfile

import pytest

from ci import cli
from ci.errors import CiError, UsageError
from ci.package import (
    LEGACY_BACKEND,
    BuildSystem,
    backend_of,
    build_env,
    build_sdist,
    build_system,
)
from ci.stage import content_hash
from tests.merge_path import ROOT, run_ci, trainer_copy


def test_builds_the_trainer_sdist_and_cleans_up(tmp_path, capsys):
    src = trainer_copy(tmp_path)
    (src / "tests").mkdir()
    (src / "tests" / "test_trainer.py").write_text("def test_nothing():\n    pass\n")
    out = tmp_path / "out.txt"
    assert (
        cli.main(
            [
                "package",
                "--package-dir",
                str(src),
                "--dist-dir",
                str(tmp_path / "d"),
                "--outputs",
                str(out),
            ]
        )
        == 0
    )
    sdist = tmp_path / "d" / "trainer-0.1.0.tar.gz"
    assert capsys.readouterr().out.strip() == str(sdist)
    assert out.read_text() == f"sdist={sdist}\n"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert "trainer-0.1.0/trainer/task.py" in names
    # The trainer only: setuptools would add tests/test*.py (MANIFEST.in prunes them).
    assert not [n for n in names if "/tests/" in n or n.endswith("/tests")], names
    assert not list(src.glob("*.egg-info"))  # setuptools' leftovers are removed


def test_rebuild_has_the_same_content_hash(tmp_path):
    src = trainer_copy(tmp_path)
    first = build_sdist(src, tmp_path / "a")
    second = build_sdist(src, tmp_path / "b")
    # Tarball bytes carry build timestamps; the content hash does not.
    assert content_hash(first) == content_hash(second)
    (src / "trainer" / "extra.py").write_text("X = 1\n")
    assert content_hash(build_sdist(src, tmp_path / "c")) != content_hash(first)


def test_backend_and_errors(tmp_path):
    assert backend_of(tmp_path) == LEGACY_BACKEND
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core"]\nbuild-backend = "flit_core.buildapi"\n'
    )
    assert backend_of(tmp_path) == "flit_core.buildapi"
    with pytest.raises(UsageError, match=r"no setup\.py or pyproject\.toml"):
        build_sdist(tmp_path / "missing", tmp_path / "d")
    assert cli.main(["package", "--package-dir", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00\x81 not utf-8\n", "pyproject.toml' is not UTF-8 text (byte 0)"),
        (b"build-system = 5\n", "pyproject.toml: build-system must be a table ([build-system])"),
        (b"[build-system]\nrequires = 'setuptools'\n", "build-system.requires must be a list"),
        (b"[build-system]\nbuild-backend = 5\n", "build-system.build-backend must be a module"),
        (b"[build-system]\nbuild-backend = ''\n", "build-system.build-backend must be a module"),
        (b"[build-system]\nbackend-path = '.'\n", "build-system.backend-path must be a list"),
        (b"[build-system]\nbackend-path = ['..']\n", "must be paths inside"),
    ],
)
def test_a_bad_pyproject_is_one_line_naming_file_and_key(tmp_path, capsys, content, message):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "pyproject.toml").write_bytes(content)
    dist = tmp_path / "dist"
    assert cli.main(["package", "--package-dir", str(package), "--dist-dir", str(dist)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert str(package / "pyproject.toml") in err and message in err, err
    assert not dist.exists()


def test_a_build_cache_that_cannot_be_made_is_one_line_naming_the_variable(tmp_path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("x\n")
    dist = tmp_path / "dist"
    result = run_ci(
        ["package", "--package-dir", str(ROOT), "--dist-dir", str(dist)],
        env={"XDG_CACHE_HOME": str(not_a_dir)},
    )
    assert result.returncode == 2, result.stderr
    root = not_a_dir / "tf-vertex-ci" / "build-envs"
    assert result.stderr == (
        f"Error: cannot use the build cache {str(root)!r} (from $XDG_CACHE_HOME): "
        f"{str(root)!r} Not a directory\n"
    )
    assert not dist.exists() and not_a_dir.read_text() == "x\n"


HATCH_TRAINER = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hatched-trainer"
version = "0.2.0"

[tool.hatch.build.targets.sdist]
include = ["hatched"]
"""

# An in-tree backend (PEP 517 backend-path): found only if backend-path is honoured.
IN_TREE_BACKEND = """\
import pathlib
import tarfile


def build_sdist(sdist_directory, config_settings=None):
    name = "intree-1.0"
    with tarfile.open(pathlib.Path(sdist_directory) / f"{name}.tar.gz", "w:gz") as tar:
        tar.add("intree", arcname=f"{name}/intree")
    return f"{name}.tar.gz"
"""


def test_hatchling_trainer_builds_in_an_isolated_env(tmp_path):
    import importlib.util

    # This process has no hatchling: the build must install the declared requires itself.
    assert importlib.util.find_spec("hatchling") is None
    (tmp_path / "pyproject.toml").write_text(HATCH_TRAINER)
    (tmp_path / "hatched").mkdir()
    (tmp_path / "hatched" / "__init__.py").write_text("")
    (tmp_path / "hatched" / "task.py").write_text("print('training')\n")
    sdist = build_sdist(tmp_path, tmp_path / "dist")
    assert sdist.name == "hatched_trainer-0.2.0.tar.gz"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert "hatched_trainer-0.2.0/hatched/task.py" in names
    assert "hatched_trainer-0.2.0/PKG-INFO" in names
    # Its environment holds compiled bytecode: where Python may not write it, each build
    # would otherwise compile the backend from source again.
    env = build_env(build_system(tmp_path).requires).parent.parent
    assert list(env.glob("lib/python3*/site-packages/hatchling/__pycache__/__init__.*.pyc"))


def test_backend_path_is_honoured(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "intree_backend"\n'
        'backend-path = ["_build"]\n'
    )
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "intree_backend.py").write_text(IN_TREE_BACKEND)
    (tmp_path / "intree").mkdir()
    (tmp_path / "intree" / "task.py").write_text("")
    system = build_system(tmp_path)
    assert system == BuildSystem((), "intree_backend", ("_build",))
    with tarfile.open(build_sdist(tmp_path, tmp_path / "dist")) as tar:
        assert "intree-1.0/intree/task.py" in tar.getnames()


def test_a_failing_backend_is_one_line_naming_the_package(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "broken"\nbackend-path = ["."]\n'
    )
    (tmp_path / "broken.py").write_text(
        "def build_sdist(d, c=None):\n    raise RuntimeError('no version number given')\n"
    )
    with pytest.raises(CiError, match=r"building the sdist in .* failed: .*no version number"):
        build_sdist(tmp_path, tmp_path / "dist")
