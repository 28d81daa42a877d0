"""Fault injection for the Cloud Storage emulator: its JSON API calls by discovery id.

gcp-storage-emulator's request handler serves the storage port; :class:`FaultyHandler`
puts the emulator's :class:`~ci.emulator.faults.FaultTable` in front of it, so that
``{"method": "objects.insert", "status": 503}`` posted to the Vertex port's
``/_emulator/faults`` (one admin API for both servers) reaches uploads too. A request is
named by the method of Google's storage discovery document it calls
(``storage.objects.insert`` for a simple, multipart or resumable upload, each request of a
resumable one included; ``storage.objects.get`` for metadata and for media downloads,
``alt=media`` or ``/download/storage/v1/...``), and an injected error has the JSON API's
error shape (``{"error": {"code", "message", "errors": [{"reason", "message",
"domain"}]}}``), as Cloud Storage answers it.
"""

from __future__ import annotations

import io
import json
import re

from gcp_storage_emulator.server import RequestHandler, Router, _read_raw_data

from ci.emulator.faults import FaultTable

# The JSON API's reason for each status an injected error may have (Cloud Storage's
# "HTTP status and error codes for JSON"); a status it does not list says backendError.
REASONS = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    413: "uploadTooLarge",
    429: "rateLimitExceeded",
    499: "clientClosedRequest",
    500: "backendError",
    501: "notImplemented",
    503: "backendError",
    504: "gatewayTimeout",
}
_BUCKET = r"/b/[^/]+"
_OBJECT = _BUCKET + r"/o/.+"
# (path regex under the API root, {HTTP method: discovery method id}), most specific first:
# an object's name may contain "/copyTo/" or "/acl", as the emulator's own routes assume.
ROUTES = [
    (r"/b", {"GET": "buckets.list", "POST": "buckets.insert"}),
    (_BUCKET + r"/acl", {"GET": "bucketAccessControls.list"}),
    (_BUCKET + r"/defaultObjectAcl", {"GET": "defaultObjectAccessControls.list"}),
    (_BUCKET + r"/iam/testPermissions", {"GET": "buckets.testIamPermissions"}),
    (_BUCKET + r"/iam", {"GET": "buckets.getIamPolicy", "PUT": "buckets.setIamPolicy"}),
    (
        _BUCKET,
        {
            "GET": "buckets.get",
            "DELETE": "buckets.delete",
            "PATCH": "buckets.patch",
            "PUT": "buckets.update",
        },
    ),
    (_BUCKET + r"/o", {"GET": "objects.list", "POST": "objects.insert"}),
    (_OBJECT + r"/copyTo" + _OBJECT, {"POST": "objects.copy"}),
    (_OBJECT + r"/rewriteTo" + _OBJECT, {"POST": "objects.rewrite"}),
    (_OBJECT + r"/compose", {"POST": "objects.compose"}),
    (_OBJECT + r"/acl", {"GET": "objectAccessControls.list"}),
    (_OBJECT + r"/restore", {"POST": "objects.restore"}),
    (
        _OBJECT,
        {
            "GET": "objects.get",
            "DELETE": "objects.delete",
            "PATCH": "objects.patch",
            "PUT": "objects.update",
        },
    ),
]
_COMPILED = [(re.compile(pattern), methods) for pattern, methods in ROUTES]
# Uploads (POST starts one; PUT sends a resumable one's bytes) and media downloads.
UPLOAD_ROOT, DOWNLOAD_ROOT, API_ROOT = "/upload/storage/v1", "/download/storage/v1", "/storage/v1"


def method_id(http_method: str, target: str) -> str | None:
    """``storage.<resource>.<method>`` for a JSON API request, or None for anything else
    (the XML API, batches, the emulator's own paths): those meet no injected fault."""
    path = target.split("?", 1)[0]
    if path.startswith(UPLOAD_ROOT + "/"):
        upload = re.fullmatch(_BUCKET + "/o", path[len(UPLOAD_ROOT) :])
        return "storage.objects.insert" if upload and http_method in ("POST", "PUT") else None
    if path.startswith(DOWNLOAD_ROOT + "/"):
        download = re.fullmatch(_OBJECT, path[len(DOWNLOAD_ROOT) :])
        return "storage.objects.get" if download and http_method == "GET" else None
    # The JSON API's root, or none at all (the Node client's STORAGE_EMULATOR_HOST style).
    path = path.removeprefix(API_ROOT)
    for pattern, methods in _COMPILED:
        if pattern.fullmatch(path):
            found = methods.get(http_method)
            return f"storage.{found}" if found else None
    return None


def error_body(status: int, message: str) -> dict:
    """A JSON API error: ``{"error": {"code", "message", "errors": [...]}}``."""
    reason = REASONS.get(status, "backendError")
    detail = {"reason": reason, "message": message, "domain": "global"}
    return {"error": {"code": status, "message": message, "errors": [detail]}}


class FaultyHandler(RequestHandler):
    """gcp-storage-emulator's handler with the fault table in front of every request."""

    def __init__(self, storage, faults: FaultTable, *args, **kwargs):
        self.faults = faults  # before super().__init__, which serves the request
        super().__init__(storage, *args, **kwargs)

    def _serve(self) -> None:
        """Serve one request, unless a fault pending for its method says otherwise."""
        http_method = self.headers.get("X-HTTP-Method-Override") or self.command
        called = method_id(http_method.upper(), self.path)
        before = self.faults.take_call(called) if called else None
        if before:
            _read_raw_data(self)  # read, so that closing leaves no unread bytes (a reset)
            return self._inject(before, called)
        after = self.faults.take_call(called, after=True) if called else None
        if after is None:
            return Router(self).handle(self.command)
        answer, self.wfile = self.wfile, io.BytesIO()  # carried out; its answer goes nowhere
        try:
            Router(self).handle(self.command)
        finally:
            self.wfile = answer
        self._inject(after, called)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _inject(self, fault: dict, called: str) -> None:
        """Answer the injected error, or close the connection unanswered (``drop``)."""
        self.close_connection = True
        if fault.get("drop"):
            return
        status = fault["status"]
        message = fault.get("message") or f"Injected {status} for {called}."
        payload = json.dumps(error_body(status, message)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
