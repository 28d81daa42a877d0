"""A second repository that adopts the reusable workflows: its own tiny trainer and data.

It shares nothing with this repository's trainer: a parcel "express or not" classifier
(logistic regression on two features, not Iris' hidden layers), generated data, its own
``ci.toml`` and ``gate.toml``. It also holds a decoy ``ci`` package, so a workflow that ran
the caller's ``ci`` instead of the tooling at the workflow's own commit fails loudly.
"""

from __future__ import annotations

import json
import random

SLUG = "parcelco/parcel-model"

TRAINER = '''\
"""Parcel express classifier: logistic regression on two features.

python -m parcels.task --job-dir DIR [--train-file F] [--eval-file F] [--train-steps N]
writes DIR/model (or $AIP_MODEL_DIR) with a serving_default signature, and
DIR/metrics.json. DIR and the files may be gs:// URIs (google-cloud-storage).
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

FEATURES = ("weight_kg", "volume_l")  # float features, one column each
LABEL = "express"  # 0/1, the last column


def _blob(uri):
    from google.cloud import storage

    bucket, _, name = uri[len("gs://"):].partition("/")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(project="local", credentials=AnonymousCredentials())
    else:
        client = storage.Client()
    return client.bucket(bucket).blob(name)


def _read(path):
    gcs = path.startswith("gs://")
    text = _blob(path).download_as_text() if gcs else Path(path).read_text()
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    features = {name: [float(r[i]) for r in rows] for i, name in enumerate(FEATURES)}
    return features, [float(r[len(FEATURES)]) for r in rows]


def _publish(local, dest):
    """Copy a file or directory to a local path or gs:// (saved_model.pb last)."""
    local = Path(local)
    files = [local]
    if local.is_dir():
        files = sorted((p for p in local.rglob("*") if p.is_file()),
                       key=lambda p: p.name == "saved_model.pb")
    for path in files:
        rel = path.relative_to(local).as_posix() if local.is_dir() else ""
        target = "/".join(filter(None, [dest.rstrip("/"), rel]))
        if target.startswith("gs://"):
            _blob(target).upload_from_filename(str(path))
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_bytes(path.read_bytes())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m parcels.task")
    parser.add_argument("--job-dir", required=True, help="output root, local or gs://")
    parser.add_argument("--train-file", default="data/train.csv", help="default data/train.csv")
    parser.add_argument("--eval-file", default="data/eval.csv", help="default data/eval.csv")
    parser.add_argument("--train-steps", type=int, default=200, help="default 200")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = {name: keras.Input(shape=(), name=name) for name in FEATURES}
    columns = [keras.layers.Reshape((1,))(inputs[name]) for name in FEATURES]
    stacked = keras.layers.Concatenate()(columns)
    output = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Rescaling(0.1)(stacked))
    model = keras.Model(inputs, output, name="parcels")
    model.compile(
        optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy", metrics=["accuracy"]
    )

    x, y = _read(args.train_file)
    x = {name: tf.constant(values, tf.float32) for name, values in x.items()}
    data = tf.data.Dataset.from_tensor_slices((x, tf.constant(y, tf.float32)))
    data = data.shuffle(512, seed=0).batch(32).repeat()
    model.fit(data, steps_per_epoch=args.train_steps, epochs=1, verbose=0)
    ex, ey = _read(args.eval_file)
    eval_x = {name: tf.constant(values) for name, values in ex.items()}
    loss, accuracy = model.evaluate(eval_x, tf.constant(ey), verbose=0)

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = {name: tf.TensorSpec([None], tf.float32, name=name) for name in FEATURES}

    def serve(features):
        probability = model(features, training=False)[:, 0]
        return {"express": tf.cast(probability > 0.5, tf.int64), "probability": probability}

    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[spec])
    model_dir = os.environ.get("AIP_MODEL_DIR") or args.job_dir.rstrip("/") + "/model"
    metrics = {"accuracy": float(accuracy), "loss": float(loss), "num_eval_examples": len(ey),
               "train_steps": args.train_steps, "tensorflow_version": tf.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(os.path.join(tmp, "model"), verbose=False)
        _publish(os.path.join(tmp, "model"), model_dir)
        Path(tmp, "metrics.json").write_text(json.dumps(metrics))
        _publish(os.path.join(tmp, "metrics.json"), args.job_dir.rstrip("/") + "/metrics.json")
    print(f"accuracy {accuracy:.3f} loss {loss:.3f}")


if __name__ == "__main__":
    main()
'''

SETUP = """\
from setuptools import setup

setup(name="parcels", version="0.1.0", packages=["parcels"],
      install_requires=["google-cloud-storage"])
"""

CI_TOML = """\
model_name = "parcels"
trainer_module = "parcels.task"
data_dir = "data"
train_file = "train.csv"
eval_file = "eval.csv"
instances_file = "instances.json"
"""

GATE_TOML = """\
[metrics.accuracy]
direction = "higher"
lower_bound = 0.8
"""

DECOY = "raise SystemExit(\"the caller's own ci package ran instead of the workflow's tooling\")\n"

CALLER = """\
name: deploy
on:
  push:
    branches: [main]
permissions: {{}}
jobs:
  deploy:
    uses: {tooling}/.github/workflows/train-and-deploy.yml@{sha}
    # GitHub checks these ceilings against every called job, the comment job's included.
    permissions:
      contents: read
      id-token: write
      pull-requests: write
    with:
      platform: local
      train-steps: "150"
      # act has no job.workflow_* context; GitHub fills these in itself.
      tooling-repository: {tooling}
      tooling-ref: {sha}
"""


def _rows(n: int, rng: random.Random) -> list[str]:
    rows = []
    for _ in range(n):
        weight, volume = rng.uniform(0, 10), rng.uniform(0, 10)
        rows.append(f"{weight:.3f},{volume:.3f},{int(weight + volume > 10)}")
    return rows


def files(tooling: str, sha: str) -> dict[str, str]:
    """The repository's files; its workflow calls ``tooling``'s train-and-deploy at ``sha``."""
    rng = random.Random(7)
    header = "weight_kg,volume_l,express"
    instances = [{"weight_kg": 1.0, "volume_l": 2.0}, {"weight_kg": 9.0, "volume_l": 8.5}]
    return {
        "parcels/__init__.py": "",
        "parcels/task.py": TRAINER,
        "setup.py": SETUP,
        "ci.toml": CI_TOML,
        "gate.toml": GATE_TOML,
        "ci/__init__.py": "",
        "ci/__main__.py": DECOY,
        "data/train.csv": "\n".join([header, *_rows(400, rng)]) + "\n",
        "data/eval.csv": "\n".join([header, *_rows(100, rng)]) + "\n",
        "data/instances.json": "".join(json.dumps(i) + "\n" for i in instances),
        ".github/workflows/deploy.yml": CALLER.format(tooling=tooling, sha=sha),
    }


# --- the same repository laid out as adopters often do, with no ci.toml -------------------

HATCH_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "parcels"
version = "0.1.0"
dependencies = ["google-cloud-storage"]

[tool.hatch.build.targets.sdist]
include = ["parcels"]
"""

NOXFILE = """\
import nox


@nox.session(python=False)
def lint(session):
    session.log("parcels lint: nothing to lint")


@nox.session(python=False)
def tests(session):
    session.log("parcels tests: none yet")
"""

# Settings only through the inputs (there is no ci.toml): the same in both workflows.
SETTINGS = {
    "package-dir": "ml",
    "trainer-module": "parcels.task",
    "data-dir": "datasets",
    "train-file": "train.csv",
    "eval-file": "eval.csv",
    "instances-file": "instances.json",
}

LAID_OUT_CALLER = """\
name: deploy
on:
  push:
    branches: [main]
permissions: {{}}
jobs:
  validation:
    uses: {tooling}/.github/workflows/validation.yml@{sha}
    permissions:
      contents: read
    with:
      {settings}
      local-train-args: --train-steps 100
      tooling-repository: {tooling}
      tooling-ref: {sha}
  deploy:
    needs: validation
    uses: {tooling}/.github/workflows/train-and-deploy.yml@{sha}
    permissions:
      contents: read
      id-token: write
      pull-requests: write
    with:
      {settings}
      platform: local
      model-name: parcels
      train-steps: "150"
      gate-config: config/gate.toml
      tooling-repository: {tooling}
      tooling-ref: {sha}
  show:
    needs: deploy
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions: {{}}
    steps:
      - env:
          OUT: ${{{{ toJSON(needs.deploy.outputs) }}}}
        run: echo "outputs $OUT"
"""

# A caller's odd value: spaces, quotes and a command substitution, refused by the plan.
ODD_CALLER = """\
name: odd
on:
  push:
    branches: [main]
permissions: {{}}
jobs:
  deploy:
    uses: {tooling}/.github/workflows/train-and-deploy.yml@{sha}
    permissions:
      contents: read
      id-token: write
      pull-requests: write
    with:
      gate-config: config/gate.toml
      package-dir: ml "$(touch pwned)"
      tooling-repository: {tooling}
      tooling-ref: {sha}
"""


def laid_out_files(tooling: str, sha: str) -> dict[str, str]:
    """The repository as an adopter often lays it out: the hatchling trainer package in
    ``ml/``, the data in ``datasets/``, the gate's thresholds in ``config/``, no ``ci.toml``
    (every setting an input of both workflows), a noxfile; its ``deploy.yml`` calls
    validation, then train-and-deploy, then reads the outputs; ``odd.yml`` passes a bad
    input. The decoy ``ci`` package stays at the top, where the workflows run."""
    base = files(tooling, sha)
    moved = {
        "ml/pyproject.toml": HATCH_PYPROJECT,
        "config/gate.toml": base["gate.toml"],
        "noxfile.py": NOXFILE,
        "ci/__init__.py": base["ci/__init__.py"],
        "ci/__main__.py": base["ci/__main__.py"],
    }
    for rel, text in base.items():
        if rel.startswith("parcels/"):
            moved[f"ml/{rel}"] = text
        elif rel.startswith("data/"):
            moved[f"datasets/{rel[len('data/') :]}"] = text
    settings = "\n      ".join(f"{k}: {v}" for k, v in SETTINGS.items())
    moved[".github/workflows/deploy.yml"] = LAID_OUT_CALLER.format(
        tooling=tooling, sha=sha, settings=settings
    )
    moved[".github/workflows/odd.yml"] = ODD_CALLER.format(tooling=tooling, sha=sha)
    return moved
