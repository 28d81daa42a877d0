"""Pure builders: the Keras model and its serving signature. No I/O here."""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer import constants as C


def build_model(hidden_units: tuple[int, ...]) -> keras.Model:
    """A small fully connected classifier: ``[b, 4]`` features → ``[b, 3]`` logits."""
    inputs = keras.Input(shape=(len(C.FEATURES),), name="features")
    x = inputs
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    logits = keras.layers.Dense(len(C.CLASSES), name="logits")(x)
    return keras.Model(inputs, logits, name="iris")


def stack_features(features: dict) -> tf.Tensor:
    """Named ``[b]`` features → one ``[b, 4]`` tensor, in the CSV's column order."""
    return tf.stack([tf.cast(features[name], tf.float32) for name in C.FEATURES], axis=1)


def export_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The SavedModel's ``serving_default``: four named float batches in, classes out."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = {name: tf.TensorSpec([None], tf.float32, name=name) for name in C.FEATURES}

    def serve(features):
        probabilities = tf.nn.softmax(model(stack_features(features), training=False))
        return {
            "class_ids": tf.argmax(probabilities, axis=1, output_type=tf.int64),
            "probabilities": probabilities,
        }

    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[spec])
    return archive
