"""``python -m ci pipeline``: package → stage → train → gate → promote, the merge path.

With no project configured it runs against the embedded local emulators, started here and
stopped at the end; their state stays in ``state_dir``, so a second run gates against the
first run's version. It ends by printing the endpoint's predictions for the instances file.
Outputs are written as each step finishes, so a rejected gate still reports its decision.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ci import (
    flags,
    gate,
    gate_rules,
    outputs,
    plots,
    predict,
    promote,
    report,
    stage,
    tiers,
    train,
    tune,
    tuning_config,
    vertex,
)
from ci import package as packaging
from ci.cloud import Cloud, connect
from ci.errors import CiError, GateRejected, UsageError
from ci.settings import resolve


@dataclass(frozen=True)
class Plan:
    """What the run will do, checked before anything is built or started."""

    pools: list[tiers.Pool]
    thresholds: dict
    instances_file: Path
    timeout: float | None = None
    job_display_name: str | None = None
    extra_args: tuple[str, ...] = ()
    canary: int | None = None
    gate_config: str = "gate.toml"  # named in errors
    tuning: tuning_config.TuningConfig | None = None  # --tune: the study (docs/tuning.md)


@dataclass(frozen=True)
class Reports:
    """Where the steps' outputs, summaries and the gate's decision go (None: nowhere)."""

    outputs: str | None = None
    summary: str | None = None
    decision_out: str | None = None
    markdown_out: str | None = None
    report_dir: str | None = None  # `ci report` of the gated job goes there

    def step(self, result) -> None:
        """Append a finished step's outputs and summary."""
        outputs.write_outputs(self.outputs, result.outputs())
        outputs.write_summary(self.summary, result.summary())


def run(cloud: Cloud, sdist: Path, plan: Plan, reports: Reports) -> promote.Promotion:
    """Stage, train, gate, promote; each step's outputs are appended as it finishes."""
    settings = cloud.settings
    if not gate_rules.judges_alone(plan.thresholds) and gate.find_champion(cloud) is None:
        # Found now rather than after a training job whose gate would check nothing.
        raise UsageError(
            f"gate config {plan.gate_config!r} has only change thresholds and there is no "
            "champion yet; add a value threshold such as lower_bound"
        )
    if plan.canary is not None:  # refused now, not after training: see promote.check_canary
        model = vertex.find_model(cloud)
        versions = vertex.list_versions(cloud, model["name"]) if model else []
        champion = vertex.with_alias(versions, vertex.DEFAULT)
        promote.check_canary(cloud, plan.canary, champion, vertex.find_endpoint(cloud))
    print(f"built {sdist}")
    outputs.write_outputs(reports.outputs, {"sdist": sdist})
    files = [settings.data_path(f) for f in (settings.train_file, settings.eval_file)]
    staging = stage.stage(cloud, sdist, files)
    reports.step(staging)
    # matplotlib loads while the job trains: not sooner, where it competes with the sdist
    # build, the emulators' start and the job's submission for the cores (0.4 s later job).
    warm_up = (lambda *_: plots.warm_up()) if reports.report_dir else None
    if plan.tuning:
        if warm_up:
            warm_up()
        tuned = tune.tune(
            cloud,
            plan.tuning,
            plan.pools,
            staging.package.uri,
            staging.data,
            plan.timeout,
            plan.extra_args,
        )
        print(tuned.candidate(), flush=True)
        outputs.write_outputs(reports.outputs, tuned.candidate_outputs())
        job_name, job_dir, labels = tuned.best["customJob"], tuned.trial_dir, tuned.labels()
    else:
        result = train.train(
            cloud,
            plan.pools,
            staging.package.uri,
            settings.train_steps,
            plan.timeout,
            plan.extra_args,
            plan.job_display_name,
            data=staging.data,
            on_submitted=warm_up,
        )
        reports.step(result)
        job_name, job_dir, labels = result.job["name"], result.job_dir, None
    decision = gate.gate(cloud, f"{job_dir}/metrics.json", plan.thresholds, plan.gate_config)
    gate.report(decision, reports.decision_out, reports.markdown_out)
    reports.step(decision)
    job_report = (cloud, reports.report_dir, reports.summary, job_name, decision)
    try:
        gate.enforce(decision)  # raises GateRejected (exit 3) on "no"
    except GateRejected:
        report.after_gate(*job_report, plan.thresholds, best_effort=True)  # worth a look too
        raise
    # The report's plots are drawn while the promotion waits on the cloud.
    with report.drawn_ahead(
        cloud, reports.report_dir, job_name, decision, plan.thresholds
    ) as ahead:
        try:
            promotion = promote.promote(cloud, job_name, plan.instances_file, plan.canary, labels)
        except CiError:
            report.after_gate(*job_report, plan.thresholds, best_effort=True, ahead=ahead)
            raise
        reports.step(promotion)
        report.after_gate(*job_report, plan.thresholds, ahead=ahead)  # names the new version
    # The smoke test's answer is the endpoint's answer for the instances file: no second call.
    outputs.write_outputs(reports.outputs, {"predictions": promotion.predictions})
    return promotion


def main(argv: list[str]) -> int:
    ours, extra = flags.split_passthrough(argv)
    parser = flags.parser("pipeline", __doc__)
    # Each step declares its own flags once; train steps and the tier are settings.
    packaging.add_arguments(parser)
    train.add_arguments(parser)
    gate.add_arguments(parser, "--gate-config")
    promote.add_arguments(parser)
    parser.add_argument("--report-dir", metavar="DIR", help="write `ci report` there at the end")
    parser.add_argument(
        "--tune",
        nargs="?",
        const="true",
        default="false",
        choices=("true", "false"),
        help="tune (--tuning-config) instead of train; gate and promote the best trial "
        "(--tune false, the default, trains once)",
    )
    tune.add_arguments(parser)
    args = parser.parse_args(ours)
    settings = resolve(args)
    # Everything that can be checked offline is checked before anything is built or started.
    plan = Plan(
        train.pools_for(settings, args.parameter_server_count),
        gate_rules.thresholds_from(Path(args.gate_config), args.threshold),
        promote.instances_path(settings, args.instances),
        args.timeout,
        args.job_display_name,
        tuple(extra),
        args.canary,
        args.gate_config,
        # --tune: the best trial's export is gated and promoted; the study is checked now.
        tuning_config.load(Path(args.tuning_config)) if args.tune == "true" else None,
    )
    predict.read_instances(plan.instances_file)
    if not settings.train_file or not settings.eval_file:
        raise UsageError("settings 'train_file' and 'eval_file' are required (see ci.toml)")
    stage.check_local([settings.data_path(f) for f in (settings.train_file, settings.eval_file)])
    reports = Reports(
        args.outputs, args.summary, args.decision_out, args.markdown_out, args.report_dir
    )
    if args.report_dir:
        report.check_out(Path(args.report_dir), "--report-dir")

    with ThreadPoolExecutor(max_workers=1) as pool:
        # The build runs in its own process: let it overlap with starting the emulators.
        building = pool.submit(packaging.build_sdist, Path(args.package_dir), Path(args.dist_dir))
        with connect(settings, deploys_its_job=True) as cloud:
            promotion = run(cloud, building.result(), plan, reports)
    print(f"version {promotion.version_id} serves on {promotion.endpoint}; predictions:")
    response = {
        "predictions": promotion.predictions,
        "modelVersionId": promotion.version_id,
        "deployedModelId": promotion.deployed_id,
    }
    print(predict.format_predictions(response), flush=True)
    return 0
