"""Cloud ML Engine scale tiers mapped onto Vertex AI ``workerPoolSpecs`` (pure, no I/O).

ML Engine's tiers named a cluster shape; Vertex AI asks for worker pools: pool 0 the chief
(one replica), pool 1 the workers, pool 2 parameter servers, pool 3 evaluators. The trainer
contract uses all-reduce (``MultiWorkerMirroredStrategy``), which has no parameter-server
role, so the legacy tiers' parameter servers are not requested: they would idle (or, with a
``ps`` task in ``TF_CONFIG``, make the strategy refuse to start). The README has the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci.errors import UsageError


@dataclass(frozen=True)
class Pool:
    """One worker pool: a machine type, replicas and optional accelerators."""

    machine_type: str
    replicas: int
    accelerator: str | None = None
    accelerator_count: int = 0


@dataclass(frozen=True)
class Tier:
    """One tier: what ML Engine gave, and the pools requested on Vertex AI."""

    legacy: str
    chief: Pool
    workers: Pool | None = None
    legacy_parameter_servers: int = 0


TIERS: dict[str, Tier] = {
    "BASIC": Tier("1 master, machine 'standard' (n1-standard-4)", Pool("n1-standard-4", 1)),
    "STANDARD_1": Tier(
        "1 master + 4 workers n1-highcpu-8, 3 parameter servers n1-standard-4",
        Pool("n1-highcpu-8", 1),
        Pool("n1-highcpu-8", 4),
        legacy_parameter_servers=3,
    ),
    "PREMIUM_1": Tier(
        "1 master + 19 workers n1-highcpu-16, 11 parameter servers n1-highmem-8",
        Pool("n1-highcpu-16", 1),
        Pool("n1-highcpu-16", 19),
        legacy_parameter_servers=11,
    ),
    # K80s are no longer offered on Vertex AI; a T4 is the closest single entry-level GPU.
    "BASIC_GPU": Tier(
        "1 master n1-standard-8 with 1 NVIDIA K80",
        Pool("n1-standard-8", 1, "NVIDIA_TESLA_T4", 1),
    ),
    "BASIC_TPU": Tier(
        "1 master n1-standard-4 with a Cloud TPU v2 (8 cores)",
        Pool("cloud-tpu", 1, "TPU_V2", 8),
    ),
}
# Every name ``scale_tier`` accepts: what workflow choices, descriptions and docs list.
TIER_NAMES = (*TIERS, "CUSTOM")
CUSTOM_SETTINGS = (
    "master_type",
    "worker_type",
    "worker_count",
    "accelerator_type",
    "accelerator_count",
)

# Newest prebuilt Vertex AI images per TensorFlow minor version, oldest first.
TRAINING_TF = ("2.11", "2.12", "2.13", "2.14", "2.15", "2.16", "2.17")
SERVING_TF = ("2.11", "2.12", "2.13", "2.14", "2.15")


@dataclass(frozen=True)
class Custom:
    """The CUSTOM tier's machines, as ML Engine's ``TrainingInput`` had them (settings)."""

    master_type: str | None = None
    worker_type: str | None = None
    worker_count: int = 0
    parameter_server_count: int = 0
    accelerator_type: str | None = None
    accelerator_count: int = 0


def pools(tier: str, custom: Custom | None = None) -> list[Pool]:
    """The pools for ``tier`` in Vertex order (chief first)."""
    custom = custom or Custom()
    if tier == "CUSTOM":
        return _custom_pools(custom)
    if tier not in TIERS:
        raise UsageError(f"unknown scale tier {tier!r}; choose one of {', '.join(TIER_NAMES)}")
    if custom != Custom():
        raise UsageError(f"machine settings only apply to scale tier CUSTOM, not {tier}")
    spec = TIERS[tier]
    return [spec.chief] + ([spec.workers] if spec.workers else [])


def _custom_pools(c: Custom) -> list[Pool]:
    if not c.master_type:
        raise UsageError("scale tier CUSTOM needs --master-type (setting master_type)")
    if c.worker_count < 0 or c.parameter_server_count < 0 or c.accelerator_count < 0:
        raise UsageError("counts must not be negative")
    if c.worker_count and not c.worker_type:
        raise UsageError("worker_count needs worker_type (--worker-type)")
    if bool(c.accelerator_type) != bool(c.accelerator_count):
        raise UsageError("accelerator_type and accelerator_count go together")
    if c.parameter_server_count:
        raise UsageError(
            "--parameter-server-count: the trainer contract uses all-reduce "
            "(MultiWorkerMirroredStrategy), which has no parameter servers; add workers instead"
        )
    chief = Pool(c.master_type, 1, c.accelerator_type, c.accelerator_count)
    if not c.worker_count:
        return [chief]
    return [chief, Pool(c.worker_type, c.worker_count, c.accelerator_type, c.accelerator_count)]


def _describe(pool: Pool | None, role: str) -> str:
    if pool is None:
        return ""
    extra = f" + {pool.accelerator_count} × `{pool.accelerator}`" if pool.accelerator else ""
    return f"{role} `{pool.machine_type}` × {pool.replicas}{extra}"


def markdown_table() -> str:
    """The tiers as a Markdown table (docs/cli.md is generated from it)."""
    lines = [
        "| Tier | Legacy ML Engine meaning | Vertex AI pools requested |",
        "|---|---|---|",
    ]
    for name, tier in TIERS.items():
        asked = ", ".join(
            filter(None, [_describe(tier.chief, "chief"), _describe(tier.workers, "workers")])
        )
        lines.append(f"| `{name}` | {tier.legacy} | {asked} |")
    lines.append(
        "| `CUSTOM` | masterType, workerType, workerCount, parameterServerCount | chief "
        "`master_type` × 1; `worker_type` × `worker_count`; `accelerator_type` × "
        "`accelerator_count` on every replica; parameter servers refused (all-reduce) |"
    )
    return "\n".join(lines) + "\n"


def worker_pool_specs(pool_list: list[Pool], python_package: dict) -> list[dict]:
    """Vertex ``workerPoolSpecs``: the same ``pythonPackageSpec`` in every pool."""
    specs = []
    for pool in pool_list:
        machine = {"machineType": pool.machine_type}
        if pool.accelerator:
            machine["acceleratorType"] = pool.accelerator
            machine["acceleratorCount"] = pool.accelerator_count
        specs.append(
            {
                "machineSpec": machine,
                "replicaCount": str(pool.replicas),
                "pythonPackageSpec": python_package,
            }
        )
    return specs


def _minor(version: str) -> tuple[int, int]:
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise UsageError(f"bad TensorFlow version {version!r}; expected e.g. 2.15") from None


def _pick(version: str, available: tuple[str, ...]) -> str:
    # Newest prebuilt image not newer than the trainer's TensorFlow; older than every
    # image is an error, since nothing prebuilt can run it.
    wanted = _minor(version)
    fitting = [v for v in available if _minor(v) <= wanted]
    if not fitting:
        raise UsageError(f"no prebuilt Vertex AI image for TensorFlow {version}")
    return fitting[-1]


def registry(region: str) -> str:
    """The Artifact Registry host nearest to ``region``."""
    if region.startswith(("europe", "me-", "africa")):
        return "europe-docker.pkg.dev"
    if region.startswith(("asia", "australia")):
        return "asia-docker.pkg.dev"
    return "us-docker.pkg.dev"


def executor_image(tf_version: str, region: str, gpu: bool = False) -> str:
    """The prebuilt training image for ``tf_version`` (TPU pools also use the CPU image)."""
    kind = "tf-gpu" if gpu else "tf-cpu"
    tag = _pick(tf_version, TRAINING_TF).replace(".", "-")
    return f"{registry(region)}/vertex-ai/training/{kind}.{tag}.py310:latest"


def serving_image(tf_version: str, region: str) -> str:
    """The prebuilt TensorFlow prediction image for ``tf_version`` (CPU)."""
    tag = _pick(tf_version, SERVING_TF).replace(".", "-")
    return f"{registry(region)}/vertex-ai/prediction/tf2-cpu.{tag}:latest"
