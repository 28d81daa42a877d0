"""A local stand-in of the GitHub REST API's issue comments, on 127.0.0.1.

It answers like GitHub for the three calls ``ci pr-comment`` makes (list a PR's comments,
paginated with a ``Link`` header; create a comment; update a comment) and records every
request, so a test can count creates and edits. Tokens in ``read_only_tokens`` get GitHub's
403 on writes, as a fork's pull request token does; a missing token gets 401.

    with GitHubStub() as gh:                      # or: python -m tests.github_stub (prints its URL)
        env = {"GITHUB_API_URL": gh.url, ...}
        gh.requests  ->  [Request(method, path, query, headers, body), ...]
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest/issues/comments"
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: dict | None


@dataclass
class GitHubStub:
    read_only_tokens: set[str] = field(default_factory=lambda: {"fork-token"})
    requests: list[Request] = field(default_factory=list)
    comments: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    # Faults: (method, status, apply_then) answered instead of the next such request;
    # apply_then=True does the work first (a response lost on the way back).
    faults: list[tuple[str, int, bool]] = field(default_factory=list)
    _ids = itertools.count(1_000_001)

    def __enter__(self) -> GitHubStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits up to one (the default 0.5 s, at every test's end).
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seed(self, repo: str, issue: int, body: str, user: dict | None = None) -> dict:
        """A comment that was already there (another user's, or an old report)."""
        return self._new(repo, issue, body, user or {"login": "someone", "id": 1, "type": "User"})

    def fail_next(self, method: str, status: int = 502, after_applying: bool = False) -> None:
        """Answer the next ``method`` request with ``status``; ``after_applying``: do what it
        asks first, as when GitHub did the work but the answer was lost."""
        self.faults.append((method, status, after_applying))

    def writes(self) -> list[Request]:
        """The POST and PATCH requests received, in order."""
        return [r for r in self.requests if r.method in ("POST", "PATCH")]

    def _new(self, repo: str, issue: int, body: str, user: dict) -> dict:
        cid = next(self._ids)
        api = f"{self.url}/repos/{repo}"
        comment = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{api}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo}/pull/{issue}#issuecomment-{cid}",
            "issue_url": f"{api}/issues/{issue}",
            "body": body,
            "user": user,
            "created_at": "2026-12-01T00:00:00Z",
            "updated_at": "2026-12-01T00:00:00Z",
            "author_association": "NONE",
        }
        self.comments.setdefault((repo, issue), []).append(comment)
        return comment


class _Handler(BaseHTTPRequestHandler):
    owner: GitHubStub

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, doc: str = DOCS, send=None) -> None:
        payload = {"message": message, "documentation_url": doc, "status": str(status)}
        (send or self._send)(status, payload)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._error(400, "Problems parsing JSON")
        stub = self.owner
        stub.requests.append(
            Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
        )
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").removeprefix("token ").strip()
        if not token:
            return self._error(401, "Requires authentication")
        if self.command != "GET" and token in stub.read_only_tokens:
            return self._error(403, "Resource not accessible by integration")
        fault = next((f for f in stub.faults if f[0] == self.command), None)
        if fault:
            stub.faults.remove(fault)
            if fault[2]:
                self._route(parts, body, lambda *a, **k: None)
            return self._error(fault[1], "Server Error")
        return self._route(parts, body, self._send)

    def _route(self, parts, body, send) -> None:
        stub = self.owner
        listing = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", parts.path)
        single = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", parts.path)
        if listing and self.command == "GET":
            return self._list(listing.group(1), int(listing.group(2)), parse_qs(parts.query), send)
        if listing and self.command == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("body"), str):
                return self._error(422, 'Invalid request.\n\n"body" wasn\'t supplied.', send=send)
            if len(body["body"]) > 65536:
                return self._error(422, "Validation Failed", send=send)
            repo, issue = listing.group(1), int(listing.group(2))
            return send(201, stub._new(repo, issue, body["body"], BOT))
        if single and self.command == "PATCH":
            for comment in itertools.chain.from_iterable(stub.comments.values()):
                if comment["id"] == int(single.group(2)):
                    comment["body"] = (body or {}).get("body", comment["body"])
                    comment["updated_at"] = "2026-12-01T00:00:01Z"
                    return send(200, comment)
        return self._error(404, "Not Found", "https://docs.github.com/rest", send=send)

    def _list(self, repo: str, issue: int, query: dict, send) -> None:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = int(query.get("page", ["1"])[0])
        items = self.owner.comments.get((repo, issue), [])
        last = max(1, -(-len(items) // per_page))
        links = []
        base = f"{self.owner.url}/repos/{repo}/issues/{issue}/comments?per_page={per_page}"
        if page < last:
            links += [f'<{base}&page={page + 1}>; rel="next"', f'<{base}&page={last}>; rel="last"']
        headers = {"Link": ", ".join(links)} if links else {}
        send(200, items[(page - 1) * per_page : page * per_page], headers)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle


def main(argv: list[str]) -> int:
    """Serve until interrupted; prints the base URL (for GITHUB_API_URL) on the first line."""
    with GitHubStub() as stub:
        print(stub.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        print(json.dumps([r.__dict__ for r in stub.requests], default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
