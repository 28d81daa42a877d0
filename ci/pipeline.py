"""``python -m ci pipeline``: package → stage → train → gate → promote, the merge path.

With no project configured it runs against the embedded local emulators, started here and
stopped at the end; their state stays in ``state_dir``, so a second run gates against the
first run's version. It ends by printing the endpoint's predictions for the instances file.
Outputs are written as each step finishes, so a rejected gate still reports its decision.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ci import flags, gate, gate_rules, outputs, predict, promote, stage, train
from ci import package as packaging
from ci.cloud import connect
from ci.errors import UsageError
from ci.settings import resolve


def main(argv: list[str]) -> int:
    ours, extra = flags.split_passthrough(argv)
    parser = flags.parser("pipeline", __doc__)
    # Each step declares its own flags once; train steps and the tier are settings.
    packaging.add_arguments(parser)
    train.add_arguments(parser)
    gate.add_arguments(parser, "--gate-config")
    promote.add_arguments(parser)
    args = parser.parse_args(ours)
    settings = resolve(args)
    # Everything that can be checked offline is checked before anything is built or started.
    pools = train.pools_for(settings, args.parameter_server_count)
    thresholds = gate_rules.apply_overrides(
        gate_rules.load_config(Path(args.gate_config)), args.threshold
    )
    instances_file = promote.instances_path(settings, args.instances)
    predict.read_instances(instances_file)
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    stage.check_local([settings.data_path(f) for f in (settings.train_file, settings.eval_file)])

    with ThreadPoolExecutor(max_workers=1) as pool:
        # The build runs in its own process: let it overlap with starting the emulators.
        building = pool.submit(packaging.build_sdist, Path(args.package_dir), Path(args.dist_dir))
        with connect(settings) as cloud:
            _run(cloud, building.result(), args, pools, thresholds, instances_file, extra)
    return 0


def _run(cloud, sdist: Path, args, pools, thresholds, instances_file: Path, extra) -> None:
    """The steps, in order; each one's outputs and summary are appended as it finishes."""
    settings = cloud.settings

    def done(result) -> None:
        outputs.write_outputs(args.outputs, result.outputs())
        outputs.write_summary(args.summary, result.summary())

    print(f"built {sdist}")
    outputs.write_outputs(args.outputs, {"sdist": sdist})
    files = [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]
    staging = stage.stage(cloud, sdist, files)
    done(staging)
    result = train.train(
        cloud,
        pools,
        staging.package.uri,
        settings.train_steps,
        args.timeout,
        tuple(extra),
        args.job_display_name,
        data=staging.data,
    )
    done(result)
    decision = gate.gate(cloud, f"{result.job_dir}/metrics.json", thresholds)
    gate.report(decision, args.decision_out, args.markdown_out)
    done(decision)
    gate.enforce(decision)  # raises GateRejected (exit 3) on "no"
    promotion = promote.promote(cloud, result.job["name"], instances_file, args.canary)
    done(promotion)
    # The smoke test's answer is the endpoint's answer for the instances file: no second call.
    outputs.write_outputs(args.outputs, {"predictions": promotion.predictions})
    print(f"version {promotion.version_id} serves on {promotion.endpoint}; predictions:")
    response = {
        "predictions": promotion.predictions,
        "modelVersionId": promotion.version_id,
        "deployedModelId": promotion.deployed_id,
    }
    print(predict.format_predictions(response), flush=True)
