"""Serving reads the signature: local predict answers like the endpoint, refuses bad instances."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci import local_predict
from ci.emulator.predict import tf_serving
from ci.errors import BadData, BadInstance
from ci.serving import Predictor, read_instances

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"SepalLength": 5.1, "SepalWidth": 3.3, "PetalLength": 1.7, "PetalWidth": 0.5}


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """What a pull request trains (noxfile PR_TRAIN_STEPS, the default seed): the same model
    on every run, so the predictions asserted below never depend on luck."""
    job_dir = tmp_path_factory.mktemp("job")
    subprocess.run(
        [sys.executable, "-m", "trainer.task", "--job-dir", str(job_dir), "--train-steps", "300"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=300,
    )
    return job_dir / "model"


@pytest.fixture(scope="module")
def predictor(export) -> Predictor:
    return Predictor.load(export)


def test_reads_inputs_and_outputs_from_the_signature(predictor):
    assert sorted(predictor.inputs) == sorted(GOOD)
    assert sorted(predictor.outputs) == ["class_ids", "probabilities"]


def run_local_predict(export: Path, instances: str) -> subprocess.CompletedProcess:
    """``python -m ci local-predict`` as a user runs it."""
    argv = ["local-predict", "--model-dir", str(export), "--json-instances", instances]
    return subprocess.run(
        [sys.executable, "-m", "ci", *argv], cwd=ROOT, capture_output=True, text=True
    )


def test_local_predict_cli_prints_endpoint_shape(export):
    result = run_local_predict(export, "data/test.json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert list(body) == ["predictions"]
    assert [p["class_ids"] for p in body["predictions"]] == [0, 1, 2]
    for p in body["predictions"]:
        assert len(p["probabilities"]) == 3 and abs(sum(p["probabilities"]) - 1) < 1e-4


def test_accepts_an_instances_body_file(export, tmp_path):
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": [GOOD, GOOD]}))
    assert len(local_predict.predict(export, body)["predictions"]) == 2


def test_integers_are_accepted_for_float_features(predictor):
    (row,) = predictor.predict([{**GOOD, "SepalLength": 5}])
    assert row["class_ids"] == 0


@pytest.fixture(scope="module")
def echo(tmp_path_factory) -> Predictor:
    """A model of another trainer: one string input, one output that ends in ``_bytes``."""
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="blob")])
        def serve(self, blob):
            return {
                "reversed_bytes": tf.strings.reduce_join(
                    tf.reverse(tf.strings.bytes_split(blob).to_tensor(), axis=[1]), axis=1
                )
            }

    path = tmp_path_factory.mktemp("echo") / "model"
    module = Echo()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Predictor.load(path)


def test_one_output_binary_values_and_the_columnar_format_as_tf_serving_answers(echo, predictor):
    # TF Serving (so Vertex's TensorFlow container): one output is answered bare, not as a
    # one-key object; {"b64": ...} carries binary input, and an output named *_bytes is b64.
    binary = b"\xff\x00ab"
    got = echo.predict([{"b64": base64.b64encode(binary).decode()}, "xyz"])
    assert got == [{"b64": base64.b64encode(binary[::-1]).decode()}, {"b64": "enl4"}]
    with pytest.raises(BadInstance, match=r"instance 0: field 'blob': b64 is not base64"):
        echo.predict([{"b64": "not base64!"}])
    with pytest.raises(BadInstance, match=r"field 'SepalWidth' must be float, got \"binary"):
        predictor.predict([{**GOOD, "SepalWidth": {"b64": "AA=="}}])

    # rawPredict passes TF Serving's own request formats: rows, or columns in and out.
    rows = [GOOD, {**GOOD, "PetalLength": 6.0, "PetalWidth": 2.3}]
    status, answer = tf_serving(predictor, json.dumps({"instances": rows}).encode())
    assert status == 200 and answer == {"predictions": predictor.predict(rows)}
    columns = {name: [row[name] for row in rows] for name in GOOD}
    status, answer = tf_serving(predictor, json.dumps({"inputs": columns}).encode())
    expected = predictor.predict(rows)
    assert status == 200
    assert answer == {
        "outputs": {k: [p[k] for p in expected] for k in ("class_ids", "probabilities")}
    }
    status, answer = tf_serving(echo, b'{"inputs": ["ab"], "signature_name": "serving_default"}')
    assert (status, answer) == (200, {"outputs": [{"b64": "YmE="}]})
    for body, error in [
        (b"{not json", "JSON Parse error"),
        (b"[1]", "must be a JSON object"),
        (b'{"rows": []}', "Missing 'inputs' or 'instances' key"),
        (b'{"inputs": [], "instances": []}', "Not expecting both"),
        (b'{"instances": ["a"], "signature_name": "x"}', 'Serving signature name: "x" not found'),
        (json.dumps({"inputs": {**columns, "SepalLength": [1.0]}}).encode(), "same length"),
        (json.dumps({"instances": [{**GOOD, "Colour": 1}]}).encode(), "unknown field 'Colour'"),
    ]:
        status, answer = tf_serving(echo if b"signature" in body else predictor, body)
        assert status == 400 and list(answer) == ["error"] and error in answer["error"], body


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        (
            [GOOD, {k: v for k, v in GOOD.items() if k != "PetalWidth"}],
            "instance 1: missing field 'PetalWidth'",
        ),
        (
            [{**GOOD, "SepalWidth": "wide"}],
            "instance 0: field 'SepalWidth' must be float, got \"wide\"",
        ),
        ([{**GOOD, "SepalWidth": True}], "instance 0: field 'SepalWidth' must be float, got true"),
        (
            [{**GOOD, "SepalWidth": [1.0]}],
            "instance 0: field 'SepalWidth' must be float, got [1.0]",
        ),
        ([GOOD, GOOD, {**GOOD, "Colour": 1}], "instance 2: unknown field 'Colour'"),
        ([[5.1, 3.3, 1.7, 0.5]], "instance 0: expected an object with fields"),
        ([], "'instances' must be a non-empty list"),
    ],
)
def test_bad_instances_name_instance_and_field(predictor, instances, message):
    with pytest.raises(BadInstance) as info:
        predictor.predict(instances)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bad_instances_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(BadData, match=r"bad\.json:2: not JSON"):
        read_instances(bad)
    with pytest.raises(BadData, match=r"(?i)no such file"):
        read_instances(tmp_path / "missing.json")


def test_cli_error_is_one_line(export, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD, "PetalLength": "x"}) + "\n")
    result = run_local_predict(export, str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: instance 0: field 'PetalLength' must be float, got \"x\""
    )


def test_serving_keeps_keras_and_pyplot_out_and_what_needs_them_still_works(export, tmp_path):
    # Serving's TensorFlow start skips Keras (ci.serving.import_tensorflow) and Keras's
    # import of pyplot (ci.serving.skip_pyplot): the export loads and predicts all the same,
    # `ci report`'s plots draw in such a process, and Keras imports later if asked for.
    png = tmp_path / "confusion.png"
    code = "\n".join(
        [
            "import json, sys",
            "from pathlib import Path",
            "from ci import plots, serving",
            f"predictor = serving.Predictor.load({str(export)!r})",
            f"predictions = predictor.predict([{GOOD!r}])",
            "loaded = sorted(m for m in ('keras', 'matplotlib.pyplot') if sys.modules.get(m))",
            f"plots.confusion_matrix([[2, 0], [1, 3]], ['a', 'b'], Path({str(png)!r}))",
            "try:",
            "    import matplotlib.pyplot",
            "    pyplot = True",
            "except ImportError:",
            "    pyplot = False",
            "import keras",
            "layer = type(keras.layers.Dense(1)).__name__",
            "print(json.dumps([loaded, pyplot, layer, predictions[0]['class_ids']]))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], False, "Dense", 0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
