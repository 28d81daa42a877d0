"""gs:// helpers and the storage endpoint, against the storage emulator.

The storage endpoint is a setting handed to the client; these tests run with
``STORAGE_EMULATOR_HOST`` unset, so a client that still read the environment would go to
Google's endpoint and fail.
"""

from __future__ import annotations

import os
import socket

import pytest

from ci import clients, gcs
from ci.cloud import connect
from ci.emulator.process import start
from ci.errors import UsageError
from ci.settings import Settings, resolve
from tests.merge_path import run_ci
from tests.sdists import sdist_bytes


@pytest.fixture(autouse=True)
def _no_storage_env(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)


def test_download_prefix_after_a_restart_on_new_ports(tmp_path):
    state = tmp_path / "state"
    with start(state) as first:
        client = clients.storage("p", first.storage_url)
        client.create_bucket("bkt")
        for name, text in {"job/model/saved_model.pb": "pb", "job/model/variables/v": "v"}.items():
            client.bucket("bkt").blob(name).upload_from_string(text)
    with start(state) as second:
        assert second.storage_url != first.storage_url
        client = clients.storage("p", second.storage_url)
        written = gcs.download_prefix(client, "gs://bkt/job/model", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "saved_model.pb",
        "variables/v",
    ]
    assert (tmp_path / "out" / "variables" / "v").read_text() == "v"


@pytest.mark.parametrize(
    "uri", ["s3://b/x", "gs://", "gs:///x", "b/x", "gs://Bad Bucket/x", "gs://UPPER/x", "gs://a/x"]
)
def test_split_names_a_bad_uri(uri):
    with pytest.raises(UsageError, match="gs://"):
        gcs.split(uri)


@pytest.mark.parametrize("uri", ["gs://bucket", "gs://bucket/", "gs://bucket/data/"])
def test_an_object_uri_must_name_an_object(uri):
    assert gcs.split(uri)[0] == "bucket"  # a prefix is fine where a prefix is meant
    with pytest.raises(UsageError, match=f"{uri!r} names no object"):
        gcs.split_object(uri)


def test_split_and_join():
    assert gcs.split("gs://bucket/a/b") == ("bucket", "a/b")
    assert gcs.join("gs://bucket/a/", "/b", "c") == "gs://bucket/a/b/c"


def test_storage_endpoint_setting_reaches_the_client(emulator, gcs, monkeypatch, tmp_path):
    """A running emulator addressed by settings alone: the object written is in its bucket."""
    monkeypatch.chdir(tmp_path)
    settings = resolve(
        None,
        {
            "CI_PROJECT": "test-project",
            "CI_BUCKET": "test-bucket",
            "CI_API_ENDPOINT": emulator.vertex_url,
            "CI_STORAGE_ENDPOINT": emulator.storage_url,
        },
    )
    assert settings.storage_endpoint == emulator.storage_url
    environ = dict(os.environ)
    with connect(settings) as cloud:
        cloud.storage.bucket("test-bucket").blob("endpoint/probe").upload_from_string("here")
    assert dict(os.environ) == environ
    assert gcs.bucket("test-bucket").blob("endpoint/probe").download_as_text() == "here"


def test_storage_emulator_host_is_only_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve(None, {"STORAGE_EMULATOR_HOST": "http://h:1"}).storage_endpoint == "http://h:1"
    both = {"STORAGE_EMULATOR_HOST": "http://h:1", "CI_STORAGE_ENDPOINT": "http://s:2"}
    assert resolve(None, both).storage_endpoint == "http://s:2"
    (tmp_path / "ci.toml").write_text('storage_endpoint = "http://file:3"\n')
    assert resolve(None, {"STORAGE_EMULATOR_HOST": "http://h:1"}).storage_endpoint == (
        "http://file:3"
    )
    assert resolve(None, {}).storage_endpoint == "http://file:3"
    (tmp_path / "ci.toml").unlink()
    assert resolve(None, {}).storage_endpoint is None


def test_embedded_default_leaves_the_environment_alone(tmp_path):
    """The embedded emulators are reached through explicit endpoints, not os.environ."""
    environ = dict(os.environ)
    settings = Settings(state_dir=str(tmp_path / "state"))
    with connect(settings) as cloud:
        assert dict(os.environ) == environ
        blob = cloud.storage.bucket(settings.bucket_name).blob("probe")
        blob.upload_from_string("local")
        assert blob.download_as_text() == "local"
    assert (tmp_path / "state" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_clients_pick_credentials_by_scheme():
    from google.auth.credentials import AnonymousCredentials

    local = clients.storage("p", "http://127.0.0.1:9")
    assert isinstance(local._credentials, AnonymousCredentials)
    assert local._connection.API_BASE_URL == "http://127.0.0.1:9"
    assert clients.is_emulator("http://127.0.0.1:9")
    assert not clients.is_emulator("https://storage.googleapis.com")
    assert not clients.is_emulator(None)


def test_a_storage_emulator_that_is_not_there_fails_at_once(tmp_path):
    # google-cloud-storage retries a refused connection for two minutes; the command says
    # so at its first use of storage instead (the subprocess timeout only guards a hang).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    env = {
        "CI_PROJECT": "proj-x",
        "CI_BUCKET": "bucket-x",
        "CI_API_ENDPOINT": f"http://127.0.0.1:{port}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
        "CI_STATE_DIR": str(tmp_path / "unused"),
    }
    sdist = tmp_path / "t-1.tar.gz"
    sdist.write_bytes(sdist_bytes("t-1", {"PKG-INFO": "Metadata-Version: 2.1\nName: t\n"}))
    result = run_ci(["stage", "--sdist", str(sdist)], env, timeout=60)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"Error: cannot connect to the Cloud Storage emulator at http://127.0.0.1:{port} "
        "(Connection refused)"
    )
