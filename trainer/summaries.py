"""Training curves for TensorBoard, and the tuning metric for Vertex hyperparameter tuning.

Curves go where Vertex AI looks for them, ``$AIP_TENSORBOARD_LOG_DIR``, else
``<job-dir>/logs/``, as ``train/`` and ``eval/`` runs (the layout Keras's TensorBoard
callback uses). They are written by TensorFlow's own summary writer into a local folder and
copied to their destination once training succeeded: ``tf.io.gfile`` cannot reach the
storage emulator, and a failed run leaves nothing behind.
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainer import storage

# The tag the tuning metric is reported under; a study's metricId must name it.
TUNING_METRIC = "accuracy"


def log_dir(job_dir: str) -> str:
    """Vertex's ``AIP_TENSORBOARD_LOG_DIR`` when set, else ``<job-dir>/logs``."""
    return os.environ.get("AIP_TENSORBOARD_LOG_DIR") or storage.join(job_dir, "logs")


# What TensorBoard's scalar plugin attaches to a scalar; written by hand because
# ``tf.summary.scalar`` lives in the tensorboard package, which tensorflow-cpu leaves out.
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
)


def _scalar(tag: str, value: float) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR.SerializeToString())


class Curves:
    """Scalar summaries of one run, kept in ``local_dir`` until :meth:`publish`."""

    def __init__(self, local_dir: str):
        self.local_dir = local_dir
        self._train = tf.summary.create_file_writer(os.path.join(local_dir, "train"))
        self._eval = tf.summary.create_file_writer(os.path.join(local_dir, "eval"))

    def train(self, step: int, values: dict[str, float]) -> None:
        """Training scalars (``loss``, ``accuracy`` of the batch) at a global step."""
        with self._train.as_default(step=step):
            for tag, value in values.items():
                _scalar(tag, value)

    def evaluation(self, step: int, metrics: dict) -> None:
        """Every top-level number of the evaluation metrics, at the last step."""
        with self._eval.as_default(step=step):
            for tag, value in metrics.items():
                if isinstance(value, float):
                    _scalar(tag, value)

    def publish(self, dest: str) -> None:
        """Flush and copy the event files to ``dest`` (local or ``gs://``)."""
        for writer in (self._train, self._eval):
            writer.close()
        storage.upload_tree(self.local_dir, dest)


def report_tuning_metric(metrics: dict, step: int) -> bool:
    """Report the tuning metric through ``cloudml-hypertune`` when this run is a trial.

    Vertex sets ``CLOUD_ML_TRIAL_ID`` for trials of a hyperparameter tuning job; the
    library appends a JSON line to ``$CLOUD_ML_HP_METRIC_FILE``, which the service reads.
    Returns whether it reported.
    """
    if not os.environ.get("CLOUD_ML_TRIAL_ID"):
        return False
    import hypertune

    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=TUNING_METRIC,
        metric_value=metrics[TUNING_METRIC],
        global_step=step,
    )
    return True
