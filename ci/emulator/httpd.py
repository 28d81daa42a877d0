"""The HTTP layer: a threading standard-library server, a small router, Google JSON errors.

Routes are matched by regular expression on the path; each route carries the discovery
method id (``aiplatform.projects.locations.endpoints.predict``) so that fault injection and
request validation can key on it. Handlers return ``(status, json_body)`` or raise
:class:`ApiError`; nothing else about HTTP leaks into them. A handler marked
:func:`raw_body` gets the request's bytes unparsed and may answer with a
:class:`RawResponse` (``rawPredict``: the serving container's request and answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# google.rpc.Code: each canonical status name's number (googleapis/google/rpc/code.proto),
# what an operation's or a job's `error.code` carries.
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
# The status name of an error answer by HTTP status, as code.proto maps each code to HTTP
# (a code that shares its HTTP status, FAILED_PRECONDITION or ABORTED, is named where it is
# raised). 413 is the emulator's own body limit (Google's frontend refuses such a body
# before the API sees it); its body still says why, in the same shape.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# How often a serving loop looks for shutdown(): what stopping a server costs (the standard
# library's 0.5 s was a second of every `ci` command on the embedded default, two servers).
SHUTDOWN_POLL_SECONDS = 0.02
# The largest request body read: more is refused with 413 before it is parsed (a client's
# mistake must not cost the emulator its memory). Methods may set a lower limit of their
# own (:func:`body_limit`).
MAX_BODY_BYTES = 32 * 1024 * 1024


class ApiError(Exception):
    """An error answer: ``{"error": {"code", "message", "status"}}`` with HTTP ``code``,
    plus ``details`` (google.rpc error details, each with its ``@type``) when given."""

    def __init__(
        self, code: int, message: str, status: str | None = None, details: list | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details

    @property
    def rpc_code(self) -> int:
        """The google.rpc.Code number of :attr:`status` (an operation's ``error.code``)."""
        return RPC_CODES.get(self.status, RPC_CODES["UNKNOWN"])

    def body(self) -> dict:
        """The JSON body of the error answer."""
        error = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def rpc_status(self) -> dict:
        """The error as a google.rpc.Status (a long-running operation's ``error``)."""
        status = {"code": self.rpc_code, "message": self.message}
        if self.details:
            status["details"] = self.details
        return status


BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
REQUIRED = "Required field is not set."


def bad_request(description: str, field: str = "") -> dict:
    """A google.rpc.BadRequest detail with one field violation (``field`` left out when
    empty, as Google's frontends leave it out for the request message itself)."""
    violation = {"field": field} if field else {}
    violation["description"] = description
    return {"@type": BAD_REQUEST, "fieldViolations": [violation]}


def field_error(field: str, message: str = REQUIRED) -> ApiError:
    """400 INVALID_ARGUMENT for one bad request field, as Vertex AI words it: the message
    ``List of found errors:\t1.Field: <path>; Message: <why>\t`` and a google.rpc.BadRequest
    detail naming the same path. ``field`` is the request message's field path in proto
    (snake_case) names: ``endpoint.display_name``, ``custom_job.job_spec.worker_pool_specs[0]``.
    """
    return ApiError(
        400,
        f"List of found errors:\t1.Field: {field}; Message: {message}\t",
        details=[bad_request(message, field)],
    )


class DropConnection(Exception):
    """Close the connection without any answer (an injected fault: the client cannot tell
    whether the server acted)."""


def not_found(what: str) -> ApiError:
    """404 NOT_FOUND naming ``what``."""
    return ApiError(404, f"{what} not found.")


def precondition(message: str) -> ApiError:
    """400 FAILED_PRECONDITION: the request is valid, the resource's state forbids it."""
    # Vertex answers a failed precondition with HTTP 400 and status FAILED_PRECONDITION.
    return ApiError(400, message, "FAILED_PRECONDITION")


@dataclass
class Request:
    """What a handler sees: path parameters, query parameters, the parsed JSON body (or,
    for a :func:`raw_body` handler, the bytes in ``raw``)."""

    method_id: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any = None
    raw_path: str = ""
    raw: bytes = b""


@dataclass
class RawResponse:
    """An answer sent as it is: its bytes, their type, and headers of its own."""

    payload: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def raw_body(handler: Callable) -> Callable:
    """Mark ``handler`` as taking the request body as bytes: not parsed, not validated."""
    handler.raw_body = True
    return handler


def body_limit(limit: int, message: str) -> Callable[[Callable], Callable]:
    """Mark a handler as refusing (400 ``message``) a body of more than ``limit`` bytes."""

    def mark(handler: Callable) -> Callable:
        handler.body_limit = (limit, message)
        return handler

    return mark


Handler = Callable[[Request], tuple[int, Any]]


@dataclass
class Route:
    http_method: str
    pattern: re.Pattern
    method_id: str
    handler: Handler
    request_schema: str | None = None


@dataclass
class Router:
    """Routes plus the hooks every /v1/ call passes through (faults, validation)."""

    routes: list[Route] = field(default_factory=list)
    before: list[Callable[[Route, Request], None]] = field(default_factory=list)
    # Rewrite a successful answer's body (e.g. enums as numbers when the client asks).
    after: list[Callable[[Route, Request, Any], Any]] = field(default_factory=list)
    # Called once a handler ran (whatever it answered): may raise ApiError or
    # DropConnection, which replaces the answer (injected faults after acting).
    acted: list[Callable[[Route, Request], None]] = field(default_factory=list)
    # The error for a path no route serves (HTTP method, path), or None for the plain 404.
    unserved: Callable[[str, str], ApiError | None] | None = None

    def add(self, http_method, pattern, method_id, handler, request_schema=None) -> None:
        """Register ``pattern`` (a regex with named groups, matched on the whole path)."""
        regex = re.compile("^" + pattern + "$")
        if getattr(handler, "raw_body", False):
            request_schema = None
        self.routes.append(Route(http_method, regex, method_id, handler, request_schema))

    def dispatch(self, http_method: str, target: str, raw_body: bytes) -> tuple[int, Any]:
        """Answer one request; every failure becomes a Google JSON error."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        # Google's HTTP mapping takes a query parameter by its proto name as well as its
        # JSON name (`update_mask` or `updateMask`): handlers see the JSON name.
        query = {_json_name(k): v[-1] for k, v in parse_qs(parts.query).items()}
        allowed = False
        for route in self.routes:
            match = route.pattern.match(path)
            if not match:
                continue
            allowed = True
            if route.http_method != http_method:
                continue
            request = Request(route.method_id, match.groupdict(), query, raw_path=path)
            return self._answer(route, request, raw_body)
        error = self.unserved(http_method, path) if self.unserved else None
        if error is not None:
            return error.code, error.body()
        if allowed:
            # Google's frontends route on method and path together: a path served under
            # another HTTP method is a method that does not exist, 404 "Method not found."
            # (not HTTP's 405, which has no google.rpc.Code).
            message = f"Method not found. ({http_method} {path} is not a method of this API.)"
            return 404, ApiError(404, message).body()
        return 404, ApiError(404, f"The requested URL {path} was not found.").body()

    def _answer(self, route: Route, request: Request, raw_body: bytes) -> tuple[int, Any]:
        """Prepare, handle, then the ``acted`` hooks, each failure a Google JSON error: a
        request refused before the handler was never carried out; an error an ``acted``
        hook raises replaces the answer of a request that was."""
        refused = _guarded(lambda: self._prepare(route, request, raw_body))
        if refused is not None:
            return refused
        answer = _guarded(lambda: self._handle(route, request))
        lost = _guarded(lambda: self._acted(route, request))
        return lost or answer

    def _prepare(self, route: Route, request: Request, raw_body: bytes) -> None:
        """Parse and check the request, through the ``before`` hooks (faults first)."""
        limit, message = getattr(route.handler, "body_limit", (None, ""))
        if limit is not None and len(raw_body) > limit:
            raise ApiError(400, message.format(size=len(raw_body), limit=limit))
        if getattr(route.handler, "raw_body", False):
            request.raw = raw_body
        else:
            request.body = _parse_body(raw_body, route)
        for hook in self.before:
            hook(route, request)

    def _acted(self, route: Route, request: Request) -> None:
        """The ``acted`` hooks: an error they raise is answered instead of the handler's."""
        for hook in self.acted:
            hook(route, request)

    def _handle(self, route: Route, request: Request) -> tuple[int, Any]:
        """Run the handler and the ``after`` rewrites of its answer."""
        status, body = route.handler(request)
        if isinstance(body, RawResponse):
            return status, body
        for after in self.after:
            body = after(route, request, body)
        return status, body


def _guarded(step: Callable[[], Any]) -> Any:
    """``step()``'s result, or the Google JSON error it raised as ``(status, body)``;
    DropConnection goes through to the connection's handler."""
    try:
        return step()
    except DropConnection:
        raise
    except ApiError as exc:
        return exc.code, exc.body()
    except Exception as exc:
        # A bug must cost one request a 500, never the connection or the server.
        return 500, ApiError(500, f"emulator error: {exc!r}").body()


def _json_name(name: str) -> str:
    """``update_mask`` -> ``updateMask``; a JSON name (or ``$alt``) stays as it is."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _parse_body(raw: bytes, route: Route) -> Any:
    if not raw:
        return {} if route.request_schema else None
    if route.request_schema is None and route.method_id.startswith("aiplatform."):
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON payload received. {exc}.") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY, Nagle plus delayed ACKs add ~40 ms to keep-alive round trips.
    disable_nagle_algorithm = True
    router: Router

    def _serve(self) -> None:
        raw = self._body()
        if isinstance(raw, ApiError):
            self.close_connection = True  # a chunked body may not have been read to its end
            status, body = raw.code, raw.body()
        else:
            # Google's frontends take the method of a POST from X-HTTP-Method-Override
            # (for clients that can send only GET and POST).
            method = self.command
            override = self.headers.get("X-HTTP-Method-Override", "").strip().upper()
            if method == "POST" and override:
                method = override
            try:
                status, body = self.server.router.dispatch(method, self.path, raw)
            except DropConnection:
                self.close_connection = True  # no answer at all: the client sees EOF
                return
        extra = "Connection: close\r\n" if self.close_connection else ""
        if isinstance(body, RawResponse):
            payload, ctype = body.payload, body.content_type
            extra += "".join(f"{name}: {value}\r\n" for name, value in body.headers.items())
        elif isinstance(body, str):
            payload, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json; charset=UTF-8"
        # One write for headers and body: the same reason as TCP_NODELAY above.
        head = (
            f"HTTP/1.1 {status} {_reason(status)}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n{extra}\r\n"
        )
        # A HEAD answer has the headers of the answer alone (RFC 9110): no method of the
        # API is a HEAD, so it is the JSON 404 of any other method a path does not have.
        self.wfile.write(head.encode("latin-1") + (b"" if self.command == "HEAD" else payload))

    def _body(self) -> bytes | ApiError:
        """The request body (Content-Length or chunked), or the error that refuses it."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    length = int(line, 16)
                except ValueError:
                    return ApiError(400, "Malformed chunked request body.")
                if length == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    return _too_large(size)
                chunks.append(self.rfile.read(length))
                self.rfile.readline(8)  # the CRLF after each chunk
        text = self.headers.get("Content-Length") or "0"
        if not text.strip().isdigit():
            return ApiError(400, f"Invalid Content-Length {text!r}.")
        length = int(text)
        if length > MAX_BODY_BYTES:
            left = length  # read and dropped, so the client gets to read the answer
            while left > 0:
                read = len(self.rfile.read(min(left, 1 << 20)))
                if not read:
                    break
                left -= read
            return _too_large(length)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = do_HEAD = _serve

    def log_message(self, format, *args):
        # Per-request logging to stderr costs latency and says nothing the client doesn't see.
        pass


def _too_large(size: int) -> ApiError:
    return ApiError(
        413, f"Request payload size {size} bytes exceeds the limit of {MAX_BODY_BYTES} bytes."
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class QuickStop(HTTPServer):
    """An HTTP server whose ``shutdown()`` returns within :data:`SHUTDOWN_POLL_SECONDS`."""

    def serve_forever(self, poll_interval: float = SHUTDOWN_POLL_SECONDS) -> None:
        super().serve_forever(poll_interval)


class Server(QuickStop, ThreadingHTTPServer):
    """A threading server bound to 127.0.0.1 that answers through ``router``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, router: Router):
        self.router = router
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
