"""The serving runtime's worker: ``python -m ci.emulator.runtime_worker``.

Runs in the cached environment of a serving image's TensorFlow (see runtime.py) and
answers one JSON line per request line on stdin: ``{"load": DIR}`` loads an export
(``{"tensorflow": VERSION}`` or ``{"error": ...}``), ``{"predict": DIR, "instances": [...]}``
predicts with it (``{"predictions": [...]}``, ``{"bad_instance": ...}`` or ``{"error": ...}``).
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    """Serve request lines until stdin closes (the emulator exited)."""
    from ci.errors import BadInstance
    from ci.serving import Predictor, import_tensorflow

    tf = import_tensorflow()

    loaded = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "load" in request:
                loaded[request["load"]] = Predictor.load(request["load"])
                answer = {"tensorflow": tf.__version__}
            else:
                predictor = loaded[request["predict"]]
                answer = {"predictions": predictor.predict(request["instances"])}
        except BadInstance as exc:
            answer = {"bad_instance": str(exc)}
        except Exception as exc:  # the deploy's or the request's error message
            answer = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
