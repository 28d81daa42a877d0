"""Faults on the Cloud Storage emulator, injected through the Vertex port's fault API and
met by google-cloud-storage: retried within the client's retries, an error beyond them,
carried out and then lost, and answered in the JSON API's error shape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import requests
from google.api_core import exceptions
from google.cloud.storage.retry import DEFAULT_RETRY

from ci.emulator import faults
from ci.emulator.storage_faults import method_id
from tests.conftest import BUCKET

# A retry policy whose retries end within a second: "beyond the client's retries" without
# waiting out the library's two minutes.
QUICK_RETRY = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05).with_timeout(1.0)
# More faults than QUICK_RETRY's attempts can consume.
MANY = 1000
# Past google-cloud-storage's 8 MiB multipart limit: a resumable upload.
RESUMABLE_BYTES = 256 * 1024 * 3
# Each upload kind: (what the client sends, how big the object is).
UPLOADS = {"multipart": 100, "resumable": RESUMABLE_BYTES}


def blob(gcs, name: str, size: int):
    """A blob of ``size`` bytes to upload; in 256 KiB chunks when it is resumable."""
    chunk = 256 * 1024 if size >= RESUMABLE_BYTES else None
    return gcs.bucket(BUCKET).blob(name, chunk_size=chunk)


def content(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


@pytest.mark.parametrize("kind", UPLOADS)
def test_a_503_on_an_upload_is_retried_and_succeeds(emulator, gcs, kind):
    data = content(UPLOADS[kind])
    faults.inject(emulator.vertex_url, "objects.insert", 503, count=2)
    blob(gcs, f"faults/retried-{kind}", len(data)).upload_from_string(data)
    assert faults.pending(emulator.vertex_url) == []  # both errors were met
    assert gcs.bucket(BUCKET).blob(f"faults/retried-{kind}").download_as_bytes() == data


@pytest.mark.parametrize("kind", UPLOADS)
def test_a_503_beyond_the_clients_retries_fails_the_upload(emulator, gcs, kind):
    data = content(UPLOADS[kind])
    faults.inject(emulator.vertex_url, "storage.objects.insert", 503, count=MANY)
    target = blob(gcs, f"faults/refused-{kind}", len(data))
    with pytest.raises(exceptions.RetryError) as caught:
        target.upload_from_string(data, retry=QUICK_RETRY)
    assert caught.value.cause.response.status_code == 503  # the upload's last answer
    [left] = faults.pending(emulator.vertex_url)
    assert 0 < left["count"] < MANY - 1  # retried several times, then gave up
    faults.clear(emulator.vertex_url)
    assert not gcs.bucket(BUCKET).blob(f"faults/refused-{kind}").exists()


def test_an_error_after_acting_on_an_upload_leaves_the_object(emulator, gcs):
    faults.answer_error_after(emulator.vertex_url, "objects.insert", 503)
    with pytest.raises(exceptions.ServiceUnavailable):
        gcs.bucket(BUCKET).blob("faults/after").upload_from_string(b"kept", retry=None)
    assert gcs.bucket(BUCKET).blob("faults/after").download_as_bytes() == b"kept"


def test_a_dropped_answer_after_acting_on_a_delete_leaves_it_deleted(emulator, gcs):
    target = gcs.bucket(BUCKET).blob("faults/deleted")
    target.upload_from_string(b"x")
    faults.drop_connection(emulator.vertex_url, "objects.delete", after=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        target.delete(retry=None)
    assert not target.exists()


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_dropped_media_download_is_retried_by_default(emulator, gcs, after):
    target = gcs.bucket(BUCKET).blob("faults/download")
    target.upload_from_string(b"payload")
    faults.drop_connection(emulator.vertex_url, "objects.get", after=after)
    with pytest.raises(requests.exceptions.ConnectionError):
        target.download_as_bytes(retry=None)
    faults.drop_connection(emulator.vertex_url, "objects.get", after=after)
    assert target.download_as_bytes() == b"payload"  # the default retry gets it
    assert faults.pending(emulator.vertex_url) == []


def test_a_drop_before_acting_uploads_nothing(emulator, gcs):
    faults.drop_connection(emulator.vertex_url, "objects.insert")
    with pytest.raises(requests.exceptions.ConnectionError):
        gcs.bucket(BUCKET).blob("faults/never").upload_from_string(b"x", retry=None)
    assert not gcs.bucket(BUCKET).blob("faults/never").exists()


def test_bucket_faults_insert_after_acting_and_get_retried(emulator, gcs):
    faults.answer_error_after(emulator.vertex_url, "buckets.insert", 500)
    with pytest.raises(exceptions.InternalServerError):
        gcs.create_bucket("faults-after-bucket", retry=None)
    faults.inject(emulator.vertex_url, "storage.buckets.get", 429)
    assert gcs.get_bucket("faults-after-bucket").name == "faults-after-bucket"
    assert faults.pending(emulator.vertex_url) == []


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (429, "rateLimitExceeded", exceptions.TooManyRequests),
        (500, "backendError", exceptions.InternalServerError),
        (503, "backendError", exceptions.ServiceUnavailable),
        (403, "forbidden", exceptions.Forbidden),
    ],
)
def test_errors_have_the_json_apis_shape(emulator, gcs, status, reason, error):
    faults.inject(emulator.vertex_url, "objects.list", status, message="injected")
    url = f"{emulator.storage_url}/storage/v1/b/{BUCKET}/o"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=30)
    assert caught.value.code == status
    assert json.loads(caught.value.read()) == {
        "error": {
            "code": status,
            "message": "injected",
            "errors": [{"reason": reason, "message": "injected", "domain": "global"}],
        }
    }
    faults.inject(emulator.vertex_url, "objects.list", status)
    with pytest.raises(error):
        list(gcs.list_blobs(BUCKET, retry=None))


@pytest.mark.parametrize(
    ("http_method", "target", "expected"),
    [
        ("POST", "/upload/storage/v1/b/bk/o?uploadType=multipart", "storage.objects.insert"),
        (
            "PUT",
            "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=1",
            "storage.objects.insert",
        ),
        ("POST", "/storage/v1/b/bk/o?uploadType=media&name=a", "storage.objects.insert"),
        ("GET", "/storage/v1/b/bk/o/a/b.txt?alt=media", "storage.objects.get"),
        ("GET", "/download/storage/v1/b/bk/o/a%2Fb.txt?alt=media", "storage.objects.get"),
        ("GET", "/storage/v1/b/bk/o?prefix=a/", "storage.objects.list"),
        ("DELETE", "/storage/v1/b/bk/o/a", "storage.objects.delete"),
        ("PATCH", "/storage/v1/b/bk/o/a", "storage.objects.patch"),
        ("POST", "/storage/v1/b/bk/o/a/copyTo/b/other/o/b", "storage.objects.copy"),
        ("POST", "/storage/v1/b/bk/o/a/rewriteTo/b/other/o/b", "storage.objects.rewrite"),
        ("POST", "/storage/v1/b/bk/o/a/compose", "storage.objects.compose"),
        ("GET", "/storage/v1/b?project=p", "storage.buckets.list"),
        ("POST", "/storage/v1/b?project=p", "storage.buckets.insert"),
        ("GET", "/storage/v1/b/bk", "storage.buckets.get"),
        ("DELETE", "/storage/v1/b/bk", "storage.buckets.delete"),
        ("GET", "/b/bk/o", "storage.objects.list"),  # the Node client's emulator paths
        ("GET", "/bk/a.txt", None),  # the XML API: no JSON API method
        ("POST", "/batch/storage/v1", None),
    ],
)
def test_requests_are_named_by_discovery_method(http_method, target, expected):
    assert method_id(http_method, target) == expected
