"""``ci stage`` against the emulator's Cloud Storage: content-addressed, skip what exists."""

from __future__ import annotations

import gzip
import json
import zipfile

import pytest

from ci import cli
from ci.stage import MAX_CACHED_DIGESTS, cached_hash, content_hash, data_hash, stage
from tests.merge_path import ROOT, cloud_for, settings_env


@pytest.fixture
def env(emulator, gcs, monkeypatch):
    values = settings_env(emulator, "stage-test")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_first_uploads_then_skips(env, trainer_sdist, gcs, tmp_path, capsys):
    data = tmp_path / "rows.csv"
    data.write_text(f"3,4,a,b,c\n1,2,3,4,0\n# {tmp_path.name}\n")  # unique per run
    out = tmp_path / "out.txt"
    argv = ["stage", "--sdist", str(trainer_sdist), "--data", str(data), "--outputs", str(out)]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    digest = content_hash(data)
    uri = f"gs://test-bucket/staging/{digest}/rows.csv"
    assert f"uploaded {uri}" in first
    assert gcs.bucket("test-bucket").blob(f"staging/{digest}/rows.csv").download_as_text() == (
        data.read_text()
    )
    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert f"skipped  {uri}" in second and "0 uploaded, 2 skipped" in second
    lines = out.read_text().splitlines()
    assert f'data_uris={{"rows.csv":"{uri}"}}' in lines
    assert any(line.startswith("package_uri=gs://test-bucket/staging/") for line in lines)


def test_data_hash_names_the_data(env, trainer_sdist):
    with cloud_for(env) as cloud:
        _, staged = stage(cloud, trainer_sdist, [str(ROOT / "data" / "iris_training.csv")])
        _, again = stage(cloud, trainer_sdist, [str(ROOT / "data" / "iris_training.csv")])
        _, other = stage(cloud, trainer_sdist, [str(ROOT / "data" / "iris_test.csv")])
    assert data_hash(staged) == data_hash(again) != data_hash(other)
    assert len(data_hash(staged)) == 16


def test_missing_file_is_a_usage_error(env, tmp_path, capsys):
    assert cli.main(["stage", "--sdist", str(tmp_path / "nope.tar.gz")]) == 2
    assert "file to stage not found" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.touch()
    assert cli.main(["stage", "--sdist", str(empty)]) == 2
    assert f"file to stage is empty: '{empty}'" in capsys.readouterr().err


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c-bin.csv", bytes(range(256)) * 16, "is not an sdist or wheel (.tar.gz, .zip or .whl)"),
        ("setup.py", b"from setuptools import setup\n", "is not an sdist or wheel"),
        ("pkg.zip", bytes(range(256)) * 16, "is not a readable archive (File is not a zip file)"),
        ("pkg.whl", b"PK\x03\x04" + bytes(range(64)), "is not a readable archive"),
        ("pkg.tar.gz", gzip.compress(b"not a tar archive", mtime=0), "is not a readable archive"),
        ("pkg.tar.gz", gzip.compress(b"\0" * 10240, mtime=0), "is an empty archive"),
    ],
    ids=["binary", "setup.py", "bad-zip", "bad-wheel", "not-tar", "empty-tar"],
)
def test_an_sdist_that_is_not_a_package_archive_is_refused_before_upload(
    env, tmp_path, capsys, gcs, name, content, message
):
    sdist = tmp_path / name
    sdist.write_bytes(content)
    data = tmp_path / "rows.csv"
    data.write_text(f"3,4,a,b,c\n1,2,3,4,0\n# {tmp_path.name}\n")
    assert cli.main(["stage", "--sdist", str(sdist), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: package {str(sdist)!r} {message}"), err
    assert err.count("\n") == 1
    # Nothing was uploaded, not even the (unique) data file.
    assert not gcs.bucket("test-bucket").blob(f"staging/{content_hash(data)}/rows.csv").exists()


def test_sdists_and_wheels_that_open_are_staged(env, trainer_sdist, tmp_path, capsys):
    wheel = _zip(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/__init__.py": b"X = 1\n"})
    zipped = _zip(tmp_path / "pkg-1.0.zip", {"pkg-1.0/PKG-INFO": b"Name: pkg\n"})
    for package in (trainer_sdist, wheel, zipped):
        assert cli.main(["stage", "--sdist", str(package), "--data", str(ROOT / "setup.py")]) == 0
        assert f"/{package.name}" in capsys.readouterr().out


def test_digest_cache_notices_a_same_size_edit(env, trainer_sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "rows.csv"
    data.write_text(f"3,4,a,b,c\n1,2,3,4,0\n# {tmp_path.name}\n")
    with cloud_for(env) as cloud:
        _, (first,) = stage(cloud, trainer_sdist, [str(data)])
        _, (again,) = stage(cloud, trainer_sdist, [str(data)])
        data.write_text(data.read_text().replace("1,2,3,4,0", "1,2,3,4,1"))  # same size
        _, (edited,) = stage(cloud, trainer_sdist, [str(data)])
    assert (tmp_path / "cache" / "tf-vertex-ci" / "digests.json").is_file()
    assert first.uploaded and not again.uploaded and again.digest == first.digest
    assert edited.uploaded and edited.digest == content_hash(data) != first.digest


def test_digest_cache_forgets_files_that_are_gone_and_stays_bounded(tmp_path, monkeypatch):
    # Every staging reads the whole cache: before this bound, a machine's cache had grown
    # to 3,941 entries (789 KB) of deleted build outputs, and staging three files cost 50 ms.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache_file = tmp_path / "cache" / "tf-vertex-ci" / "digests.json"
    gone = tmp_path / "gone.csv"
    gone.write_text("1,2\n")
    cached_hash(gone)
    gone.unlink()
    files = []
    for i in range(MAX_CACHED_DIGESTS + 3):
        files.append(tmp_path / f"f{i}.csv")
        files[-1].write_text(f"{i}\n")
        digest = cached_hash(files[-1])
    cache = json.loads(cache_file.read_text())
    assert list(cache) == [str(f.resolve()) for f in files[-MAX_CACHED_DIGESTS:]]
    assert cache[str(files[-1].resolve())]["digest"] == digest == content_hash(files[-1])
    cache_file.write_text("[1, 2]")  # not the cache's shape: rebuilt, not a crash
    assert cached_hash(files[0]) == content_hash(files[0])
    assert list(json.loads(cache_file.read_text())) == [str(files[0].resolve())]


def test_restage_lists_once_and_handles_glob_characters(env, trainer_sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    files = []
    for name in ("plain.csv", "rows[1].csv", "a,b{c}.csv"):
        (tmp_path / name).write_text(f"3,4,a,b,c\n1,2,3,4,0\n# {tmp_path.name} {name}\n")
        files.append(str(tmp_path / name))
    with cloud_for(env) as cloud:
        _, first = stage(cloud, trainer_sdist, files)
        _, again = stage(cloud, trainer_sdist, files)
    assert [s.uploaded for s in first] == [True, True, True]
    assert [s.uploaded for s in again] == [False, False, False]
    assert [s.uri for s in again] == [s.uri for s in first]
