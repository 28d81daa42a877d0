"""Training, evaluation and the outputs the CI/CD tooling relies on.

One custom training loop serves one process and many: ``strategy.run`` over a distributed
dataset. Keras 3 ``model.fit`` under ``MultiWorkerMirroredStrategy`` fails on TF ≥ 2.16
("Attempt to convert a value (PerReplica…)"), while this loop works on both.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trainer import cluster, data, model, storage
from trainer import constants as C


@dataclass(frozen=True)
class Config:
    job_dir: str
    train_file: str
    eval_file: str
    train_steps: int
    batch_size: int
    learning_rate: float
    hidden_units: tuple[int, ...]


def _log(message: str) -> None:
    print(message, flush=True)


def fit(config: Config, strategy, train_file: str) -> keras.Model:
    """Train for ``train_steps`` global steps and return the trained model."""
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    ds = data.dataset(train_file, global_batch, shuffle=True, repeat=True)
    options = tf.data.Options()
    # One CSV file cannot be sharded by file: every worker reads it and keeps its share.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = iter(strategy.experimental_distribute_dataset(ds.with_options(options)))

    with strategy.scope():
        net = model.build_model(config.hidden_units)
        optimizer = keras.optimizers.Adam(config.learning_rate)

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(per_example)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(iterator):
        losses = strategy.run(step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    every = max(1, config.train_steps // 10)
    for i in range(1, config.train_steps + 1):
        loss = train_step(batches)
        if i % every == 0 or i == config.train_steps:
            _log(f"step {i}/{config.train_steps} loss {float(loss):.4f}")
    return net


def evaluate(net: keras.Model, eval_file: str, batch_size: int) -> dict:
    """Accuracy, loss, per-class precision and recall and the confusion matrix."""
    n = len(C.CLASSES)
    confusion = np.zeros((n, n), dtype=np.int64)
    loss_sum = 0.0
    for x, y in data.dataset(eval_file, batch_size):
        logits = net(x, training=False)
        loss_sum += float(
            tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        )
        np.add.at(confusion, (y.numpy(), np.argmax(logits, axis=1)), 1)
    total = int(confusion.sum())
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    diagonal = np.diag(confusion)
    ratio = lambda a, b: float(a / b) if b else 0.0  # noqa: E731
    return {
        "accuracy": ratio(diagonal.sum(), total),
        "loss": ratio(loss_sum, total),
        "precision": {c: ratio(diagonal[i], predicted[i]) for i, c in enumerate(C.CLASSES)},
        "recall": {c: ratio(diagonal[i], actual[i]) for i, c in enumerate(C.CLASSES)},
        "confusion_matrix": confusion.tolist(),
        "classes": list(C.CLASSES),
        "num_eval_examples": total,
    }


def model_dir(job_dir: str) -> str:
    """Where the export goes: Vertex's ``AIP_MODEL_DIR`` when set, else ``<job-dir>/model``."""
    return os.environ.get("AIP_MODEL_DIR") or storage.join(job_dir, "model")


def run(config: Config) -> dict | None:
    """Train, then (on the chief only) evaluate and publish the export and ``metrics.json``.

    Returns the metrics on the chief, None on other replicas.
    """
    role = cluster.role()
    if role.idle:
        _log(f"task {role.task_type}:{role.index} has no work under all-reduce training; done")
        return None
    strategy = cluster.strategy(role)
    with tempfile.TemporaryDirectory(prefix="trainer-") as work:
        train_file = storage.localize(config.train_file, work)
        eval_file = storage.localize(config.eval_file, work)
        data.check_file(eval_file)  # fail before training, not after it
        net = fit(config, strategy, train_file)
        if not role.chief:
            _log(f"task {role.task_type}:{role.index} finished training; the chief exports")
            return None
        # A plain copy of the trained weights, outside the strategy, is what gets served.
        served = model.build_model(config.hidden_units)
        served.set_weights(net.get_weights())
        metrics = evaluate(served, eval_file, config.batch_size)
        metrics.update(train_steps=config.train_steps, tensorflow_version=tf.__version__)
        export = os.path.join(work, "export")
        model.export_archive(served).write_out(export, verbose=False)
        storage.publish_dir(export, model_dir(config.job_dir))
    # metrics.json last: its presence says the job's outputs are complete.
    storage.publish_text(
        json.dumps(metrics, indent=2) + "\n", storage.join(config.job_dir, "metrics.json")
    )
    _log(
        f"accuracy {metrics['accuracy']:.4f} loss {metrics['loss']:.4f} "
        f"on {metrics['num_eval_examples']} examples"
    )
    return metrics
