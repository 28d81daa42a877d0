"""Example trainer package: a Keras 3 Iris classifier, run as ``python -m trainer.task``."""
