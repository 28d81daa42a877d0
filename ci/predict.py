"""``python -m ci predict``: send JSON-lines instances to the model's endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from ci import flags, outputs
from ci.cloud import Cloud, api, connect
from ci.errors import BadInstance, CiError
from ci.inputs import input_file
from ci.settings import resolve
from ci.vertex import find_endpoint


def read_instances(path: Path) -> list:
    """Instances from a JSON-lines file; a bad file is a one-line BadData error."""
    from ci.serving import read_instances as read  # no TensorFlow import at module level

    return read(path)


def predict(cloud: Cloud, endpoint_name: str, instances: list) -> dict:
    """The endpoint's answer: ``predictions``, ``deployedModelId``, ``modelVersionId``..."""
    endpoints = cloud.vertex.projects().locations().endpoints()
    request = endpoints.predict(endpoint=endpoint_name, body={"instances": instances})
    response = api(request, f"predict on {endpoint_name}", on_400=BadInstance)
    if len(response.get("predictions", [])) != len(instances):
        raise CiError(
            f"predict on {endpoint_name} returned {len(response.get('predictions', []))} "
            f"predictions for {len(instances)} instances"
        )
    return response


def format_predictions(response: dict) -> str:
    """One line per prediction (JSON: a text model's answer may span lines), then which
    version answered."""
    lines = [outputs.compact_json(p) for p in response["predictions"]]
    version = response.get("modelVersionId")
    if version:
        lines.append(f"(model version {version}, deployed model {response.get('deployedModelId')})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = flags.parser("predict", __doc__)
    parser.add_argument(
        "--instances", type=input_file, help="JSON-lines file (default: setting instances_file)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw response as JSON")
    args = parser.parse_args(argv)
    settings = resolve(args)
    instances = read_instances(Path(args.instances or settings.data_path(settings.instances_file)))
    with connect(settings) as cloud:
        endpoint = find_endpoint(cloud)
        if endpoint is None:
            raise CiError(f"no endpoint named {settings.endpoint_display_name!r}; promote first")
        response = predict(cloud, endpoint["name"], instances)
    print(json.dumps(response, indent=2) if args.json else format_predictions(response))
    outputs.write_outputs(args.outputs, {"predictions": response["predictions"]})
    rows = "".join(
        f"| {i} | `{outputs.compact_json(p)}` |\n" for i, p in enumerate(response["predictions"])
    )
    outputs.write_summary(
        args.summary,
        f"### Predictions (model version {response.get('modelVersionId', '?')})\n\n"
        f"| Instance | Prediction |\n|---|---|\n{rows}",
    )
    return 0
