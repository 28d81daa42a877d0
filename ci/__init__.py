"""CI/CD tooling that takes a TensorFlow trainer package to a Vertex AI endpoint.

Nothing in this package imports the user's trainer: it works for any package that
keeps the contract described in the README (``python -m <module>``, ``--job-dir`` /
``AIP_MODEL_DIR``, a SavedModel with ``serving_default``, a ``metrics.json``).
"""
