"""``ci pr-comment`` against tests/github_stub.py: one create, then edits; forks skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import cli, pr_comment
from tests.github_stub import GitHubStub
from tests.merge_path import run_ci

REPO = "octo/models"


@pytest.fixture
def github():
    with GitHubStub() as stub:
        yield stub


def _event(tmp_path, head: str = REPO, number: int = 7):
    path = tmp_path / "event.json"
    repo = lambda name: {"full_name": name}  # noqa: E731
    pr = {"number": number, "head": {"repo": repo(head)}, "base": {"repo": repo(REPO)}}
    path.write_text(json.dumps({"action": "synchronize", "number": number, "pull_request": pr}))
    return path


def _env(github, tmp_path, token="ghs_write", head=REPO) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github.url,
        "GITHUB_EVENT_PATH": str(_event(tmp_path, head)),
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }


def _body(tmp_path, text: str):
    path = tmp_path / "report.md"
    path.write_text(text)
    return ["--body-file", str(path)]


def test_one_create_then_edits_found_again_past_the_first_page(github, tmp_path):
    # 130 other comments: the report's own comment lands on the second page of 100.
    for i in range(130):
        github.seed(REPO, 7, f"comment {i}")
    env = _env(github, tmp_path)
    assert pr_comment.main(_body(tmp_path, "## Model report: first"), env) == 0
    assert pr_comment.main(_body(tmp_path, "## Model report: second"), env) == 0
    assert pr_comment.main(_body(tmp_path, "## Model report: third"), env) == 0

    writes = [(r.method, r.path) for r in github.writes()]
    (created,) = [c for c in github.comments[(REPO, 7)] if pr_comment.MARKER in c["body"]]
    assert writes == [
        ("POST", f"/repos/{REPO}/issues/7/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{created['id']}"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{created['id']}"),
    ]
    assert created["body"].startswith(pr_comment.MARKER + "\n## Model report: third")
    assert "[Workflow run](https://github.example/octo/models/actions/runs/4242)" in created["body"]
    assert len(github.comments[(REPO, 7)]) == 131  # nobody else's comment was touched
    assert all(c["body"] == f"comment {i}" for i, c in enumerate(github.comments[(REPO, 7)][:130]))
    first = github.requests[0]
    assert first.headers["Authorization"] == "Bearer ghs_write"
    assert first.headers["Accept"] == "application/vnd.github+json"
    pages = [r.query.get("page", ["1"])[0] for r in github.requests if r.method == "GET"]
    assert pages == ["1", "2"] * 3  # every run reads both pages: the marker is on the second


def test_a_lost_answer_is_retried_without_a_second_comment(github, tmp_path, capsys):
    github.fail_next("GET", 503)  # a 5xx before anything happened
    github.fail_next("POST", 502, after_applying=True)  # created, but the answer was lost
    assert pr_comment.main(_body(tmp_path, "report"), _env(github, tmp_path)) == 0
    (comment,) = github.comments[(REPO, 7)]
    assert [r.method for r in github.requests] == ["GET", "GET", "POST", "GET", "PATCH"]
    assert github.writes()[-1].path.endswith(f"/issues/comments/{comment['id']}")
    out = capsys.readouterr().out
    assert out.count("trying again") == 2 and f"updated comment {comment['id']}" in out


def test_fork_event_skips_without_calling_the_api(github, tmp_path):
    env = _env(github, tmp_path, head="someone/models")
    assert pr_comment.main(_body(tmp_path, "report"), env) == 0
    assert github.requests == []
    summary = (tmp_path / "summary.md").read_text()
    assert "PR comment skipped" in summary and "fork" in summary


def test_read_only_token_403_is_a_notice_not_a_failure(github, tmp_path, capsys):
    env = _env(github, tmp_path, token="fork-token")
    assert pr_comment.main(_body(tmp_path, "report"), env) == 0
    assert [r.method for r in github.requests] == ["GET", "POST"]
    assert github.comments == {}
    assert "Resource not accessible by integration" in (tmp_path / "summary.md").read_text()
    assert "::notice title=PR comment skipped::" in capsys.readouterr().out


def test_as_a_command_with_explicit_pr_and_outputs(github, tmp_path):
    env = _env(github, tmp_path)
    env.pop("GITHUB_EVENT_PATH")
    outputs = tmp_path / "out.txt"
    argv = ["pr-comment", *_body(tmp_path, "hello"), "--pr", "12", "--outputs", str(outputs)]
    result = run_ci(argv, env, timeout=60)
    assert result.returncode == 0, result.stderr
    (comment,) = github.comments[(REPO, 12)]
    assert outputs.read_text() == f"comment_url={comment['html_url']}\n"
    assert f"created comment {comment['id']} on #12" in result.stdout


@pytest.mark.parametrize(
    ("drop", "argv", "message"),
    [
        ("GITHUB_TOKEN", [], "GITHUB_TOKEN is not set"),
        ("GITHUB_EVENT_PATH", [], "no pull request number: give --pr N"),
        (None, ["--body-file", "missing.md"], "cannot read --body-file 'missing.md'"),
        (None, ["--pr", "0"], "must be at least 1: '0'"),
        (None, ["--body-file", "binary.csv"], "--body-file 'binary.csv' is not UTF-8 text"),
        (None, ["--body-file", "empty.md"], "--body-file 'empty.md' is empty"),
        (None, ["--body-file", "blank.md"], "--body-file 'blank.md' is empty"),
        ("GITHUB_REPOSITORY=not a repo", [], "GITHUB_REPOSITORY 'not a repo' is not OWNER/NAME"),
        ("GITHUB_REPOSITORY=octo", [], "GITHUB_REPOSITORY 'octo' is not OWNER/NAME"),
        ("GITHUB_REPOSITORY=o/r/issues", [], "GITHUB_REPOSITORY 'o/r/issues' is not OWNER/NAME"),
        ("GITHUB_API_URL=nota url", [], "GITHUB_API_URL 'nota url' is not an http(s) URL"),
        ("GITHUB_API_URL=ftp://h/api", [], "GITHUB_API_URL 'ftp://h/api' is not an http(s) URL"),
        ("GITHUB_API_URL=http://h:x/", [], "GITHUB_API_URL 'http://h:x/' is not an http(s) URL"),
        ("GITHUB_API_URL=https://", [], "GITHUB_API_URL 'https://' is not an http(s) URL"),
        ("GITHUB_SERVER_URL=a b", [], "GITHUB_SERVER_URL 'a b' is not an http(s) URL"),
        ("event=[1]", [], "expected a JSON object"),
        ('event={"pull_request": "x", "number": "7"}', [], "pull request number '7' is not"),
        ("event=\xff", [], "GITHUB_EVENT_PATH '"),
    ],
)
def test_bad_input_is_one_line_exit_2(github, tmp_path, monkeypatch, capsys, drop, argv, message):
    env = _env(github, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81 not utf-8\n" * 100)
    (tmp_path / "empty.md").write_text("")
    (tmp_path / "blank.md").write_text(" \n\n")
    if drop and drop.startswith("event="):
        Path(env["GITHUB_EVENT_PATH"]).write_bytes(drop.removeprefix("event=").encode("latin-1"))
    elif drop and "=" in drop:
        key, value = drop.split("=", 1)
        env[key] = value
    elif drop:
        del env[drop]
        monkeypatch.delenv(drop, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = argv if "--body-file" in argv else [*_body(tmp_path, "x"), *argv]
    assert cli.main(["pr-comment", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("Error: ") and err.count("\n") == 1, err
    assert github.requests == []


def test_api_error_is_exit_1(github, tmp_path, capsys, monkeypatch):
    env = _env(github, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GITHUB_API_URL", github.url + "/nowhere")  # the API answers 404
    assert cli.main(["pr-comment", *_body(tmp_path, "x")]) == 1
    assert "HTTP 404: Not Found" in capsys.readouterr().err


def test_an_oversized_report_is_posted_shortened_with_a_note(github, tmp_path):
    # GitHub (and the stub) refuse a comment over 65,536 characters with a 422.
    report = "| check | verdict |\n|---|---|\n" + "| accuracy | ok |\n" * 10_000
    result = run_ci(["pr-comment", *_body(tmp_path, report)], env=_env(github, tmp_path))
    assert result.returncode == 0, result.stderr
    (comment,) = github.comments[(REPO, 7)]
    body = comment["body"]
    assert len(report) > 65_536 >= len(body) and body.startswith(pr_comment.MARKER)
    assert f"start of a {len(report):,}-character report" in body
    kept = body.split("\n\n*(shortened")[0]
    assert kept.endswith("| accuracy | ok |"), kept[-40:]  # cut at a line end


def test_long_reports_are_shortened_to_what_github_accepts():
    body = pr_comment.compose("x" * 100_000, "https://run")
    assert len(body) <= 65_536 and body.startswith(pr_comment.MARKER)
    assert "shortened" in body and body.rstrip().endswith("[Workflow run](https://run)")


def test_shortening_closes_an_open_code_block():
    body = pr_comment.compose("```\n" + "log line\n" * 20_000, None)
    assert len(body) <= 65_536 and body.count("```") == 2
    assert body.rindex("```") < body.index("*(shortened")
