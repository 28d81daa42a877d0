"""``python -m ci local-predict``: predict with an export on disk, as the endpoint would answer.

The output is the JSON a Vertex endpoint returns for TF Serving's row format, so a
pull request checks the same request and response shapes as production.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ci.errors import UsageError
from ci.serving import Predictor, read_instances


def predict(model_dir: Path, instances_file: Path) -> dict:
    """``{"predictions": [...]}`` for every instance in ``instances_file``."""
    instances = read_instances(instances_file)
    return {"predictions": Predictor.load(model_dir).predict(instances)}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def main(argv: list[str]) -> int:
    p = _Parser(prog="python -m ci local-predict", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, required=True, help="SavedModel export directory")
    p.add_argument(
        "--json-instances",
        type=Path,
        default=Path("data/test.json"),
        help="JSON-lines instances file (default: %(default)s)",
    )
    args = p.parse_args(argv)
    print(json.dumps(predict(args.model_dir, args.json_instances)))
    return 0
