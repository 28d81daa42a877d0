"""``ci package``: an sdist built by the package's own backend, leaving the tree clean."""

from __future__ import annotations

import tarfile

import pytest

from ci import cli
from ci.errors import UsageError
from ci.package import LEGACY_BACKEND, backend_of, build_sdist
from ci.stage import content_hash
from tests.merge_path import trainer_copy


def test_builds_the_trainer_sdist_and_cleans_up(tmp_path, capsys):
    src = trainer_copy(tmp_path)
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
        assert "trainer-0.1.0/trainer/task.py" in tar.getnames()
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
