"""gs:// helpers against the storage emulator, across an emulator restart."""

from __future__ import annotations

import pytest

from ci import clients, gcs
from ci.emulator.process import start
from ci.errors import UsageError


def test_download_prefix_after_a_restart_on_new_ports(tmp_path, monkeypatch):
    state = tmp_path / "state"
    with start(state) as first:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", first.storage_host)
        client = clients.storage("p")
        client.create_bucket("b")
        for name, text in {"job/model/saved_model.pb": "pb", "job/model/variables/v": "v"}.items():
            client.bucket("b").blob(name).upload_from_string(text)
    with start(state) as second:
        assert second.storage_host != first.storage_host
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", second.storage_host)
        written = gcs.download_prefix(clients.storage("p"), "gs://b/job/model", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "saved_model.pb",
        "variables/v",
    ]
    assert (tmp_path / "out" / "variables" / "v").read_text() == "v"


@pytest.mark.parametrize("uri", ["s3://b/x", "gs://", "gs:///x", "b/x"])
def test_split_names_a_bad_uri(uri):
    with pytest.raises(UsageError, match="gs://"):
        gcs.split(uri)


def test_split_and_join():
    assert gcs.split("gs://bucket/a/b") == ("bucket", "a/b")
    assert gcs.join("gs://bucket/a/", "/b", "c") == "gs://bucket/a/b/c"
