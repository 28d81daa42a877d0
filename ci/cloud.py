"""One connection to Vertex AI and Cloud Storage: Google Cloud, a running emulator, or the
embedded emulators started (and stopped) here.

The clients are built the same way in every case; only the endpoint and credentials differ.
Plain ``http://`` endpoints (emulators) get anonymous credentials, since credentials must
never travel unencrypted; everything else uses Application Default Credentials.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci import clients, local_dirs
from ci.errors import CiError, UsageError
from ci.settings import Settings, serving_image


@dataclass
class Cloud:
    """The clients and settings a command works with."""

    settings: Settings
    vertex: Any
    _storage: Any = None
    _make_storage: Callable[[], Any] | None = field(default=None, repr=False)
    _storage_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def storage(self):
        """The Cloud Storage client, made on first use: a command that only talks to Vertex
        AI (versions, rollback, predict) never imports google-cloud-storage (0.2 s)."""
        with self._storage_lock:
            if self._storage is None and self._make_storage is not None:
                self._storage = self._make_storage()
            return self._storage

    @property
    def parent(self) -> str:
        """``projects/P/locations/R``, the parent of every resource."""
        return self.settings.parent

    def log(self, message: str) -> None:
        """A progress line, flushed at once (workflow logs show it live)."""
        print(message, flush=True)

    def fresh_connections(self) -> None:
        """Drop kept-alive connections: after Ctrl-C one may hold a half-sent request, and
        the next request on it (the cleanup's) would wait for an answer that never comes."""
        self.vertex.close()
        once = getattr(self.vertex, "ci_once_http", None)  # the one creates are sent on
        if once is not None:
            once.close()


def _ensure_bucket(storage, name: str) -> None:
    # Only the embedded default creates its bucket: in a real project the bucket is
    # part of the one-time setup, and creating one implicitly would hide a typo.
    if storage.lookup_bucket(name) is None:
        storage.create_bucket(name)


@contextlib.contextmanager
def connect(settings: Settings, *, deploys_its_job: bool = False) -> Iterator[Cloud]:
    """Yield a :class:`Cloud`; for the embedded default, run the emulators meanwhile.

    ``deploys_its_job``: the command trains, then deploys (``pipeline``), so the embedded
    emulator starts serving's TensorFlow (the local one, or under the image runtime the
    serving image's) while the job runs; otherwise on the first model load.
    """
    if not settings.embedded:
        endpoint = settings.api_endpoint
        if not clients.is_emulator(endpoint) and not settings.project:
            raise UsageError(f"setting 'project' is required with api_endpoint {endpoint!r}")
        yield _cloud(settings, endpoint, settings.storage_endpoint)
        return
    from ci.emulator.process import start

    state = local_dirs.ensure(Path(settings.state_dir), "the local emulators' state")
    # This process only waits while the emulators start: import the clients meanwhile.
    importing = threading.Thread(target=clients.import_libraries, daemon=True)
    importing.start()
    emulators = start(
        state,
        max_local_replicas=settings.local_max_replicas,
        serving_runtime=settings.emulator_serving_runtime,
        warm_up=serving_image(settings) if deploys_its_job else None,
    )
    importing.join()
    with emulators:
        cloud = _cloud(settings, emulators.vertex_url, emulators.storage_url)
        guard(lambda: _ensure_bucket(cloud.storage, settings.bucket_name), "create local bucket")
        yield cloud


def _cloud(settings: Settings, vertex_endpoint: str | None, storage_endpoint: str | None):
    """The Vertex AI client now, the Cloud Storage one when first used."""
    anonymous = clients.is_emulator(vertex_endpoint)
    vertex = _credentialed(
        lambda: clients.vertex(
            settings.region, vertex_endpoint, anonymous=anonymous, retries=settings.api_retries
        )
    )

    def storage():
        if clients.is_emulator(storage_endpoint):
            _reachable(storage_endpoint, "the Cloud Storage emulator")
        return _credentialed(lambda: clients.storage(settings.project_id, storage_endpoint))

    return Cloud(settings, vertex, _make_storage=storage)


def _reachable(endpoint: str, what: str) -> None:
    """A CiError now if nothing listens at ``endpoint``: google-cloud-storage would retry a
    refused connection for its whole deadline (two minutes) before failing."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=10).close()
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise _marked(CiError(f"cannot connect to {what} at {endpoint} ({detail})"), None) from None


def _credentialed(make):
    """``make()``; missing Application Default Credentials become one CiError."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return make()
    except DefaultCredentialsError:
        raise CiError(
            "no Google credentials: run `gcloud auth application-default login` or "
            "authenticate with Workload Identity Federation (for emulators, set an http:// "
            "api_endpoint and storage_endpoint)"
        ) from None


def _http_message(exc) -> str:
    try:
        body = json.loads(exc.content.decode() or "{}")
        message = body.get("error", {}).get("message") or exc.reason
    except (ValueError, AttributeError):
        message = getattr(exc, "reason", "") or str(exc)
    first = (message or "").strip().splitlines()
    return first[-1] if first else ""


def api(request, what: str, on_400: type[CiError] = CiError, on_404: str | None = None) -> dict:
    """Execute ``request`` with retries on 429/5xx; any failure becomes a one-line CiError.

    ``on_400`` is the error class for HTTP 400, for calls where a bad request means bad
    user input (instances to predict) rather than a bug here. ``on_404``: the message of
    the CiError for HTTP 404, for a resource the user named (``job 123 not found``).
    """
    return guard(lambda: clients.call(request), what, on_400, on_404)


def guard(fn, what: str, on_400: type[CiError] = CiError, on_404: str | None = None):
    """Run ``fn``; Google client and network failures become a one-line CiError.

    The error's ``status`` is the HTTP status (None for a network failure) and its
    ``transient`` says whether trying again may succeed (429, 5xx, a lost connection).
    """
    import http.client

    import httplib2
    from google.api_core import exceptions as core_exc
    from google.auth import exceptions as auth_exc
    from googleapiclient.errors import HttpError

    try:
        return fn()
    except HttpError as exc:
        status = exc.resp.status if exc.resp is not None else "?"
        if status == 404 and on_404:
            raise _marked(CiError(on_404), 404) from None
        error = on_400 if status == 400 else CiError
        message = f"{what} failed: HTTP {status}: {_http_message(exc)}"
        raise _marked(error(message), status) from None
    except core_exc.GoogleAPICallError as exc:
        message = f"{what} failed: HTTP {exc.code}: {_api_core_message(exc)}"
        raise _marked(CiError(message), exc.code) from None
    except core_exc.RetryError as exc:  # the storage client's own retries ran out of time
        detail = str(exc.cause or exc).splitlines()[0][:200]
        raise _marked(CiError(f"{what} failed: gave up retrying ({detail})"), None) from None
    except (OSError, http.client.HTTPException, httplib2.HttpLib2Error) as exc:
        detail = str(exc) or type(exc).__name__
        raise _marked(CiError(f"{what} failed: cannot connect ({detail})"), None) from None
    except auth_exc.GoogleAuthError as exc:  # a 401 the client tried to answer by refreshing
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise _marked(CiError(f"{what} failed: not authenticated ({detail})"), 401) from None


# google-cloud-storage's messages start with the request ("POST http://...: ") and may
# carry the whole answer: the line names the service's own message instead.
_REQUEST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE|HEAD) \S+: ")


def _api_core_message(exc) -> str:
    for error in getattr(exc, "errors", None) or []:
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"]).strip().splitlines()[0]
    text = _REQUEST_PREFIX.sub("", str(exc.message or "")).strip()
    if text.startswith("{"):  # the answer's JSON error body, then the library's own words
        try:
            body, _ = json.JSONDecoder().raw_decode(text)
            message = body.get("error", {}).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message).strip().splitlines()[0]
    return text.splitlines()[0] if text else type(exc).__name__


def _marked(error: CiError, status) -> CiError:
    error.status = status
    error.transient = status is None or status == 429 or (isinstance(status, int) and status >= 500)
    return error


def create(request, what: str, find, on_400: type[CiError] = CiError):
    """Send a request that creates something (a job, a version, an endpoint, a deployment)
    without ever sending it twice blindly: the answer of an attempt may be lost after the
    server carried it out (a 5xx, a dropped connection), and a blind retry would create a
    duplicate. Each attempt is sent once (:meth:`execute_once`); after a transient failure
    ``find()`` looks for what it may have created and returns the answer the request would
    have had for it (None: nothing there, so the request is sent again, up to the client's
    retries, with its backoff). The last failure is raised if nothing was found.
    """
    attempts = getattr(request, "retry_budget", 0) + 1
    for attempt in range(attempts):
        if attempt:
            request.pause(attempt)
        try:
            send = getattr(request, "execute_once", request.execute)
            return guard(send, what, on_400)
        except CiError as exc:
            if not getattr(exc, "transient", False):
                raise
            failure = exc
        found = guard(find, f"{what} (looking for what a lost answer created)")
        if found is not None:
            return found
    raise failure


def operations(cloud: Cloud, name: str):
    """The ``operations`` collection that owns operation ``name`` (paths are validated)."""
    locations = cloud.vertex.projects().locations()
    for part, collection in (
        ("/models/", lambda: locations.models()),
        ("/endpoints/", lambda: locations.endpoints()),
        ("/customJobs/", lambda: locations.customJobs()),
    ):
        if part in name:
            return collection().operations()
    return locations.operations()


def wait_operation(cloud: Cloud, operation: dict, what: str, timeout: float = 1800.0) -> dict:
    """Wait for a long-running operation; return its response or raise its error.

    Each request is an ``operations.wait`` for up to the poll interval: it answers as soon
    as the operation is done, so a quick one is seen done at once rather than up to an
    interval later, and never asks more often than polling would. Vertex AI may answer a
    wait early ("best effort"): the rest of the interval passes before the next request.
    """
    start = time.monotonic()
    name = operation.get("name")
    while not operation.get("done"):
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            raise CiError(f"{what}: operation {name} not done after {timeout}s")
        asked = time.monotonic()
        wait = min(cloud.settings.poll_seconds, left)
        request = operations(cloud, name).wait(name=name, timeout=f"{wait:.3f}s")
        operation = api(request, f"{what} (poll)")
        if not operation.get("done"):
            time.sleep(max(0.0, wait - (time.monotonic() - asked)))
    if "error" in operation:
        raise CiError(f"{what} failed: {operation['error'].get('message', operation['error'])}")
    return operation.get("response", {})
