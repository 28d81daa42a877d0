"""The trainer's contract: entry point, outputs, signature, and bad data refused cleanly."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ci.serving import Predictor, read_instances
from tests.conftest import BUCKET
from trainer import cluster as trainer_cluster
from trainer import task

ROOT = Path(__file__).resolve().parents[1]
HEADER = "120,4,setosa,versicolor,virginica\n"
GOOD_ROW = "5.1,3.5,1.4,0.2,0\n"
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
# What a pull request trains (nox local_train) before local_predict checks data/test.json.
PR_TRAIN_STEPS = int(
    re.search(r"^PR_TRAIN_STEPS = (\d+)$", (ROOT / "noxfile.py").read_text(), re.M).group(1)
)
SEEDS = range(10)


def train(job_dir: Path, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m trainer.task`` in a fresh process, as a user or the cloud runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", str(job_dir), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**QUIET, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def weights(export: Path) -> dict[str, np.ndarray]:
    """Every variable of an export, read from its checkpoint (no graph is loaded)."""
    reader = tf.train.load_checkpoint(str(export / "variables" / "variables"))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("variables/")]
    return {name: reader.get_tensor(name) for name in names}


@pytest.fixture(scope="module")
def job_tmp(tmp_path_factory) -> Path:
    """The ``TMPDIR`` of the ``job`` fixture's run."""
    return tmp_path_factory.mktemp("job-tmp")


@pytest.fixture(scope="module")
def job(tmp_path_factory, job_tmp) -> Path:
    """One real 500-step training run through the entry point the cloud uses."""
    job_dir = tmp_path_factory.mktemp("job")
    # Bytecode written as on most machines: AutoGraph's modules would leave theirs behind.
    train(
        job_dir, "--train-steps", "500", env={"TMPDIR": str(job_tmp), "PYTHONDONTWRITEBYTECODE": ""}
    )
    return job_dir


def test_a_run_leaves_nothing_in_the_temporary_directory(job, job_tmp):
    # TensorFlow deletes the modules AutoGraph wrote there (two per export) at exit, in an
    # atexit handler, and the trainer their bytecode; the entry point's quick exit must
    # still run both.
    assert (job / "model" / "saved_model.pb").is_file()
    assert sorted(p.name for p in job_tmp.iterdir()) == []


_SEEDED_RUNS = """
import json
import sys
from trainer import cluster as trainer_cluster
from trainer import task
base, steps, *seeds = sys.argv[1:]
for seed in seeds:
    flags = ["--job-dir", f"{base}/seed-{seed}", "--train-steps", steps, "--seed", seed]
    assert task.main(flags) == 0, seed
# Which of the packages TensorFlow would load for nothing it loaded; they import afterwards.
loaded = {name: name in sys.modules for name in task._UNUSED_BY_TENSORFLOW}
import googleapiclient.discovery, matplotlib.figure
with open(f"{base}/unused-imports.json", "w") as f:
    json.dump(loaded, f)
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """Seeds 0-9 trained at the pull request's steps, in one process (one TF start-up)."""
    base = tmp_path_factory.mktemp("seeds")
    result = subprocess.run(
        [sys.executable, "-c", _SEEDED_RUNS, str(base), str(PR_TRAIN_STEPS), *map(str, SEEDS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=QUIET,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return base


def test_every_seed_predicts_the_pull_request_check_classes(seeded):
    """What nox local_predict asserts holds whatever the seed: the verdict is not luck."""
    instances = read_instances(ROOT / "data" / "test.json")
    for seed in SEEDS:
        rows = Predictor.load(seeded / f"seed-{seed}" / "model").predict(instances)
        assert [r["class_ids"] for r in rows] == [0, 1, 2], f"seed {seed}"
        assert json.loads((seeded / f"seed-{seed}" / "metrics.json").read_text())["seed"] == seed


def test_tensorflow_loads_without_the_plotting_and_gce_packages_which_import_after(seeded):
    # Both are installed here (the tooling's reports, its clients); the seeded process
    # imported them after training, as a trainer's own code may.
    loaded = json.loads((seeded / "unused-imports.json").read_text())
    assert loaded == {"matplotlib": False, "googleapiclient": False}


def test_same_seed_same_model_and_metrics_different_seed_different_weights(seeded, tmp_path):
    # A fresh process against a run made after nine other seeds in one process: nothing
    # but the seed decides the model.
    train(tmp_path, "--train-steps", str(PR_TRAIN_STEPS), "--seed", "3")
    first, again = seeded / "seed-3", tmp_path
    assert (again / "metrics.json").read_bytes() == (first / "metrics.json").read_bytes()
    a, b = weights(first / "model"), weights(again / "model")
    assert a.keys() == b.keys() and len(a) >= 6
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = weights(seeded / "seed-4" / "model")
    kernels = [k for k in a if a[k].ndim == 2]
    assert len(kernels) == 3 and all(not np.array_equal(a[k], other[k]) for k in kernels)


def test_default_seed_is_stated_and_recorded(job):
    assert json.loads((job / "metrics.json").read_text())["seed"] == 42
    assert "(default: 42)" in " ".join(task._parser().format_help().split())


def test_training_writes_export_and_metrics(job):
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    assert metrics["num_eval_examples"] == 30
    assert metrics["train_steps"] == 500
    assert len(metrics["confusion_matrix"]) == 3
    assert (
        set(metrics["precision"]) == set(metrics["recall"]) == {"setosa", "versicolor", "virginica"}
    )
    assert metrics["tensorflow_version"].startswith("2.")
    assert metrics["classes"] == ["setosa", "versicolor", "virginica"]
    assert (job / "model" / "saved_model.pb").is_file()


def test_signature_lists_the_four_features_and_two_outputs(job):
    # What `saved_model_cli show --tag_set serve --signature_def serving_default` prints,
    # read from the same protocol buffer without starting another TensorFlow.
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((job / "model" / "saved_model.pb").read_bytes())
    (meta,) = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
    signature = meta.signature_def["serving_default"]
    features = {"SepalLength", "SepalWidth", "PetalLength", "PetalWidth"}
    assert set(signature.inputs) == features
    assert set(signature.outputs) == {"class_ids", "probabilities"}
    assert all(signature.inputs[f].tensor_shape.dim[0].size == -1 for f in features)


def scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """Tag → {step: value} of the scalar summaries in the event files under ``log_dir``."""
    found: dict[str, dict[int, float]] = {}
    files = sorted(log_dir.glob("events.out.tfevents.*"))
    assert files, f"no event file in {log_dir}"
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


def test_training_curves_are_written_for_tensorboard(job):
    train_curves, eval_curves = scalars(job / "logs" / "train"), scalars(job / "logs" / "eval")
    assert sorted(train_curves["loss"]) == list(range(50, 501, 50))
    assert all(0 <= a <= 1 for a in train_curves["accuracy"].values())
    metrics = json.loads((job / "metrics.json").read_text())
    assert eval_curves["accuracy"] == {500: pytest.approx(metrics["accuracy"])}
    assert eval_curves["loss"] == {500: pytest.approx(metrics["loss"])}


def test_vertex_locations_take_precedence_and_trials_report(tmp_path, monkeypatch):
    """``AIP_MODEL_DIR`` and ``AIP_TENSORBOARD_LOG_DIR`` as Vertex sets them; as a tuning
    trial (``CLOUD_ML_TRIAL_ID``) the accuracy goes to cloudml-hypertune's metric file."""
    monkeypatch.setenv("AIP_MODEL_DIR", str(tmp_path / "vertex-model"))
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", str(tmp_path / "vertex-logs"))
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "hypertune" / "metrics"))
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "2"]) == 0
    assert (tmp_path / "vertex-model" / "saved_model.pb").is_file()
    assert not (tmp_path / "job" / "model").exists()
    assert "loss" in scalars(tmp_path / "vertex-logs" / "train")
    assert not (tmp_path / "job" / "logs").exists()
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    (line,) = (tmp_path / "hypertune" / "metrics").read_text().splitlines()
    reported = json.loads(line)
    assert reported["trial"] == "7" and reported["global_step"] == "2"
    assert float(reported["accuracy"]) == metrics["accuracy"]


def test_outside_a_tuning_trial_nothing_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("CLOUD_ML_TRIAL_ID", raising=False)
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "hypertune" / "metrics"))
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "2"]) == 0
    assert (tmp_path / "job" / "metrics.json").is_file()
    assert not (tmp_path / "hypertune").exists()


BAD_FILES = {
    "wrong column count": (
        HEADER + GOOD_ROW + "5.0,3.6,1.4,0\n",
        ":3: expected 5 columns, got 4: '5.0,3.6,1.4,0'",
    ),
    "non-numeric value": (
        HEADER + GOOD_ROW * 3 + "5.0,abc,1.4,0.2,0\n",
        ":5: non-numeric value 'abc' for SepalWidth",
    ),
    "label out of range": (
        HEADER + GOOD_ROW + "5.0,3.6,1.4,0.2,3\n",
        ":3: label '3' is not one of 0, 1, 2",
    ),
    "empty file": ("", ": empty file (expected a header line, then data rows)"),
    "header only": (HEADER, ": no data rows after the header line"),
    "wrong header": (
        "a,b,c,d,e\n" + GOOD_ROW,
        ":1: unexpected header 'a,b,c,d,e' (expected the columns "
        "SepalLength,SepalWidth,PetalLength,PetalWidth,Species, TensorFlow's Iris header "
        "'<rows>,4,setosa,versicolor,virginica', or a data row)",
    ),
    "other class names": (
        "120,4,cat,dog,cow\n" + GOOD_ROW,
        ":1: unexpected header '120,4,cat,dog,cow' (expected the columns",
    ),
    # A long line or value is quoted as its first 77 characters and an ellipsis.
    "12 MB header": (
        "h" * 12_000_000 + "\n" + GOOD_ROW,
        ":1: unexpected header '" + "h" * 77 + "...'",
    ),
    "900 KB line": (
        HEADER + GOOD_ROW + "5.0," * 225_000 + "\n",
        ":3: expected 5 columns, got 225001: '" + ("5.0," * 20)[:77] + "...'",
    ),
    "900 KB value": (
        HEADER + "x" * 900_000 + ",3.5,1.4,0.2,0\n",
        ":2: non-numeric value '" + "x" * 77 + "...' for SepalLength",
    ),
    # Beyond 1 MiB a line is refused as it streams, before it ends: carrying it from block
    # to block would take time growing with its square (a 48 MB line: 97 s).
    "12 MB line": (
        HEADER + GOOD_ROW * 2 + "5.0," * 3_000_000 + "\n" + GOOD_ROW,
        ":4: a line longer than 1048576 bytes (a data row is one line of 5 values: are the "
        "line breaks missing?)",
    ),
    "carriage returns alone after the header": (
        HEADER + GOOD_ROW.replace("\n", "\r") * 3,
        ":2: lines end in a carriage return alone (\\r, old Mac style); end them in \\n or \\r\\n",
    ),
    "carriage returns alone": (
        HEADER.replace("\n", "\r") + GOOD_ROW.replace("\n", "\r") * 3,
        ":1: lines end in a carriage return alone (\\r, old Mac style); end them in \\n or \\r\\n",
    ),
    "long label": (
        HEADER + "5.1,3.5,1.4,0.2," + "7" * 1000 + "\n",
        ":2: label '" + "7" * 77 + "...'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("which", ["--train-file", "--eval-file"])
def test_bad_data_is_refused_with_file_line_and_value(case, which, tmp_path, capsys):
    content, expected = BAD_FILES[case]
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    code = task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "3", which, str(bad)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"Error: {bad}{expected}") and err.count("\n") == 1, err[:500]
    assert len(err) < 400 or case == "wrong header"
    assert not (tmp_path / "job").exists(), "no export or metrics may be written"


IRIS_TEST_ROWS = (ROOT / "data" / "iris_test.csv").read_text().splitlines(keepends=True)[1:]


@pytest.mark.parametrize(
    "header",
    ["", "SepalLength,SepalWidth,PetalLength,PetalWidth,Species\n", "\n"],
    ids=["no header", "column names", "blank first line"],
)
# What spreadsheets save as "CSV UTF-8" starts with a byte order mark.
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["", "byte order mark"])
def test_every_row_is_read_with_or_without_a_header(header, bom, tmp_path):
    # data/iris_test.csv has TensorFlow's Iris header and 30 rows; none may be dropped.
    eval_file = tmp_path / "eval.csv"
    eval_file.write_bytes(bom + (header + "".join(IRIS_TEST_ROWS)).encode())
    job = tmp_path / "job"
    flags = ["--job-dir", str(job), "--train-steps", "2", "--eval-file", str(eval_file)]
    assert task.main(flags) == 0
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["num_eval_examples"] == len(IRIS_TEST_ROWS) == 30


BINARY = {
    "invalid UTF-8": b"\x89PNG\r\n\xff\xfe\x00\x01\x02garbage",
    "control bytes": b"\x00\x01\x02\x03,1,2,3,0",
}


@pytest.mark.parametrize("case", sorted(BINARY))
@pytest.mark.parametrize("which", ["--train-file", "--eval-file"])
def test_binary_file_is_refused_with_file_and_line(case, which, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(HEADER.encode() + GOOD_ROW.encode() + BINARY[case] + b"\n" + GOOD_ROW.encode())
    code = task.main(["--job-dir", str(tmp_path / "job"), "--train-steps", "3", which, str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == f"Error: {bad}:3: not UTF-8 text (is this a binary file?)", err
    assert not (tmp_path / "job").exists()


def test_a_loss_that_stops_being_finite_stops_training_without_export(tmp_path, capsys):
    flags = ["--job-dir", str(tmp_path / "job"), "--train-steps", "50", "--learning-rate", "1e30"]
    assert task.main(flags) == 1
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"Error: the training loss became (nan|inf) at step \d+; no model was exported "
        r"\(try a smaller --learning-rate than 1e\+30\)",
        err,
    ), err
    assert not (tmp_path / "job").exists()


def test_missing_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-file", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"Error: {missing}: no such file"
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train-steps", "0"], "argument --train-steps: must be positive: '0'"),
        (["--learning-rate", "fast"], "argument --learning-rate: not a float: 'fast'"),
        (
            ["--hidden-units", "10,x"],
            "argument --hidden-units: expected positive integers like 10,10: '10,x'",
        ),
        (["--trian-steps", "5"], "unrecognized arguments: --trian-steps 5"),
        (["--learning-rate", "nan"], "argument --learning-rate: must be a finite number: 'nan'"),
        (["--learning-rate=-inf"], "argument --learning-rate: must be a finite number: '-inf'"),
        (
            ["--batch-size", "1000000000"],
            "argument --batch-size: must be at most 1048576: '1000000000'",
        ),
        (
            ["--hidden-units", "10,100000"],
            "argument --hidden-units: a layer may have at most 16384 units: '10,100000'",
        ),
        (["--seed", "-1"], "argument --seed: must be between 0 and 2**32 - 1: '-1'"),
    ],
)
def test_bad_flags_get_one_line(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", str(tmp_path), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {message}"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    """The training data as four shard files, each with the header line."""
    folder = tmp_path_factory.mktemp("shards")
    header, *rows = (ROOT / "data" / "iris_training.csv").read_text().splitlines(keepends=True)
    paths = [folder / f"train-{i}.csv" for i in range(4)]
    for i, path in enumerate(paths):
        path.write_text(header + "".join(rows[i::4]))
    return paths


def train_two_workers(job_dir: Path, train_file: str) -> list[str]:
    """Two local worker processes under MultiWorkerMirroredStrategy; their outputs."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "trainer.task", "--job-dir", str(job_dir),
                 "--train-file", train_file, "--train-steps", str(PR_TRAIN_STEPS)],
                cwd=ROOT,
                env={**QUIET, "TF_CONFIG": json.dumps(config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )  # fmt: skip
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:]
        outputs.append(out)
    return outputs


def test_two_workers_read_disjoint_shards_and_repeat_exactly(shards, tmp_path):
    runs = [train_two_workers(tmp_path / f"run-{n}", str(shards[0].parent / "train-*.csv"))
            for n in range(2)]  # fmt: skip
    read = []
    for out in runs[0]:
        (line,) = [x for x in out.splitlines() if " train file(s) (its own share): " in x]
        read.append(line.split(": ", 1)[1].split(", "))
    assert read == [[str(shards[0]), str(shards[2])], [str(shards[1]), str(shards[3])]]
    # The same seed under the multi-worker strategy: the same model, byte for byte.
    first, second = (tmp_path / f"run-{n}" for n in range(2))
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    a, b = weights(first / "model"), weights(second / "model")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    rows = Predictor.load(first / "model").predict(read_instances(ROOT / "data" / "test.json"))
    assert [r["class_ids"] for r in rows] == [0, 1, 2]


@pytest.mark.parametrize(
    ("cluster", "task", "files", "expected"),
    [
        ({}, ("chief", 0), ["a", "b"], (["a", "b"], False)),
        ({"chief": ["c"], "worker": ["w0", "w1"]}, ("chief", 0), list("abcde"), (["a", "d"], True)),
        ({"chief": ["c"], "worker": ["w0", "w1"]}, ("worker", 1), list("abcde"), (["c"], True)),
        ({"worker": ["w0", "w1"]}, ("worker", 1), list("abcd"), (["b", "d"], True)),
        # Fewer files than replicas: all read everything, tf.data keeps each one's batches.
        ({"worker": ["w0", "w1", "w2"]}, ("worker", 2), ["a", "b"], (["a", "b"], False)),
        ({"worker": ["w0", "w1"], "ps": ["p"]}, ("worker", 0), ["a", "b"], (["a"], True)),
    ],
)
def test_files_are_shared_out_by_replica(cluster, task, files, expected):
    # (The fallback end to end: test_pipeline's STANDARD_1 job, three replicas, one file.)
    assert trainer_cluster.share(files, trainer_cluster.Role(*task, cluster)) == expected


def test_cloud_storage_shards_and_outputs(emulator, gcs, shards, tmp_path):
    bucket = gcs.bucket(BUCKET)
    for path in shards[:2]:
        bucket.blob(f"trainer-shards/{path.name}").upload_from_filename(str(path))
    bucket.blob("trainer-shards/eval.csv").upload_from_filename(str(ROOT / "data/iris_test.csv"))
    job = f"gs://{BUCKET}/trainer-gcs-job"
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", job, "--train-steps", "20",
         "--train-file", f"gs://{BUCKET}/trainer-shards/train-*.csv",
         "--eval-file", f"gs://{BUCKET}/trainer-shards/eval.csv"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**QUIET, **emulator.env()},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = [f"gs://{BUCKET}/trainer-shards/train-{i}.csv" for i in range(2)]
    assert f"reads 2 train file(s): {', '.join(names)}" in result.stdout
    objects = {b.name for b in gcs.list_blobs(BUCKET, prefix="trainer-gcs-job/")}
    assert {"trainer-gcs-job/metrics.json", "trainer-gcs-job/model/saved_model.pb"} <= objects
    assert any(n.startswith("trainer-gcs-job/logs/train/events.out.tfevents.") for n in objects)
    assert any(n.startswith("trainer-gcs-job/logs/eval/events.out.tfevents.") for n in objects)


def test_a_glob_that_matches_nothing_is_named(tmp_path, capsys):
    pattern = str(tmp_path / "none-*.csv")
    assert task.main(["--job-dir", str(tmp_path / "job"), "--train-file", pattern]) == 1
    assert capsys.readouterr().err.strip() == f"Error: {pattern}: no file matches"
    assert not (tmp_path / "job").exists()


_CHECK_BEFORE_TENSORFLOW = """
import sys
from trainer import task
code = task.main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("train", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: no such file"),
        ("none-*.csv", None, "none-*.csv: no file matches"),
        ("empty.csv", "", "empty.csv: empty file"),
        ("header.csv", "a,b,c\n1,2,3\n", "header.csv:1: unexpected header 'a,b,c'"),
    ],
)
def test_a_bad_input_file_fails_before_tensorflow_is_imported(tmp_path, train, content, message):
    # Seconds of TensorFlow start-up are not spent to report a typo in a path or a header.
    if content is not None:
        (tmp_path / train).write_text(content)
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_BEFORE_TENSORFLOW, "--job-dir", str(tmp_path / "job"),
         "--train-file", str(tmp_path / train), "--eval-file", str(ROOT / "data/iris_test.csv")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=QUIET,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == "tensorflow imported: False"
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert not (tmp_path / "job").exists()
