"""The serving runtime's worker: ``python -m ci.emulator.runtime_worker EXPORT_DIR``.

Runs in the cached environment of a serving image's TensorFlow (see runtime.py). Loads
the export, prints ``{"tensorflow": VERSION}`` (or ``{"error": ...}``) on one line, then
answers each ``{"instances": [...]}`` line of stdin with one line of predictions.
"""

from __future__ import annotations

import json
import sys


def main(export_dir: str) -> int:
    """Load, then serve lines until stdin closes."""
    try:
        import tensorflow as tf

        from ci.serving import Predictor

        predictor = Predictor.load(export_dir)
    except Exception as exc:  # every load failure is the deploy's error message
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}), flush=True)
        return 1
    print(json.dumps({"tensorflow": tf.__version__}), flush=True)
    from ci.errors import BadInstance

    for line in sys.stdin:
        try:
            answer = {"predictions": predictor.predict(json.loads(line)["instances"])}
        except BadInstance as exc:
            answer = {"bad_instance": str(exc)}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
