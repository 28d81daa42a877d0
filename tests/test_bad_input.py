"""The bad-input catalogue: each case is one ``Error:`` line naming the bad value or file,
exit code 2, no traceback, and nothing written.

Every case runs ``python -m ci`` in-process against a Vertex AI endpoint where nothing
listens: input that is only noticed after connecting would fail with exit 1 instead, so
exit 2 also proves the check came before any work.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from ci import cli, gate_rules
from ci.errors import CiError, UsageError
from tests.merge_path import ROOT
from tests.sdists import sdist_bytes

NOBODY = "http://127.0.0.1:9"  # the discard port: nothing answers
BINARY = b"\xff\xfe\x00\x81 not utf-8\n"
DEEP = "[" * 200_000 + "]" * 200_000 + "\n"
GATE = "[metrics.accuracy]\nlower_bound = 0.5\n"
LONG = "x" * 10_000
DIR, LOOP = object(), object()  # in a case's files: a directory, a symlink to itself


class Link(str):
    """In a case's files: a symbolic link to this path."""


# A small, readable .tar.gz: a package that passes every offline check.
SDIST = sdist_bytes("trainer-0.1", {"setup.py": "#\n"})
STUDY = "metric = 'accuracy'\n[parameters.x]\ntype = 'DOUBLE'\nmin = 0\nmax = 1\n"


def case(argv, named, env=None, files=None):
    """A case that also sets environment variables (None: unset) or writes files first."""
    return argv, named, env or {}, files or {}


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


def tree(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root`` with its bytes (None for directories, a symlink's target)."""
    return {
        str(p.relative_to(root)): (
            f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes() if p.is_file() else None
        )
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
    # typos are named with the nearest known name
    "unknown command typo": (["pipline"], "unknown command 'pipline' (did you mean 'pipeline'?)"),
    "ci.toml key typo": case(
        ["predict", "--settings", "s.toml"],
        "unknown setting 'modle_name' in 's.toml' (did you mean 'model_name'?)",
        files={"s.toml": "modle_name = 'x'\n"},
    ),
    "gate table typo": case(
        ["gate", "--config", "g.toml", "--candidate-metrics", "metrics.json"],
        "unknown table 'metric' (did you mean 'metrics'?)",
        files={"g.toml": "[metric.accuracy]\nlower_bound = 0.5\n"},
    ),
    "gate key typo": case(
        ["gate", "--config", "g.toml", "--candidate-metrics", "metrics.json"],
        "unknown key 'lower_boud' for metric 'accuracy' (did you mean 'lower_bound'?)",
        files={"g.toml": "[metrics.accuracy]\nlower_boud = 0.5\n"},
    ),
    "--threshold key typo": (
        ["gate", *GATE_ARGS, "--threshold", "accuracy.lower_boud=0.5"],
        "(did you mean 'lower_bound'?)",
    ),
    "--threshold direction named": (
        ["gate", *GATE_ARGS, "--threshold", "accuracy.direction=sideways"],
        "not 'sideways'",
    ),
    "tuning key typo": case(
        ["tune", "--tuning-config", "t.toml", "--package", "pkg.tar.gz"],
        "t.toml: metrc: unknown key (did you mean 'metric'?)",
        files={"t.toml": "metrc = 'accuracy'\n", "pkg.tar.gz": SDIST},
    ),
    "tuning parameter key typo": case(
        ["tune", "--tuning-config", "t.toml", "--package", "pkg.tar.gz"],
        "parameters.x.typ: unknown key (did you mean 'type'?)",
        files={"t.toml": STUDY.replace("type =", "typ ="), "pkg.tar.gz": SDIST},
    ),
    "workflow input typo": (
        ["workflow-plan", "--inputs-json", '{"trian-steps": "5"}'],
        "unknown workflow input 'trian-steps' (did you mean 'train-steps'?)",
    ),
    "install-deps group typo": (["install-deps", "--group", "lnt"], "(did you mean 'lint'?)"),
    "flag typo": (
        ["gate", "--confg", "gate.toml"],
        "unrecognized arguments: --confg gate.toml (did you mean '--config'?)",
    ),
    "pyproject table typo": case(
        ["package", "--package-dir", "p"],
        "unknown table 'build-sytem' (did you mean 'build-system'?)",
        files={"p/pyproject.toml": "[build-sytem]\nrequires = []\n"},
    ),
    # a default file that is there but is no file: named, not taken for "no file"
    "ci.toml is a directory": case(
        ["predict"], "'ci.toml' is not a file (a directory)", files={"ci.toml": DIR}
    ),
    "ci.toml is a symlink loop": case(
        ["predict"], "'ci.toml' is not a file (a symbolic link loop)", files={"ci.toml": LOOP}
    ),
    # settings only Google Cloud or the emulator would have refused, after connecting
    "bucket with a goog prefix": case(["predict"], "'goog-ml'", env={"CI_BUCKET": "goog-ml"}),
    "bucket of 64 characters": case(["predict"], "CI_BUCKET", env={"CI_BUCKET": "b" * 64}),
    "bucket an IP address": case(["predict"], "'192.168.5.4'", env={"CI_BUCKET": "192.168.5.4"}),
    "bucket of a gs:// URI": (
        ["batch-predict", "--instances", "good.json", "--output", "gs://" + "b" * 64 + "/o"],
        "the bucket of 'gs://bbbb",
    ),
    "STORAGE_EMULATOR_HOST not a URL": case(
        ["predict"],
        "'storage_endpoint' from STORAGE_EMULATOR_HOST: bad value 'http://a b'",
        env={"STORAGE_EMULATOR_HOST": "http://a b"},
    ),
    "api_endpoint port out of range": case(
        ["predict"], "'http://127.0.0.1:99999'", env={"CI_API_ENDPOINT": "http://127.0.0.1:99999"}
    ),
    "emulator_serving_runtime unknown": case(
        ["predict"], "'bogus' (one of local, image)", env={"CI_EMULATOR_SERVING_RUNTIME": "bogus"}
    ),
    # flags: numbers no API takes, names Vertex AI refuses
    "--batch-size huge": (
        [*BATCH, "good.json", "--batch-size", "9" * 30],
        "must be at most 2147483647",
    ),
    "--timeout of years": (
        [*BATCH, "good.json", "--timeout", "1e300"],
        "at most 604800 seconds",
    ),
    "--pr huge": (["pr-comment", "--body-file", "metrics.json", "--pr", "9" * 30], "--pr"),
    "--parameter-server-count negative": case(
        ["train", "--package", "pkg.tar.gz", "--parameter-server-count=-5"],
        "must be at least 0: '-5'",
        files={"pkg.tar.gz": SDIST},
    ),
    "--job-display-name too long": case(
        ["train", "--package", "pkg.tar.gz", "--job-display-name", LONG],
        "--job-display-name: display name: bad value 'xxx",
        files={"pkg.tar.gz": SDIST},
    ),
    "--job-display-name control character": case(
        [
            "tune",
            "--tuning-config",
            "t.toml",
            "--package",
            "pkg.tar.gz",
            "--job-display-name",
            "a\nb",
        ],
        "bad value 'a\\nb'",
        files={"t.toml": STUDY, "pkg.tar.gz": SDIST},
    ),
    "--labels nested too deeply": (
        ["promote", "--job", "1", "--labels", "[" * 30_000 + "]" * 30_000],
        "JSON nested too deeply",
    ),
    "--labels too many": (
        ["promote", "--job", "1", "--labels", json.dumps({f"k{i}": "v" for i in range(65)})],
        "65 labels; Vertex AI allows 64",
    ),
    "--labels too many with promote's own": (
        ["promote", "--job", "1", "--labels", json.dumps({f"k{i}": "v" for i in range(61)})],
        "61 labels; with promote's own (job-id, git-sha, data-hash, seed) Vertex AI allows 60",
    ),
    "--labels replacing promote's own": (
        ["promote", "--job", "1", "--labels", '{"job-id": "7", "team": "ml"}'],
        "--labels: job-id is set by promote itself",
    ),
    "tuning train_steps huge": case(
        ["tune", "--tuning-config", "t.toml", "--package", "pkg.tar.gz"],
        "train_steps: 99999999999 is more than 2147483647",
        files={"t.toml": "train_steps = 99999999999\n" + STUDY, "pkg.tar.gz": SDIST},
    ),
    "tuning metric with a NUL": case(
        ["tune", "--tuning-config", "t.toml", "--package", "pkg.tar.gz"],
        "t.toml: metric:",
        files={"t.toml": STUDY.replace("'accuracy'", '"a\\u0000"'), "pkg.tar.gz": SDIST},
    ),
    "tuning display_name control character": case(
        ["tune", "--tuning-config", "t.toml", "--package", "pkg.tar.gz"],
        "t.toml: display_name:",
        files={"t.toml": 'display_name = "a\\tb"\n' + STUDY, "pkg.tar.gz": SDIST},
    ),
    # instances that are not JSON though Python's json reads them
    "predict: NaN instance": case(
        ["predict", "--instances", "nan.json"],
        "nan.json:1: not JSON (NaN is not JSON)",
        files={"nan.json": "[NaN]\n"},
    ),
    "predict: number beyond a float": case(
        ["predict", "--instances", "big.json"],
        "big.json:1: not JSON (1e999 is too large",
        files={"big.json": "[1e999]\n"},
    ),
    "batch-predict: Infinity instance": case(
        [*BATCH, "inf.json"],
        "'inf.json' line 1: not JSON (Infinity is not JSON)",
        files={"inf.json": "[Infinity]\n"},
    ),
    # blank and unusable file names, and paths that resolve to nothing
    "tune --tuning-config blank": (["tune", "--tuning-config", " "], "blank file name ' '"),
    "predict --instances blank": (["predict", "--instances", " "], "blank file name ' '"),
    "--outputs a symlink loop": case(
        ["gate", *GATE_ARGS, "--outputs", "o.txt"],
        "'o.txt' is a symbolic link loop",
        files={"o.txt": LOOP},
    ),
    "--summary a symlink to nothing": case(
        ["gate", *GATE_ARGS, "--summary", "o.md"],
        "'o.md' is a symbolic link to nothing",
        files={"o.md": Link("gone/o.md")},
    ),
    "stage --data a symlink loop": case(
        ["stage", "--sdist", "pkg.tar.gz", "--data", "l.csv"],
        "file to stage 'l.csv' is not a file (a symbolic link loop)",
        files={"pkg.tar.gz": SDIST, "l.csv": LOOP},
    ),
    "report --out under a file": (
        ["report", "--job", "1", "--out", "a-file/r"],
        "'a-file' in 'a-file/r' is a file",
    ),
    "report --out blank": (["report", "--job", "1", "--out", " "], "blank directory name"),
    "pipeline --report-dir a symlink loop": case(
        ["pipeline", "--gate-config", "gate.toml", "--report-dir", "r"],
        "'r' is a symbolic link loop",
        files={"r": LOOP},
    ),
    # long values are named by their start and length, on one line
    "promote --job of 10,000 characters": (
        ["promote", "--job", "1" * 10_000],
        "(10000 characters)",
    ),
    # workflow and GitHub inputs
    "workflow inputs nested too deeply": (
        ["workflow-plan", "--inputs-json", "[" * 30_000 + "]" * 30_000],
        "workflow inputs are not JSON: --inputs-json: JSON nested too deeply",
    ),
    "CI_WORKFLOW_INPUTS not JSON": case(
        ["workflow-plan"],
        "workflow inputs are not JSON: CI_WORKFLOW_INPUTS: not JSON",
        env={"CI_WORKFLOW_INPUTS": "{"},
    ),
    "GITHUB_EVENT_PATH a list": case(
        ["workflow-plan"],
        "the event is not a JSON object",
        env={"GITHUB_EVENT_PATH": "metrics-list.json"},
        files={"metrics-list.json": "[1]\n"},
    ),
    "GITHUB_RUN_ID not a number": case(
        ["pr-comment", "--body-file", "metrics.json", "--pr", "1"],
        "GITHUB_RUN_ID '1/../x' is not a run number",
        env={"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": "t", "GITHUB_RUN_ID": "1/../x"},
    ),
    # requirements that are pip's options
    "install-deps: an option as a requirement": case(
        ["install-deps", "--group", "ci", "--pyproject", "p.toml"],
        "'--index-url=http://example.invalid', which is not a requirement",
        files={"p.toml": "[dependency-groups]\nci = ['--index-url=http://example.invalid']\n"},
    ),
    "pyproject: an option in requires": case(
        ["package", "--package-dir", "p"],
        "build-system.requires must be requirements (PEP 508), not '-e.'",
        files={"p/pyproject.toml": "[build-system]\nrequires = ['-e.']\n"},
    ),
    # third pass: gate thresholds no value could pass, and metric names that are not there
    "gate lower_bound above upper_bound": case(
        ["gate", "--config", "g.toml", "--candidate-metrics", "metrics.json"],
        "g.toml: accuracy.lower_bound 0.9 is above its upper_bound 0.1",
        files={"g.toml": "[metrics.accuracy]\nlower_bound = 0.9\nupper_bound = 0.1\n"},
    ),
    "--threshold upper_bound below the file's lower_bound": (
        ["gate", *GATE_ARGS, "--threshold", "accuracy.upper_bound=0.1"],
        "--threshold: accuracy.lower_bound 0.5 is above its upper_bound 0.1",
    ),
    "gate metric not in metrics.json": case(
        ["gate", "--config", "g.toml", "--candidate-metrics", "metrics.json"],
        "no finite number 'acuracy' (found nothing) (did you mean 'accuracy'?)",
        files={"g.toml": "[metrics.acuracy]\nlower_bound = 0.5\n"},
    ),
    # instances: one JSON document over several lines, an empty request body
    "predict: a pretty-printed JSON array": case(
        ["predict", "--instances", "a.json"],
        "a.json:1: not JSON (Expecting value): '[' (one JSON document over several lines?",
        files={"a.json": '[\n  {"a": 1},\n  {"a": 2}\n]\n'},
    ),
    "batch-predict: a pretty-printed JSON object": case(
        [*BATCH, "a.json"],
        "'a.json' line 1: not JSON (Expecting property name enclosed in double quotes): '{' (one",
        files={"a.json": '{\n  "a": 1\n}\n'},
    ),
    "predict: a request body with no instances": case(
        ["predict", "--instances", "b.json"],
        "b.json: no instances (its 'instances' list is empty)",
        files={"b.json": '{"instances": []}\n'},
    ),
    # output paths with control characters: they would split a $GITHUB_OUTPUT line
    "--dist-dir with a newline": (
        ["package", "--dist-dir", "a\nb", "--outputs", "o.txt"],
        "--dist-dir: control character in the path 'a\\nb'",
    ),
    "--outputs with a carriage return": (
        ["gate", *GATE_ARGS, "--outputs", "o\r.txt"],
        "--outputs: control character in the path 'o\\r.txt'",
    ),
    "local-train --job-dir with a newline": (
        ["local-train", "--job-dir", "j\nk", "--outputs", "o.txt"],
        "--job-dir: control character in the path 'j\\nk'",
    ),
    "report --out with a tab": (
        ["report", "--job", "1", "--out", "r\tx"],
        "--out: control character in the path 'r\\tx'",
    ),
    # a --package-dir that is not there, or is a file
    "package --package-dir missing": (
        ["package", "--package-dir", "no such dir"],
        "package dir 'no such dir': it does not exist",
    ),
    "package --package-dir a file": (
        ["package", "--package-dir", "a-file"],
        "package dir 'a-file': it is not a directory",
    ),
}


def _write(root: Path, files: dict) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
        elif content is LOOP:
            os.symlink(path.name, path)
        elif isinstance(content, Link):
            os.symlink(content, path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize(
    ("argv", "named", "env", "files"), [case(*c) for c in CASES.values()], ids=list(CASES)
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    workdir, capsys, monkeypatch, argv, named, env, files
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _write(workdir, files)
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


def test_a_storage_client_that_gives_up_is_a_failure_not_a_bug():
    # google-cloud-storage retries on its own and then raises RetryError, which is no
    # GoogleAPICallError: still one line, exit 1, naming what failed and why.
    from google.api_core.exceptions import RetryError

    from ci.cloud import guard

    def gives_up():
        raise RetryError("Timeout of 120.0s exceeded", ConnectionError("refused"))

    with pytest.raises(CiError, match=r"^check gs://b/o failed: gave up retrying \(refused\)$"):
        guard(gives_up, "check gs://b/o")


def test_an_output_in_a_read_only_directory_is_named_before_the_work(workdir, monkeypatch, capsys):
    # As root every directory is writable, so the refusal is simulated: os.access says no.
    (workdir / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).endswith("ro") and real(p, mode))
    before = tree(workdir)
    for argv, named in [
        (["gate", *GATE_ARGS, "--summary", "ro/s.md"], "directory 'ro' of 'ro/s.md' is read-only"),
        (["package", "--dist-dir", "ro/dist"], "directory 'ro' of 'ro/dist' is read-only"),
    ]:
        assert cli.main(argv) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("Error: ") and named in line
    assert tree(workdir) == before


def test_a_failing_build_leaves_no_dist_dir(workdir, capsys):
    # The package's own error, on one line, and the dist dir this build made is gone again.
    _write(workdir, {"p/setup.py": "raise SystemExit('boom: setup.py refuses')\n"})
    before = tree(workdir)
    assert cli.main(["package", "--package-dir", "p", "--dist-dir", "out/dist"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("Error: building the sdist in ") and "boom: setup.py refuses" in line
    assert tree(workdir) == before


def test_an_output_value_with_a_carriage_return_is_refused():
    # GitHub's runner ends a $GITHUB_OUTPUT line at "\r" as well as at "\n".
    from ci import outputs

    with pytest.raises(UsageError, match="spans several lines"):
        outputs.one_line("a\rb")
