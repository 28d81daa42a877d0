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
        ("CUSTOM", tiers.Custom(), "CUSTOM needs --master-type"),
        ("CUSTOM", tiers.Custom("a", worker_count=2), "worker_count needs worker_type"),
        ("CUSTOM", tiers.Custom("a", parameter_server_count=1), "all-reduce"),
        ("CUSTOM", tiers.Custom("a", accelerator_type="NVIDIA_TESLA_T4"), "go together"),
        ("BASIC", tiers.Custom("a"), "only apply to scale tier CUSTOM"),
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


CUSTOM_TOML = """\
scale_tier = "CUSTOM"
master_type = "n1-standard-8"
worker_type = "n1-highcpu-16"
worker_count = 2
accelerator_type = "NVIDIA_TESLA_T4"
accelerator_count = 1
"""


def test_custom_tier_from_ci_toml_env_and_flags(tmp_path, monkeypatch):
    from ci import flags
    from ci.settings import resolve
    from ci.train import pools_for

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci.toml").write_text(CUSTOM_TOML)
    chief, workers = pools_for(resolve(None, {}))
    assert chief == tiers.Pool("n1-standard-8", 1, "NVIDIA_TESLA_T4", 1)
    assert workers == tiers.Pool("n1-highcpu-16", 2, "NVIDIA_TESLA_T4", 1)
    # env beats the file, a flag beats both (resolution as for every setting)
    args = flags.parser("t", None).parse_args(["--worker-count", "4"])
    _, workers = pools_for(resolve(args, {"CI_WORKER_COUNT": "3"}))
    assert workers.replicas == 4
    _, workers = pools_for(resolve(None, {"CI_WORKER_COUNT": "3"}))
    assert workers.replicas == 3
    (tmp_path / "ci.toml").write_text('scale_tier = "BASIC"\nmaster_type = "n1-standard-4"\n')
    with pytest.raises(UsageError, match="only apply to scale tier CUSTOM, not BASIC"):
        pools_for(resolve(None, {}))


def test_custom_tier_from_ci_toml_reaches_the_job(
    vertex, gcs, emulator, trainer_sdist, tmp_path, monkeypatch
):
    """``ci train`` with only ci.toml naming the machines: the submitted job asks for them."""
    from ci import cli
    from ci.emulator import faults
    from tests.merge_path import settings_env

    for key, value in settings_env(emulator, "custom-tier").items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci.toml").write_text(CUSTOM_TOML.replace("worker_count = 2", "worker_count = 1"))
    # The job ends at once without running: its request is what this test is about.
    faults.fail_next_job(emulator.vertex_url, "not run by this test")
    assert cli.main(["train", "--train-steps", "5", "--package", str(trainer_sdist)]) == 1
    jobs = vertex.projects().locations().customJobs()
    listed = jobs.list(parent="projects/test-project/locations/us-central1").execute()
    job = next(j for j in listed["customJobs"] if j["displayName"].startswith("custom-tier-"))
    specs = job["jobSpec"]["workerPoolSpecs"]
    assert [(s["machineSpec"]["machineType"], s["replicaCount"]) for s in specs] == [
        ("n1-standard-8", "1"),
        ("n1-highcpu-16", "1"),
    ]
    assert all(s["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4" for s in specs)


def test_tier_names_are_one_list():
    """TIER_NAMES is what workflow choices and docs compare against (docs/cli.md is generated)."""
    assert tiers.TIER_NAMES == (
        "BASIC",
        "STANDARD_1",
        "PREMIUM_1",
        "BASIC_GPU",
        "BASIC_TPU",
        "CUSTOM",
    )
    table = tiers.markdown_table()
    assert [row.split("`")[1] for row in table.splitlines()[2:]] == list(tiers.TIER_NAMES)
