"""``python -m ci local-predict``: predict with an export on disk, as the endpoint would answer.

The output is the JSON a Vertex endpoint returns for TF Serving's row format, so a
pull request checks the same request and response shapes as production.
"""

from __future__ import annotations

import json
from pathlib import Path

from ci import flags, outputs
from ci.serving import Predictor, read_instances
from ci.settings import resolve


def predict(model_dir: Path, instances_file: Path) -> dict:
    """``{"predictions": [...]}`` for every instance in ``instances_file``."""
    instances = read_instances(instances_file)
    return {"predictions": Predictor.load(model_dir).predict(instances)}


def main(argv: list[str]) -> int:
    p = flags.parser("local-predict", __doc__)
    p.add_argument("--model-dir", type=Path, required=True, help="SavedModel export directory")
    p.add_argument(
        "--json-instances",
        type=Path,
        help="JSON-lines instances file (default: setting instances_file in data_dir, as predict)",
    )
    args = p.parse_args(argv)
    settings = resolve(args)
    instances = args.json_instances or Path(settings.data_path(settings.instances_file))
    result = predict(args.model_dir, instances)
    print(json.dumps(result))
    outputs.write_outputs(args.outputs, result)
    return 0
