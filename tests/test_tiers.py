"""Scale tiers → workerPoolSpecs, and executor images from the TensorFlow version."""

from __future__ import annotations

import pytest

from ci import tiers
from ci.errors import UsageError


@pytest.mark.parametrize(
    ("tier", "shape"),
    [
        ("BASIC", [("n1-standard-4", 1, None)]),
        ("STANDARD_1", [("n1-highcpu-8", 1, None), ("n1-highcpu-8", 4, None)]),
        ("PREMIUM_1", [("n1-highcpu-16", 1, None), ("n1-highcpu-16", 19, None)]),
        ("BASIC_GPU", [("n1-standard-8", 1, "NVIDIA_TESLA_T4")]),
        ("BASIC_TPU", [("cloud-tpu", 1, "TPU_V2")]),
    ],
)
def test_tiers_map_to_pools(tier, shape):
    pools = tiers.pools(tier)
    assert [(p.machine_type, p.replicas, p.accelerator) for p in pools] == shape


def test_worker_pool_specs_carry_the_package_in_every_pool():
    package = {"pythonModule": "m", "packageUris": ["gs://b/p.tar.gz"], "args": ["--x"]}
    specs = tiers.worker_pool_specs(tiers.pools("STANDARD_1"), package)
    assert [s["replicaCount"] for s in specs] == ["1", "4"]
    assert all(s["pythonPackageSpec"] == package for s in specs)
    gpu = tiers.worker_pool_specs(tiers.pools("BASIC_GPU"), package)[0]["machineSpec"]
    assert gpu == {
        "machineType": "n1-standard-8",
        "acceleratorType": "NVIDIA_TESLA_T4",
        "acceleratorCount": 1,
    }


def test_custom_tier():
    custom = tiers.Custom("n1-standard-8", "n1-standard-4", 2, 0, "NVIDIA_TESLA_T4", 1)
    chief, workers = tiers.pools("CUSTOM", custom)
    assert (chief.machine_type, chief.replicas, chief.accelerator_count) == ("n1-standard-8", 1, 1)
    assert (workers.machine_type, workers.replicas) == ("n1-standard-4", 2)
    assert tiers.pools("CUSTOM", tiers.Custom("e2-standard-4")) == [tiers.Pool("e2-standard-4", 1)]


@pytest.mark.parametrize(
    ("tier", "custom", "message"),
    [
        ("BASIC_5", None, "unknown scale tier 'BASIC_5'"),
        ("CUSTOM", tiers.Custom(), "needs --master-type"),
        ("CUSTOM", tiers.Custom("a", worker_count=2), "--worker-count needs --worker-type"),
        ("CUSTOM", tiers.Custom("a", parameter_server_count=1), "all-reduce"),
        ("CUSTOM", tiers.Custom("a", accelerator_type="NVIDIA_TESLA_T4"), "go together"),
        ("BASIC", tiers.Custom("a"), "only apply to --scale-tier CUSTOM"),
    ],
)
def test_bad_tier_flags(tier, custom, message):
    with pytest.raises(UsageError, match=message):
        tiers.pools(tier, custom)


def test_images_follow_tensorflow_version_and_region():
    assert (
        tiers.executor_image("2.14.1", "us-central1")
        == "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-14.py310:latest"
    )
    # Newer than every prebuilt image: the newest one that exists.
    newest = tiers.TRAINING_TF[-1].replace(".", "-")
    assert tiers.executor_image("2.21.0", "europe-west4", gpu=True) == (
        f"europe-docker.pkg.dev/vertex-ai/training/tf-gpu.{newest}.py310:latest"
    )
    assert tiers.serving_image("2.13.0", "asia-east1").startswith(
        "asia-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-13"
    )
    with pytest.raises(UsageError, match="no prebuilt"):
        tiers.executor_image("1.15", "us-central1")
    with pytest.raises(UsageError, match="bad TensorFlow version"):
        tiers.executor_image("two", "us-central1")
