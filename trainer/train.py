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

from trainer import cluster, data, inputs, model, storage, summaries
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
    seed: int = C.SEED
    # Op determinism on; only the determinism benchmark turns it off to measure its cost.
    deterministic: bool = True


class TrainingError(RuntimeError):
    """Training went wrong in a way more steps cannot fix (the loss stopped being finite)."""


def _log(message: str) -> None:
    print(message, flush=True)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Python, NumPy, TensorFlow and Keras seeds, and (by default) deterministic ops."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def fit(
    config: Config, strategy, train_files: list[str], *, names=None, sharded=False, curves=None
) -> keras.Model:
    """Train for ``train_steps`` global steps and return the trained model.

    ``sharded``: the files are this replica's own share, so no replica drops any batch.
    """
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    ds = data.dataset(train_files, global_batch, seed=config.seed, repeat=True, names=names)
    options = tf.data.Options()
    # A shared file list is split by batches instead: every worker reads all, keeps its share.
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.OFF if sharded else policy.DATA
    batches = iter(strategy.experimental_distribute_dataset(ds.with_options(options)))

    with strategy.scope():
        net = model.build_model(config.hidden_units)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        # Its slots made now, not on the first step: otherwise the step is traced twice.
        optimizer.build(net.trainable_variables)

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(per_example)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        correct = tf.reduce_sum(
            tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == y, tf.float32)
        )
        # Summed over replicas, both are means over the global batch: one all-reduce.
        return tf.stack([loss, correct / global_batch])

    @tf.function(autograph=False)  # no Python control flow to convert; saves start-up
    def train_step(iterator):
        values = strategy.run(step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    every = max(1, config.train_steps // 10)
    for i in range(1, config.train_steps + 1):
        loss, accuracy = train_step(batches).numpy()
        if not np.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss} at step {i}; no model was exported "
                f"(try a smaller --learning-rate than {config.learning_rate})"
            )
        if i % every == 0 or i == config.train_steps:
            _log(f"step {i}/{config.train_steps} loss {loss:.4f}")
            if curves is not None:
                curves.train(i, {"loss": float(loss), "accuracy": float(accuracy)})
    return net


def evaluate(net: keras.Model, eval_files: list[str], batch_size: int, names=None) -> dict:
    """Accuracy, loss, per-class precision and recall and the confusion matrix."""
    n = len(C.CLASSES)
    confusion = np.zeros((n, n), dtype=np.int64)
    loss_sum = 0.0
    for x, y in data.dataset(eval_files, batch_size, names=names):
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


def run(config: Config, ready: inputs.Inputs | None = None) -> dict | None:
    """Train, then (on the chief only) evaluate and publish the export, the training curves
    and ``metrics.json``; report the tuning metric when this run is a tuning trial.

    ``ready``: the inputs as :func:`trainer.inputs.prepare` made them (the entry point does
    it before importing TensorFlow); prepared here when not given. Returns the metrics on
    the chief, None on other replicas.
    """
    role = cluster.role()
    if role.idle:
        _log(f"task {role.task_type}:{role.index} has no work under all-reduce training; done")
        return None
    seed_everything(config.seed, config.deterministic)
    strategy = cluster.strategy(role)
    with tempfile.TemporaryDirectory(prefix="trainer-") as work:
        got = ready or inputs.prepare(config.train_file, config.eval_file, role, work)
        train_files, eval_files, eval_local = got.train_files, got.eval_files, got.eval_local
        curves = summaries.Curves(os.path.join(work, "logs")) if role.chief else None
        net = fit(
            config, strategy, got.train_local, names=train_files, sharded=got.sharded, curves=curves
        )
        if curves is None:
            _log(f"task {role.task_type}:{role.index} finished training; the chief exports")
            return None
        # A plain copy of the trained weights, outside the strategy, is what gets served.
        served = model.build_model(config.hidden_units)
        served.set_weights(net.get_weights())
        metrics = evaluate(served, eval_local, config.batch_size, names=eval_files)
        metrics.update(
            train_steps=config.train_steps, seed=config.seed, tensorflow_version=tf.__version__
        )
        export = os.path.join(work, "export")
        model.export_archive(served).write_out(export, verbose=False)
        storage.publish_dir(export, model_dir(config.job_dir))
        curves.evaluation(config.train_steps, metrics)
        curves.publish(summaries.log_dir(config.job_dir))
    # metrics.json last: its presence says the job's outputs are complete.
    storage.publish_text(
        json.dumps(metrics, indent=2) + "\n", storage.join(config.job_dir, "metrics.json")
    )
    summaries.report_tuning_metric(metrics, config.train_steps)
    _log(
        f"accuracy {metrics['accuracy']:.4f} loss {metrics['loss']:.4f} "
        f"on {metrics['num_eval_examples']} examples"
    )
    return metrics
