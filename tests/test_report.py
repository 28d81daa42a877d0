"""``ci report``: the gate's checks, lineage, artifacts, plots and a self-contained page, for
Iris's job against a champion and for a model with other metrics (``auc``/``log_loss``, no
confusion matrix, no event files); the event reader against TensorFlow's own."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest

from ci import cli, events
from tests.conftest import BUCKET
from tests.merge_path import png_size, settings_env

GATE = """
[metrics.accuracy]
direction = "higher"
lower_bound = 0.5
absolute_change = -0.5

[metrics.loss]
direction = "lower"
upper_bound = 5

[metrics."recall.versicolor"]
lower_bound = 0.1
"""
OTHER_GATE = """
[metrics.auc]
direction = "higher"
lower_bound = 0.7
absolute_change = -0.02

[metrics.log_loss]
direction = "lower"
upper_bound = 0.6
"""
LOSS = [(0, 1.2), (50, 0.7), (100, 0.41), (150, 0.3)]


def write_events(logdir: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Event files as TensorFlow writes them (``tf.summary.scalar`` needs tensorboard)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    meta = summary_pb2.SummaryMetadata(plugin_data=plugin)
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for tag, points in scalars.items():
            for step, value in points:
                tf.summary.write(tag, tf.constant(value), step=step, metadata=meta)
        tf.summary.write("weights", tf.ones([4]), step=0)  # not a scalar: skipped
        tf.summary.write("note", tf.constant("text"), step=0)
    writer.close()


def upload_dir(gcs, local: Path, uri: str) -> None:
    bucket = gcs.bucket(BUCKET)
    prefix = uri.removeprefix(f"gs://{BUCKET}/")
    for path in local.rglob("*"):
        if path.is_file():
            bucket.blob(f"{prefix}/{path.relative_to(local).as_posix()}").upload_from_filename(
                os.fspath(path)
            )


def upload_version(vertex, poll, model: str, artifact_uri: str, labels: dict) -> str:
    parent = "projects/test-project/locations/us-central1"
    models = vertex.projects().locations().models()
    found = [m for m in models.list(parent=parent).execute().get("models", [])]
    parent_model = next((m["name"] for m in found if m["displayName"] == model), None)
    body = {
        "model": {
            "displayName": model,
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17"},
            "labels": labels,
        },
        **({"parentModel": parent_model} if parent_model else {}),
    }
    response = poll.operation(models.upload(parent=parent, body=body).execute())["response"]
    return response["modelVersionId"]


def run_report(monkeypatch, capsys, env: dict, *argv: str) -> tuple[int, str, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["report", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_event_reader_matches_tensorflow(tmp_path):
    import tensorflow as tf

    write_events(tmp_path / "train", {"loss": LOSS, "accuracy": [(0, 0.3), (150, 0.9)]})
    write_events(tmp_path / "eval", {"loss": [(150, 0.35)]})
    curves = events.read_dir(tmp_path)
    expected: dict = {}
    for path in tmp_path.rglob("*tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.ndim == 0 and array.dtype.kind == "f":
                    run = expected.setdefault(path.parent.name, {})
                    run.setdefault(value.tag, []).append((event.step, float(array)))
    assert curves == expected
    assert [v for _, v in curves["train"]["loss"]] == pytest.approx([v for _, v in LOSS])
    # A file cut anywhere (still being written): the complete records before the cut.
    data = next((tmp_path / "train").glob("*tfevents*")).read_bytes()
    full = curves["train"]["loss"]
    for cut in range(len(data)):
        loss = events.scalars(data[:cut]).get("loss", [])
        assert loss == full[: len(loss)], cut


@pytest.fixture
def iris_setup(emulator, vertex, poll, gcs, trained, tmp_path):
    """The session's trained Iris job as candidate (with event files added) and a champion
    version with its own metrics and curves."""
    job_dir = trained["artifact_uri"].rpartition("/")[0]
    write_events(tmp_path / "cand" / "ci-fixture", {"loss": LOSS})
    upload_dir(gcs, tmp_path / "cand", f"{job_dir}/logs")
    champ = f"gs://{BUCKET}/report-champion"
    metrics = {"accuracy": 0.9, "loss": 0.5, "recall": {"versicolor": 0.8}, "classes": ["a"]}
    (tmp_path / "champ").mkdir()
    (tmp_path / "champ" / "metrics.json").write_text(json.dumps(metrics))
    write_events(tmp_path / "champ" / "logs" / "train", {"loss": [(0, 1.5), (150, 0.6)]})
    upload_dir(gcs, tmp_path / "champ", champ)
    labels = {"job-id": "champ-job", "git-sha": "c0ffee", "data-hash": "d1"}
    version = upload_version(vertex, poll, "report-iris", f"{champ}/model", labels)
    return {"job": trained["job"], "job_dir": job_dir, "champion": champ, "version": version}


def test_job_against_champion(iris_setup, emulator, tmp_path, monkeypatch, capsys):
    out, summary, cfg = tmp_path / "R", tmp_path / "summary.md", tmp_path / "gate.toml"
    cfg.write_text(GATE)
    env = settings_env(emulator, "report-iris")
    argv = ["--job", iris_setup["job"]["name"], "--out", str(out), "--gate-config", str(cfg)]
    code, stdout, err = run_report(monkeypatch, capsys, env, *argv, "--summary", str(summary))
    assert code == 0, err
    assert sorted(Path(line).name for line in stdout.splitlines()) == sorted(
        ["comparison.png", "confusion_matrix.png", "training_curves.png", "report.md", "index.html"]
    )
    text = (out / "report.md").read_text()
    job_id = iris_setup["job"]["name"].rsplit("/", 1)[-1]
    assert text.startswith(f"## Model report: job {job_id}\n")
    assert f"against **version {iris_setup['version']}** (champion)" in text
    # Every gated metric, nested ones too, with both values and the delta.
    rows = {r.split("|")[1].strip(): r for r in text.splitlines() if r.startswith("| ")}
    assert rows["accuracy"].split("|")[3].strip() == "0.9"
    assert "✅ >= 0.5" in rows["accuracy"] and "✅ change >= -0.5" in rows["accuracy"]
    assert rows["loss"].split("|")[3].strip() == "0.5" and "✅ <= 5" in rows["loss"]
    assert rows["recall.versicolor"].split("|")[3].strip() == "0.8"
    assert re.fullmatch(r"[+-]\d.*", rows["recall.versicolor"].split("|")[4].strip())
    # Lineage labels and artifact paths of both sides.
    # (the session's job was submitted without labels; ci train labels git-sha and data-hash)
    assert "| git-sha | — | `c0ffee` |" in text and f"| job-id | `{job_id}` | `champ-job` |" in text
    assert f"`{iris_setup['job_dir']}/metrics.json`" in text
    assert f"`{iris_setup['champion']}/metrics.json`" in text
    assert f"`{iris_setup['job_dir']}/logs/` (runs: " in text and "ci-fixture" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["comparison.png", "confusion_matrix.png", "training_curves.png"]
    assert all(min(png_size(out / name)) > 100 for name in pngs)
    page = (out / "index.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (out / n).read_bytes() for n in pngs
    )
    assert re.findall(r'src="(?!data:)', page) == [] and "<table>" in page
    # The summary: the gate table and the curve as a Mermaid chart GitHub renders.
    summary_text = summary.read_text()
    assert "### Evaluation gate: yes" in summary_text and "| recall.versicolor |" in summary_text
    chart = re.search(r"```mermaid\nxychart-beta\n(.*?)```", summary_text, re.S).group(1)
    assert 'title "loss (ci-fixture)"' in chart
    assert 'x-axis "step" [0, 50, 100, 150]' in chart and "line [1.2, 0.7, 0.41, 0.3]" in chart
    assert chart in text  # report.md (the PR comment) carries it too

    assert page.index("<h3>Plots</h3>") < page.index("<figure>") < page.index("<h3>Lineage</h3>")


def test_a_gate_that_says_no_is_reported_not_failed(
    iris_setup, emulator, tmp_path, monkeypatch, capsys
):
    cfg = tmp_path / "gate.toml"
    cfg.write_text(GATE)
    argv = ["--job", iris_setup["job"]["name"], "--out", str(tmp_path / "R")]
    argv += ["--gate-config", str(cfg), "--threshold", "recall.versicolor.lower_bound=1.01"]
    argv += ["--decision-out", str(tmp_path / "decision.json")]
    env = settings_env(emulator, "report-iris")
    code, _, err = run_report(monkeypatch, capsys, env, *argv)
    assert code == 0, err
    text = (tmp_path / "R" / "report.md").read_text()
    assert "gate says **no** (3 of 4 checks passed)" in text and "❌ >= 1.01" in text
    decision = json.loads((tmp_path / "decision.json").read_text())
    assert decision["decision"] == "no" and decision["champion"]["version_id"] == "1"


def tiny_saved_model(path: Path) -> None:
    """A SavedModel whose serving_default scores one float feature (stands in for a trainer)."""
    import tensorflow as tf

    class Scorer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="amount")])
        def serve(self, amount):
            return {"score": tf.sigmoid(amount)}

    scorer = Scorer()
    tf.saved_model.save(scorer, str(path), signatures={"serving_default": scorer.serve})


@pytest.fixture(scope="module")
def other_model(emulator, vertex, poll, gcs, tmp_path_factory):
    """Model "report-auc": versions 1 (champion) and 2 with auc/log_loss only, version 3 with
    a confusion matrix that cannot be drawn. No event files anywhere."""
    tmp = tmp_path_factory.mktemp("other")
    tiny_saved_model(tmp / "model")
    metrics = [
        {"auc": 0.81, "log_loss": 0.45, "num_eval_examples": 200},
        {"auc": 0.84, "log_loss": 0.41, "num_eval_examples": 200},
        {"auc": 0.85, "log_loss": 0.4, "confusion_matrix": [[1, 2], [3]], "classes": ["a", "b"]},
    ]
    for i, m in enumerate(metrics, 1):
        job = tmp / f"job{i}"
        job.mkdir()
        (job / "metrics.json").write_text(json.dumps(m))
        upload_dir(gcs, job, f"gs://{BUCKET}/report-auc/job{i}")
        upload_dir(gcs, tmp / "model", f"gs://{BUCKET}/report-auc/job{i}/model")
        labels = {"job-id": f"auc-{i}", "git-sha": f"sha{i}", "data-hash": "fraud-v3"}
        upload_version(vertex, poll, "report-auc", f"gs://{BUCKET}/report-auc/job{i}/model", labels)
    return settings_env(emulator, "report-auc")


def test_other_metric_names_report(other_model, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "gate.toml"
    cfg.write_text(OTHER_GATE)
    out = tmp_path / "R"
    argv = ["--version", "2", "--out", str(out), "--gate-config", str(cfg)]
    code, _, err = run_report(monkeypatch, capsys, other_model, *argv)
    assert code == 0, err
    text = (out / "report.md").read_text()
    assert "**version 2** against **version 1** (champion): gate says **yes** (3 of 3" in text
    assert "| auc | 0.84 | 0.81 | +0.03 | ✅ >= 0.7, ✅ change >= -0.02 |" in text
    assert "| log_loss | 0.41 | 0.45 | -0.04 | ✅ <= 0.6 |" in text
    assert "No training curves: no TensorBoard event files under" in text
    assert "No confusion matrix: `metrics.json` has no `confusion_matrix`." in text
    assert "accuracy" not in text and "```mermaid" not in text
    assert sorted(p.name for p in out.glob("*.png")) == ["comparison.png"]
    assert (out / "index.html").read_text().count("data:image/png;base64,") == 1
    assert "| data-hash | `fraud-v3` | `fraud-v3` |" in text


def test_a_plot_that_cannot_be_drawn_is_a_note(other_model, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "gate.toml"
    cfg.write_text(OTHER_GATE)
    argv = ["--version", "3", "--out", str(tmp_path / "R"), "--gate-config", str(cfg)]
    code, _, err = run_report(monkeypatch, capsys, other_model, *argv)
    assert code == 0, err
    text = (tmp_path / "R" / "report.md").read_text()
    assert (
        "- Could not draw the confusion matrix: ValueError: confusion_matrix is not square" in text
    )
    assert not (tmp_path / "R" / "confusion_matrix.png").exists()


def test_versions_shows_the_metrics_of_any_trainer(other_model, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "gate-auc.toml"
    cfg.write_text(OTHER_GATE)
    monkeypatch.chdir(tmp_path)  # no gate.toml here: without --gate-config, every number
    for key, value in other_model.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["versions", "--json", "--gate-config", str(cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["metrics"] for r in rows] == [
        {"auc": 0.81, "log_loss": 0.45},
        {"auc": 0.84, "log_loss": 0.41},
        {"auc": 0.85, "log_loss": 0.4},
    ]
    assert cli.main(["versions"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert (
        table[0] == "| Version | Aliases | Traffic | auc | log_loss | num_eval_examples | Labels |"
    )
    assert table[2].startswith("| 1 | default | 0% | 0.81 | 0.45 | 200 | data-hash=fraud-v3")
    assert table[4].startswith("| 3 | — | 0% | 0.85 | 0.4 | — |")


@pytest.mark.parametrize(
    ("argv", "message", "exit_code"),
    [
        (["--job", "1", "--version", "1"], "give exactly one of --job and --version", 2),
        (["--version", "1", "--out", "{file}"], "exists and is not a directory", 2),
        (["--version", "x9"], "--version: bad value 'x9'", 2),
        # Well formed, but no such version: not found (1), as for a job id.
        (["--version", "9"], "version '9' of model 'report-auc' not found (versions: 1, 2, 3)", 1),
        (["--version", "1", "--threshold", "auc.min=1"], "bad --threshold 'auc.min=1'", 2),
    ],
)
def test_bad_input_is_one_line(
    other_model, tmp_path, monkeypatch, capsys, argv, message, exit_code
):
    (tmp_path / "file").write_text("not a directory")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    cfg = tmp_path / "gate.toml"
    cfg.write_text(OTHER_GATE)
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "R")]
    code, _, err = run_report(monkeypatch, capsys, other_model, *argv, "--gate-config", str(cfg))
    assert code == exit_code and message in err, err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert not (tmp_path / "R").exists()


def test_mermaid_chart_is_short_and_skips_runs_of_one_point():
    from ci.report_text import MAX_POINTS, mermaid

    curves = {
        "eval": {"loss": [(999, 0.2)]},  # one point: no line to draw
        "train": {"loss": [(s, 1 / (s + 1)) for s in range(1000)], 'a"b': [(0, 1.0)]},
    }
    chart = mermaid(curves)
    assert chart.count("```mermaid") == 1 and 'title "loss (train)"' in chart
    steps = re.search(r'x-axis "step" \[(.*)\]', chart).group(1).split(", ")
    assert len(steps) == MAX_POINTS and steps[0] == "0" and steps[-1] == "999"
    assert mermaid({"train": {'a"b': [(0, 1.0), (1, 0.5)]}}).count('"a\'b (train)"') == 1
    assert mermaid({}) == "" and mermaid({"eval": {"loss": [(1, 0.2)]}}) == ""
