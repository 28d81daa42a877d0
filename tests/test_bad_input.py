"""The bad-input catalogue: each case is one ``Error:`` line naming the bad value or file,
exit code 2, no traceback, and nothing written.

Every case runs ``python -m ci`` in-process against a Vertex AI endpoint where nothing
listens: input that is only noticed after connecting would fail with exit 1 instead, so
exit 2 also proves the check came before any work.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from ci import cli, gate_rules
from ci.errors import UsageError
from tests.merge_path import ROOT

NOBODY = "http://127.0.0.1:9"  # the discard port: nothing answers
BINARY = b"\xff\xfe\x00\x81 not utf-8\n"
DEEP = "[" * 200_000 + "]" * 200_000 + "\n"
GATE = "[metrics.accuracy]\nlower_bound = 0.5\n"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory of good and bad inputs, the current directory during the test."""
    files = {
        "good.json": (ROOT / "data" / "test.json").read_bytes(),
        "binary.json": BINARY,
        "deep.json": DEEP.encode(),
        "gate.toml": GATE.encode(),
        "binary.toml": BINARY,
        "empty.toml": b"# nothing yet\n",
        "shape.toml": b'metrics = "accuracy"\n',
        "nested.toml": b"[metrics.precision.setosa]\nlower_bound = 0.5\n",
        "metrics.json": b'{"accuracy": 0.9}\n',
        "binary-metrics.json": BINARY,
        "deep-metrics.json": DEEP.encode(),
        "fake.tar.gz": b"this is not gzip data at all\n",
        "broken.tar.gz": gzip.compress(b"not a tar archive, only gzip")[:-4],
        "a-file": b"x\n",
        "deep.toml": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "nul.toml": b'git_sha = "a\\u0000b"\n',
        "broken.jsonl": b'{"a": 1}\n{"a": \n',
        "blank.jsonl": b"\n  \n\n",
        "notzip.zip": b"PK but not really a zip archive\n",
        "float-int.toml": b"local_max_replicas = 2.5\n",
        "nan.toml": b"heartbeat = nan\n",
        "bool.toml": b"poll_interval = true\n",
        "model/saved_model.pb": b"\x08\x01 definitely not a protobuf SavedModel \xff" * 20,
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "model" / "variables").mkdir()
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "CI_PROJECT": "bad-input",
        "CI_BUCKET": "bad-input",
        "CI_API_ENDPOINT": NOBODY,
        "STORAGE_EMULATOR_HOST": NOBODY,
        "CI_DATA_DIR": str(ROOT / "data"),
        "CI_TRAIN_FILE": "iris_training.csv",
        "CI_EVAL_FILE": "iris_test.csv",
        "CI_SETTINGS": "",
    }.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


GATE_ARGS = ["--config", "gate.toml", "--candidate-metrics", "metrics.json"]
BATCH = ["batch-predict", "--output", "gs://bad-input/o", "--instances"]

CASES = {
    # files that are not UTF-8
    "instances not utf-8 (predict)": (["predict", "--instances", "binary.json"], "binary.json"),
    "instances not utf-8 (local-predict)": (
        ["local-predict", "--model-dir", "model", "--json-instances", "binary.json"],
        "binary.json",
    ),
    "ci.toml not utf-8": (["predict", "--settings", "binary.toml"], "binary.toml"),
    "gate.toml not utf-8": (
        ["gate", "--config", "binary.toml", "--candidate-metrics", "metrics.json"],
        "binary.toml",
    ),
    "metrics not utf-8": (
        ["gate", "--config", "gate.toml", "--candidate-metrics", "binary-metrics.json"],
        "binary-metrics.json",
    ),
    # JSON nested deeper than the recursion limit
    "deep instances (predict)": (["predict", "--instances", "deep.json"], "deep.json:1"),
    "deep instances (local-predict)": (
        ["local-predict", "--model-dir", "model", "--json-instances", "deep.json"],
        "deep.json:1",
    ),
    "deep metrics": (
        ["gate", "--config", "gate.toml", "--candidate-metrics", "deep-metrics.json"],
        "deep-metrics.json",
    ),
    # a damaged export
    "corrupt saved_model.pb": (
        ["local-predict", "--model-dir", "model", "--json-instances", "good.json"],
        "model: cannot load the SavedModel",
    ),
    # gate configs that would bless without thresholds, or are the wrong shape
    "empty gate config": (
        ["gate", "--config", "empty.toml", "--candidate-metrics", "metrics.json"],
        "'empty.toml' sets no thresholds",
    ),
    "gate metrics not tables": (
        ["gate", "--config", "shape.toml", "--candidate-metrics", "metrics.json"],
        "'shape.toml': 'metrics' must be tables",
    ),
    "dotted metric as nested table": (
        ["gate", "--config", "nested.toml", "--candidate-metrics", "metrics.json"],
        '[metrics."precision.setosa"]',
    ),
    # output paths, checked before the work
    "--summary in a missing directory": (
        ["gate", *GATE_ARGS, "--summary", "no/such/dir/summary.md"],
        "'no/such/dir' of 'no/such/dir/summary.md' does not exist",
    ),
    "--outputs is a directory": (["gate", *GATE_ARGS, "--outputs", "model"], "'model'"),
    "--decision-out under a file": (
        ["gate", *GATE_ARGS, "--decision-out", "a-file/decision.json"],
        "'a-file' in 'a-file/decision.json' is not a directory",
    ),
    "--markdown-out in a missing directory": (
        ["gate", *GATE_ARGS, "--markdown-out", "nowhere/table.md"],
        "'nowhere/table.md'",
    ),
    "--dist-dir under a file": (
        ["package", "--dist-dir", "a-file/dist"],
        "'a-file' in 'a-file/dist' is a file",
    ),
    "pipeline --dist-dir is a file": (
        ["pipeline", "--dist-dir", "a-file", "--gate-config", "gate.toml"],
        "'a-file' is a file, not a directory",
    ),
    # packages that are not gzip
    "stage: .tar.gz not gzip": (["stage", "--sdist", "fake.tar.gz"], "'fake.tar.gz'"),
    "train --package: .tar.gz not gzip": (
        ["train", "--train-steps", "5", "--package", "fake.tar.gz"],
        "'fake.tar.gz'",
    ),
    # a package that is not an sdist or wheel: refused as `ci stage` does, before any upload
    "train --package: not an archive": (
        ["train", "--train-steps", "5", "--package", "a-file"],
        "package 'a-file' is not an sdist or wheel",
    ),
    "train --package: .zip that is not a zip": (
        ["train", "--train-steps", "5", "--package", "notzip.zip"],
        "package 'notzip.zip' is not a readable archive",
    ),
    "train --package: gs:// object not a package": (
        ["train", "--train-steps", "5", "--package", "gs://bad-input/pkg/trainer.txt"],
        "'gs://bad-input/pkg/trainer.txt' is not an sdist or wheel",
    ),
    "tune --package: not an archive": (
        ["tune", "--tuning-config", str(ROOT / "tuning.toml"), "--package", "a-file"],
        "package 'a-file' is not an sdist or wheel",
    ),
    "train --tuning-config --package: .tar.gz not gzip": (
        ["train", "--tuning-config", str(ROOT / "tuning.toml"), "--package", "fake.tar.gz"],
        "'fake.tar.gz'",
    ),
    # malformed job and version ids: bad usage before connecting (unknown ones are exit 1)
    "promote --job abc": (["promote", "--job", "abc"], "--job: bad value 'abc'"),
    "promote --job empty": (["promote", "--job", ""], "--job: bad value ''"),
    "promote --job name with a bad id": (
        ["promote", "--job", "projects/p-123456/locations/us-central1/customJobs/abc"],
        "'projects/p-123456/locations/us-central1/customJobs/abc'",
    ),
    "gate --job abc": (["gate", "--config", "gate.toml", "--job", "abc"], "'abc'"),
    "report --job abc": (["report", "--job", "abc", "--out", "R"], "--job: bad value 'abc'"),
    "report --job NUL": (["report", "--job", "1\x002", "--out", "R"], "contains a NUL byte"),
    "report --version v1": (
        ["report", "--version", "v1", "--out", "R"],
        "--version: bad value 'v1'",
    ),
    "rollback --to-version -1": (["rollback", "--to-version=-1"], "--to-version: bad value '-1'"),
    "rollback --to-version 1.0": (["rollback", "--to-version", "1.0"], "'1.0'"),
    "batch-predict --model-version bad alias": (
        [*BATCH, "good.json", "--model-version", "Bad Alias!"],
        "--model-version: bad value 'Bad Alias!'",
    ),
    # batch-predict's local instances: checked (a line at a time) before anything is uploaded
    "batch-predict: instances not utf-8": (
        ["batch-predict", "--instances", "binary.json", "--output", "gs://bad-input/o"],
        "'binary.json' line 1 is not UTF-8 text",
    ),
    "batch-predict: instances not JSON": (
        ["batch-predict", "--instances", "broken.jsonl", "--output", "gs://bad-input/o"],
        "'broken.jsonl' line 2: not JSON",
    ),
    "batch-predict: deep instances": (
        ["batch-predict", "--instances", "deep.json", "--output", "gs://bad-input/o"],
        "'deep.json' line 1: JSON nested too deeply",
    ),
    "batch-predict: blank instances": (
        ["batch-predict", "--instances", "blank.jsonl", "--output", "gs://bad-input/o"],
        "'blank.jsonl' has no instances",
    ),
    "batch-predict: instances a directory": (
        ["batch-predict", "--instances", "model", "--output", "gs://bad-input/o"],
        "file to stage is a directory: 'model'",
    ),
    "batch-predict: --output names no bucket": (
        ["batch-predict", "--instances", "good.json", "--output", "gs:///x"],
        "no bucket in 'gs:///x'",
    ),
    # paths the system refuses, blank names and NUL bytes: named, before any work
    "--summary name too long": (["gate", *GATE_ARGS, "--summary", "s" * 5000], "(5000 characters)"),
    "--stage --sdist name too long": (["stage", "--sdist", "p" * 100_000], "File name too long"),
    "--outputs blank": (["gate", *GATE_ARGS, "--outputs", " "], "blank file name ' '"),
    "--dist-dir blank": (["package", "--dist-dir", "  "], "blank directory name '  '"),
    "local-train --job-dir empty": (["local-train", "--job-dir", ""], "blank directory name"),
    "NUL in an argument": (["predict", "--instances", "a\x00b"], "contains a NUL byte"),
    "NUL in ci.toml": (
        ["predict", "--settings", "nul.toml"],
        "'git_sha' from nul.toml: contains a NUL byte",
    ),
    "ci.toml nested too deeply": (
        ["predict", "--settings", "deep.toml"],
        "'deep.toml': TOML nested",
    ),
    "gate config nested too deeply": (
        ["gate", "--config", "deep.toml", "--candidate-metrics", "metrics.json"],
        "'deep.toml' is not valid TOML: maximum recursion depth",
    ),
    "tuning config nested too deeply": (["tune", "--tuning-config", "deep.toml"], "deep.toml"),
    "pyproject nested too deeply": (
        ["install-deps", "--group", "ci", "--pyproject", "deep.toml"],
        "deep.toml: not a readable TOML file",
    ),
    "--settings is a directory": (["predict", "--settings", "model"], "'model' is a directory"),
    "--model-name blank": (["predict", "--model-name", "   "], "--model-name: bad value '   '"),
    "--git-sha blank": (
        ["predict", "--git-sha", " "],
        "'git_sha' from --git-sha: bad value ' '",
    ),
    # numbers: NaN, infinities, booleans, truncation
    "--poll-interval nan": (["predict", "--poll-interval", "nan"], "'nan'"),
    "--heartbeat inf": (["predict", "--heartbeat", "inf"], "'inf'"),
    "heartbeat = nan in ci.toml": (["predict", "--settings", "nan.toml"], "nan"),
    "poll_interval = true in ci.toml": (["predict", "--settings", "bool.toml"], "True"),
    "local_max_replicas = 2.5": (["predict", "--settings", "float-int.toml"], "2.5"),
    "--timeout nan": (["train", "--train-steps", "5", "--timeout", "nan"], "'nan'"),
    "--timeout inf": (["train", "--train-steps", "5", "--timeout", "inf"], "'inf'"),
    "--threshold nan": (
        ["gate", *GATE_ARGS, "--threshold", "accuracy.lower_bound=nan"],
        "'accuracy.lower_bound=nan'",
    ),
    # settings checked before anything is built
    "unknown tf_version": (
        ["train", "--train-steps", "5", "--tf-version", "1.2"],
        "'tf_version': no prebuilt Vertex AI image for TensorFlow 1.2",
    ),
    "bad tf_version": (["pipeline", "--tf-version", "latest"], "'latest'"),
}


@pytest.mark.parametrize(("argv", "named"), list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, argv, named):
    before = tree(workdir)
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    [line] = captured.err.splitlines()
    assert line.startswith("Error: ") and named in line
    assert tree(workdir) == before  # nothing built, staged or half-written


def test_broken_gzip_is_named_when_hashed(workdir, capsys):
    # Gzip magic, but truncated: found when the sdist's content is hashed, before upload.
    from ci.stage import content_hash

    with pytest.raises(UsageError, match=r"'broken.tar.gz' is not a readable \.tar\.gz"):
        content_hash(Path("broken.tar.gz"))


def test_a_gate_that_skips_every_check_refuses():
    # Only a change threshold and no champion yet: nothing would be checked.
    change = {"accuracy": {"direction": "higher", "absolute_change": -0.1}}
    assert not gate_rules.judges_alone(change)
    with pytest.raises(UsageError, match=r"gate config 'g\.toml': every threshold was skipped"):
        gate_rules.decide(change, {"accuracy": 0.9}, None, "gate config 'g.toml'")
    assert gate_rules.decide(change, {"accuracy": 0.9}, {"accuracy": 0.95}).passed


def test_an_empty_output_path_means_none(workdir, capsys):
    # "$GITHUB_STEP_SUMMARY" outside GitHub expands to "": no file, not an error.
    before = tree(workdir)
    argv = ["gate", "--config", "empty.toml", "--summary", "", "--outputs", ""]
    assert cli.main(argv) == 2
    assert "'empty.toml' sets no thresholds" in capsys.readouterr().err  # past the flags
    assert tree(workdir) == before


def test_a_state_dir_that_is_a_file_is_named_before_the_emulators_start(
    workdir, monkeypatch, capsys
):
    # The embedded default (no project, no endpoint) keeps its state in state_dir.
    for name in ("CI_PROJECT", "CI_API_ENDPOINT", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name)
    before = tree(workdir)
    assert cli.main(["versions", "--state-dir", "a-file"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "Error: 'a-file' (for the local emulators' state) exists and is not a directory"
    assert tree(workdir) == before
