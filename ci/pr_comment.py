"""``python -m ci pr-comment``: post the report on the pull request, or update the one posted.

The comment carries a hidden marker, so the next run finds it again (through every page of
the PR's comments) and edits it instead of adding another. GitHub's own variables say where:
``GITHUB_TOKEN``, ``GITHUB_REPOSITORY``, ``GITHUB_API_URL`` (default https://api.github.com),
``GITHUB_EVENT_PATH`` (the PR number, unless ``--pr`` gives it), ``GITHUB_SERVER_URL`` and
``GITHUB_RUN_ID`` (a link to the run). On a fork's pull request the token cannot write: that
is detected from the event (head repository ≠ base repository) or from the API's 403, and the
command writes a notice to the step summary and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from ci import flags, outputs
from ci.errors import CiError, UsageError
from ci.inputs import input_file, parse_json, read_text

MARKER = "<!-- tf-vertex-ci report -->"
MAX_BODY = 65_000  # GitHub refuses comment bodies over 65,536 characters
# GitHub's names: an owner is letters, digits and hyphens; a repository adds . and _.
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
TIMEOUT = 30.0
RETRY_PAUSE = 1.0  # seconds, times the attempt number


class NoWriteAccess(CiError):
    """The token may not comment (a fork's pull request): skipped, not a failure."""


class Transient(CiError):
    """A 5xx or a dropped connection: worth another try."""


@dataclass
class GitHub:
    """The REST API of one repository, with a token."""

    api_url: str
    repository: str
    token: str

    def call(self, method: str, url: str, body: dict | None = None):
        """``(decoded JSON, response headers)``; HTTP errors become one-line CiErrors."""
        if not url.startswith(self.api_url.rstrip("/") + "/"):
            # Only ever send the token to the configured API (pagination links included).
            raise CiError(f"GitHub API answered with a link outside {self.api_url}: {url}")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        request.add_header("User-Agent", "tf-vertex-ci")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        what = f"GitHub API {method} {url[len(self.api_url.rstrip('/')) :]}"
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read() or b"null"), response.headers
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            error = {403: NoWriteAccess}.get(exc.code, Transient if exc.code >= 500 else CiError)
            raise error(f"{what}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Transient(f"{what}: cannot connect ({getattr(exc, 'reason', exc)})") from None

    def repo_url(self, *parts: str) -> str:
        return "/".join([self.api_url.rstrip("/"), "repos", self.repository, *parts])


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read() or b"{}").get("message") or exc.reason
    except ValueError:
        return str(exc.reason)


def _next_link(headers) -> str | None:
    for part in (headers.get("Link") or "").split(","):
        url, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return url.strip().strip("<>")
    return None


def find_comment(gh: GitHub, pr: int) -> dict | None:
    """The first comment on the PR that carries the marker, looking through every page."""
    url = gh.repo_url("issues", str(pr), "comments") + "?per_page=100"
    while url:
        comments, headers = gh.call("GET", url)
        for comment in comments:
            if MARKER in (comment.get("body") or ""):
                return comment
        url = _next_link(headers)
    return None


def compose(report: str, run_url: str | None) -> str:
    """The comment: marker, report (shortened to GitHub's limit), a link to the run."""
    tail = f"\n\n[Workflow run]({run_url})" if run_url else ""
    room = MAX_BODY - len(MARKER) - len(tail) - 1
    if len(report) > room:
        note = (
            f"\n\n*(shortened: this is the start of a {len(report):,}-character report; "
            "the whole report is in the run's artifact)*"
        )
        kept = report[: room - len(note) - 4]
        kept = kept[: kept.rfind("\n") + 1] or kept  # whole lines: a table row is not cut
        if kept.count("```") % 2:  # close a code block, or it would swallow the note
            kept += "```"
        report = kept.rstrip() + note
    return f"{MARKER}\n{report.rstrip()}{tail}\n"


@dataclass
class Posted:
    action: str  # "created" or "updated"
    comment_id: int
    url: str


def post_or_update(gh: GitHub, pr: int, body: str, attempts: int = 3) -> Posted:
    """Edit the marked comment if there is one, else create it.

    A transient failure starts over from the search, so a create whose answer was lost is
    found and edited on the next attempt rather than posted twice.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _post_or_update(gh, pr, body)
        except Transient as exc:
            if attempt == attempts:
                raise
            print(f"{exc}; trying again", flush=True)
            time.sleep(RETRY_PAUSE * attempt)
    raise AssertionError("unreachable")


def _post_or_update(gh: GitHub, pr: int, body: str) -> Posted:
    existing = find_comment(gh, pr)
    if existing:
        url = gh.repo_url("issues", "comments", str(existing["id"]))
        comment, _ = gh.call("PATCH", url, {"body": body})
        return Posted("updated", comment["id"], comment.get("html_url", ""))
    comment, _ = gh.call("POST", gh.repo_url("issues", str(pr), "comments"), {"body": body})
    return Posted("created", comment["id"], comment.get("html_url", ""))


def fork_pull_request(event: dict) -> bool:
    """True for a PR whose head lives in another repository (its token is read-only)."""
    head = _dig(event, "pull_request", "head", "repo", "full_name")
    base = _dig(event, "pull_request", "base", "repo", "full_name")
    return bool(_dig(event, "pull_request")) and head != base


def _dig(value, *keys):
    """``value[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _event(path: str | None) -> dict:
    if not path:
        return {}
    event = parse_json(read_text(path, "GITHUB_EVENT_PATH"), f"GITHUB_EVENT_PATH {path!r}")
    if not isinstance(event, dict):
        raise UsageError(f"GITHUB_EVENT_PATH {path!r}: expected a JSON object")
    return event


def _required(env: dict, name: str) -> str:
    if not env.get(name):
        raise UsageError(f"{name} is not set (pr-comment runs in a GitHub Actions job)")
    return env[name]


def _repository(env: dict) -> str:
    name = _required(env, "GITHUB_REPOSITORY")
    if not REPOSITORY.fullmatch(name):
        raise UsageError(f"GITHUB_REPOSITORY {_cut(name)!r} is not OWNER/NAME")
    return name


def _url(env: dict, name: str, default: str) -> str:
    """``env[name]``, an http(s) URL with a host, or ``default`` when unset."""
    url = env.get(name) or default
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # an invalid port or bracketed host
        ok = False
    if not ok or any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"{name} {_cut(url)!r} is not an http(s) URL")
    return url


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str], env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    parser = flags.parser("pr-comment", __doc__, with_settings=False)
    parser.add_argument(
        "--body-file", required=True, metavar="FILE", type=input_file, help="e.g. R/report.md"
    )
    parser.add_argument("--pr", type=flags.positive_int, help="PR number (default: the event's)")
    args = parser.parse_args(argv)
    summary = args.summary or env.get("GITHUB_STEP_SUMMARY")
    report = read_text(args.body_file, "--body-file")
    if not report.strip():
        raise UsageError(f"--body-file {args.body_file!r} is empty: there is no report to post")
    event = _event(env.get("GITHUB_EVENT_PATH"))
    pr = args.pr or _dig(event, "pull_request", "number") or event.get("number")
    if not pr:
        raise UsageError("no pull request number: give --pr N or run on a pull_request event")
    if isinstance(pr, bool) or not isinstance(pr, int) or pr < 1:
        raise UsageError(
            f"GITHUB_EVENT_PATH: pull request number {_cut(repr(pr))} is not 1 or more"
        )
    if fork_pull_request(event):
        return _skip(summary, "this pull request comes from a fork, whose token cannot comment")
    gh = GitHub(
        _url(env, "GITHUB_API_URL", "https://api.github.com"),
        _repository(env),
        _required(env, "GITHUB_TOKEN"),
    )
    run_url = None
    if env.get("GITHUB_RUN_ID"):
        if not env["GITHUB_RUN_ID"].isdecimal():
            raise UsageError(f"GITHUB_RUN_ID {_cut(env['GITHUB_RUN_ID'])!r} is not a run number")
        server = _url(env, "GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{gh.repository}/actions/runs/{env['GITHUB_RUN_ID']}"
    try:
        posted = post_or_update(gh, int(pr), compose(report, run_url))
    except NoWriteAccess as exc:
        return _skip(summary, f"the token may not comment ({exc})")
    print(f"{posted.action} comment {posted.comment_id} on #{pr}: {posted.url}")
    outputs.write_outputs(args.outputs, {"comment_url": posted.url})
    return 0


def _skip(summary: str | None, why: str) -> int:
    notice = f"PR comment skipped: {why}. The report is in the job summary and the artifact."
    print(f"::notice title=PR comment skipped::{notice}")
    outputs.write_summary(summary, f"> [!NOTE]\n> {notice}")
    return 0
