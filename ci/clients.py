"""The Google clients, built the same way for Vertex AI and for the local emulators.

Only the endpoint and the credentials differ: Application Default Credentials against
Google Cloud, anonymous credentials against a plain ``http://`` endpoint (an emulator:
credentials must never travel unencrypted). Nothing else branches. Every client in ``ci``
(the emulator's own included) is built here, with its endpoint passed explicitly rather
than read from the process environment.
"""

from __future__ import annotations

import contextlib
import time

# How often google-api-python-client retries 429 and 5xx answers (exponential backoff
# with jitter, its own implementation: ``HttpRequest.execute(num_retries=...)``): the
# default of the ``api_retries`` setting.
NUM_RETRIES = 5
# The library waits up to 2**n seconds before retry n (random), gentle with Google's
# servers; an emulator on this machine answers at once, so it waits this fraction of that
# (up to 0.1 s, 0.2 s, ...), as polls of an emulator are 0.05 s apart instead of 10 s.
EMULATOR_BACKOFF_SCALE = 0.05


def import_libraries() -> None:
    """Import what building the clients needs (0.2 s): a caller that is about to wait
    for something else (the emulators' start) runs this in a thread meanwhile. A failed
    import is left for building the clients to meet and report."""
    with contextlib.suppress(ImportError):
        import google.auth.credentials
        import google.cloud.storage  # noqa: F401
        import googleapiclient.discovery  # noqa: F401


def vertex_endpoint(region: str, api_endpoint: str | None = None) -> str:
    """The regional Vertex AI endpoint, or ``api_endpoint`` when one is given."""
    return api_endpoint or f"https://{region}-aiplatform.googleapis.com"


def is_emulator(endpoint: str | None) -> bool:
    """True for a plain ``http://`` endpoint: an emulator, which gets anonymous credentials."""
    return bool(endpoint and endpoint.startswith("http://"))


def vertex(
    region: str,
    api_endpoint: str | None = None,
    anonymous: bool = False,
    retries: int = NUM_RETRIES,
):
    """An ``aiplatform`` v1 client from the static discovery document shipped with the
    library; its requests retry 429 and 5xx ``retries`` times when executed (:func:`call`),
    with the library's backoff (:data:`EMULATOR_BACKOFF_SCALE` of it for an emulator)."""
    import random

    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery
    from googleapiclient.http import HttpRequest

    local = is_emulator(vertex_endpoint(region, api_endpoint))

    once: list = []  # the client's credentials over a connection that never resends

    class RetryingRequest(HttpRequest):
        retry_budget = retries

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if local:  # the request's own hook for the random factor of its backoff
                self._rand = lambda: random.random() * EMULATOR_BACKOFF_SCALE

        def execute(self, http=None, num_retries=retries):
            return super().execute(http=http, num_retries=num_retries)

        def execute_once(self):
            """Send the request exactly once: no retry, and no silent resend of httplib2's
            when the connection closes before the answer (the server may have acted). On a
            new connection: a kept-alive one may have gone stale, and its failure would be
            mistaken for a lost answer."""
            once[0].close()
            return super().execute(http=once[0], num_retries=0)

        def pause(self, attempt: int) -> None:
            """Sleep before retry ``attempt`` (1, 2, ...), as the library's backoff does."""
            time.sleep(self._rand() * 2**attempt)

    credentials = AnonymousCredentials() if anonymous else None
    client = discovery.build(
        "aiplatform",
        "v1",
        static_discovery=True,
        cache_discovery=False,
        credentials=credentials,
        client_options={"api_endpoint": vertex_endpoint(region, api_endpoint)},
        requestBuilder=RetryingRequest,
    )
    once.append(_once_http(client._http))
    client.ci_once_http = once[0]  # closed with the client's by Cloud.fresh_connections
    _collections_built_once(client)
    return client


def _collections_built_once(resource) -> None:
    """Make each collection of ``resource`` (``projects()``, ``locations()``, ``models()``
    ...) build once and return the same object after. The library builds a collection anew
    at every call, every method of it included: about 0.1 s of a command's CPU went into
    rebuilding ``projects().locations().endpoints()`` and the like. A collection holds no
    request state, so sharing one changes no request."""
    for name in list(resource._dynamic_attrs):
        build = getattr(resource, name)
        if getattr(build, "__is_resource__", False):
            resource.__dict__[name] = _built_once(build)


def _built_once(build):
    made: list = []

    def collection():
        if not made:
            child = build()
            _collections_built_once(child)
            made.append(child)
        return made[0]

    collection.__is_resource__ = True
    return collection


def _once_http(authorized):
    """``authorized`` (an AuthorizedHttp) with its credentials over an ``httplib2.Http``
    that sends each request once: httplib2 resends a request whose connection closed before
    its answer (a stale kept-alive connection, it assumes), which would repeat a create the
    server already carried out. Here that is an error its caller can look into."""
    import httplib2
    from google_auth_httplib2 import AuthorizedHttp

    class OneSend(httplib2.Http):
        def _conn_request(self, conn, request_uri, method, body, headers):
            sent = []
            send = conn.request

            def request_once(*args, **kwargs):
                if sent:
                    conn.close()
                    raise LostAnswer(f"{method} {request_uri}: the connection closed unanswered")
                sent.append(True)
                return send(*args, **kwargs)

            conn.request = request_once
            try:
                return super()._conn_request(conn, request_uri, method, body, headers)
            finally:
                del conn.request

    inner = authorized.http
    http = OneSend(timeout=inner.timeout)
    http.redirect_codes = inner.redirect_codes
    return AuthorizedHttp(authorized.credentials, http=http)


class LostAnswer(ConnectionAbortedError):
    """A request was sent but its connection closed before the answer: it may have been
    carried out."""


def storage(project: str | None = None, endpoint: str | None = None):
    """A google-cloud-storage client for ``endpoint`` (default: Google's).

    The endpoint is passed as ``client_options``, so the client never consults
    ``STORAGE_EMULATOR_HOST``: the settings decide (``storage_endpoint`` defaults to it).
    """
    from google.cloud import storage as gcs

    options = {"api_endpoint": endpoint} if endpoint else None
    if is_emulator(endpoint):
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(
            project=project or "local", credentials=AnonymousCredentials(), client_options=options
        )
    return gcs.Client(project=project, client_options=options)


def call(request):
    """Execute a discovery request, retrying 429 and 5xx with the library's backoff."""
    return request.execute()  # the client's retries (vertex(retries=...))
