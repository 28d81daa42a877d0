"""``python -m ci pipeline``: package → stage → train → gate → promote, the merge path.

With no project configured it runs against the embedded local emulators, started here and
stopped at the end; their state stays in ``state_dir``, so a second run gates against the
first run's version. It ends by printing the endpoint's predictions for the instances file.
Outputs are written as each step finishes, so a rejected gate still reports its decision.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ci import flags, gate, gate_rules, outputs, predict, stage, train, tune, tuning_config
from ci.cloud import connect
from ci.errors import UsageError
from ci.package import build_sdist
from ci.promote import promote
from ci.settings import resolve


def main(argv: list[str]) -> int:
    ours, extra = flags.split_passthrough(argv)
    parser = flags.parser("pipeline", __doc__)
    train.add_tier_arguments(parser)
    parser.add_argument(
        "--train-steps", type=flags.positive_int, default=1000, help="training steps (default 1000)"
    )
    parser.add_argument("--timeout", type=flags.positive_float, help="training timeout, seconds")
    parser.add_argument("--package-dir", default=".", help="trainer package (default .)")
    parser.add_argument("--dist-dir", default="dist", help="where the sdist goes (default dist)")
    gate.add_arguments(parser, "--gate-config")
    parser.add_argument("--canary", type=flags.percent, help="promote with N%% of traffic")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="tune (--tuning-config) instead of train; gate and promote the best trial",
    )
    tune.add_arguments(parser)
    args = parser.parse_args(ours)
    settings = resolve(args)
    # Everything that can be checked offline is checked before anything is built or started.
    pools = train.pools_from(args)
    thresholds = gate_rules.apply_overrides(
        gate_rules.load_config(Path(args.gate_config)), args.threshold
    )
    instances_file = Path(settings.data_path(settings.instances_file))
    predict.read_instances(instances_file)
    # --tune: the best trial's export is gated and promoted (docs/tuning.md).
    args.tuning = tuning_config.load(Path(args.tuning_config)) if args.tune else None
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    stage.check_local([settings.data_path(f) for f in (settings.train_file, settings.eval_file)])

    with ThreadPoolExecutor(max_workers=1) as pool:
        # The build runs in its own process: let it overlap with starting the emulators.
        building = pool.submit(build_sdist, Path(args.package_dir), Path(args.dist_dir))
        with connect(settings) as cloud:
            _run(cloud, building.result(), args, pools, thresholds, instances_file, extra)
    return 0


def _run(cloud, sdist: Path, args, pools, thresholds, instances_file: Path, extra) -> None:
    """The steps, in order; outputs are appended as each finishes."""
    settings = cloud.settings
    print(f"built {sdist}")
    outputs.write_outputs(args.outputs, {"sdist": sdist})
    files = [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]
    package, data = stage.stage(cloud, sdist, files)
    staged = {s.name: s.uri for s in data}
    outputs.write_outputs(
        args.outputs,
        {"package_uri": package.uri, "data_hash": stage.data_hash(data), "data_uris": staged},
    )
    if args.tuning:
        tuned = tune.tune(cloud, args.tuning, pools, package.uri, data, args.timeout, tuple(extra))
        outputs.write_outputs(args.outputs, tuned.outputs())
        job_name, job_dir, labels = tuned.best["customJob"], tuned.trial_dir, tuned.labels()
    else:
        result = train.train(
            cloud, pools, package.uri, args.train_steps, args.timeout, tuple(extra), data=data
        )
        outputs.write_outputs(args.outputs, train.result_outputs(result))
        job_name, job_dir, labels = result.job["name"], result.job_dir, None
    decision = gate.gate(cloud, f"{job_dir}/metrics.json", thresholds)
    gate.report(decision, args)  # raises GateRejected (exit 3) on "no"
    promotion = promote(cloud, job_name, instances_file, args.canary, labels)
    outputs.write_outputs(
        args.outputs,
        {
            "model_version": promotion.version_id,
            "model_name": promotion.model,
            "endpoint_name": promotion.endpoint,
        },
    )
    response = predict.predict(cloud, promotion.endpoint, predict.read_instances(instances_file))
    outputs.write_outputs(args.outputs, {"predictions": response["predictions"]})
    outputs.write_summary(
        args.summary, f"### Promoted\n\nVersion **{promotion.version_id}** of `{promotion.model}`."
    )
    print(f"version {promotion.version_id} serves on {promotion.endpoint}; predictions:")
    print(predict.format_predictions(response), flush=True)
