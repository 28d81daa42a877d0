"""Settings: one declaration, resolved flag > env > ci.toml > default, bad values named."""

from __future__ import annotations

import pytest

from ci import flags
from ci.errors import UsageError
from ci.settings import FIELDS, Settings, env_var, resolve


@pytest.fixture(autouse=True)
def _no_repo_settings(tmp_path, monkeypatch):
    # resolve() reads ./ci.toml when present; the repository's must not leak in.
    monkeypatch.chdir(tmp_path)


def _parse(argv, tmp_path, text=None):
    parser = flags.parser("test", None)
    if text is not None:
        (tmp_path / "s.toml").write_text(text)
        argv = [*argv, "--settings", str(tmp_path / "s.toml")]
    return parser.parse_args(argv)


def test_precedence_flag_env_file_default(tmp_path):
    text = 'region = "europe-west4"\nmodel_name = "from-file"\nbucket = "file-bucket"\n'
    args = _parse(["--model-name", "from-flag"], tmp_path, text)
    env = {"CI_MODEL_NAME": "from-env", "CI_BUCKET": "env-bucket"}
    s = resolve(args, env)
    assert s.model_name == "from-flag"  # flag beats env and file
    assert s.bucket == "env-bucket"  # env beats file
    assert s.region == "europe-west4"  # file beats default
    assert s.trainer_module == "trainer.task"  # default


def test_every_setting_has_flag_env_and_help():
    parser = flags.parser("test", None)
    dests = {a.dest for a in parser._actions}
    for name, f in FIELDS.items():
        assert f"setting_{name}" in dests
        assert env_var(name) == "CI_" + name.upper()
        assert f.metadata["help"]


def test_numbers_are_converted_and_bad_ones_named(tmp_path):
    s = resolve(_parse([], tmp_path, None), {"CI_POLL_INTERVAL": "0.25", "CI_SETTINGS": ""})
    assert s.poll_interval == 0.25
    with pytest.raises(UsageError, match=r"'local_max_replicas' from CI_LOCAL_MAX_REPLICAS.*'x'"):
        resolve(_parse([], tmp_path), {"CI_LOCAL_MAX_REPLICAS": "x"})
    with pytest.raises(UsageError, match="poll_interval"):
        resolve(_parse(["--poll-interval", "-1"], tmp_path), {})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CI_BUCKET": "local-ci/"}, "bad value 'local-ci/' (a bucket name"),
        ({"CI_BUCKET": "gs://local-ci"}, "not a gs:// URI"),
        ({"CI_BUCKET": "UPPER"}, "CI_BUCKET: bad value 'UPPER'"),
        ({"CI_BUCKET": "x..y"}, "bad value 'x..y'"),
        ({"CI_REGION": "us/x"}, "CI_REGION: bad value 'us/x' (a region such as us-central1)"),
        ({"CI_REGION": "moon-1"}, "bad value 'moon-1'"),
        ({"CI_PROJECT": " "}, "CI_PROJECT: bad value ' ' (a project id"),
        ({"CI_MODEL_NAME": "m" * 129}, "(up to 128 printable characters)"),
        ({"CI_MODEL_NAME": "a\nb"}, "bad value 'a\\nb'"),
        ({"CI_MODEL_NAME": "m" * 120}, "the endpoint's display name: bad value"),
        ({"CI_TRAINER_MODULE": "no such"}, "(a Python module such as trainer.task)"),
        ({"CI_SERVING_MACHINE_TYPE": "big"}, "(a machine type such as n1-standard-4)"),
        (
            {"CI_API_ENDPOINT": "localhost:8080"},
            "(an http:// or https:// URL; did you mean 'http://localhost:8080'?)",
        ),
        ({"CI_API_ENDPOINT": "http://a b"}, "bad value 'http://a b' (an http:// or https:// URL)"),
        (
            {"STORAGE_EMULATOR_HOST": "127.0.0.1:9023"},
            "from STORAGE_EMULATOR_HOST: bad value '127.0.0.1:9023' (an http:// or https:// "
            "URL; did you mean 'http://127.0.0.1:9023'?)",
        ),
        ({"CI_TRAIN_STEPS": "99999999999999999999999"}, "(must be 1 to 2147483647)"),
        ({"CI_ACCELERATOR_TYPE": "BOGUS"}, "'accelerator_type': bad value 'BOGUS' (one of "),
        # Vertex AI attaches only some counts of each accelerator to a replica.
        (
            {"CI_ACCELERATOR_TYPE": "NVIDIA_TESLA_T4", "CI_ACCELERATOR_COUNT": "3"},
            "'accelerator_count': bad value 3 for NVIDIA_TESLA_T4 (Vertex AI attaches 1, 2, 4",
        ),
        (
            {"CI_ACCELERATOR_TYPE": "TPU_V2", "CI_ACCELERATOR_COUNT": "1"},
            "bad value 1 for TPU_V2 (Vertex AI attaches 8 per replica)",
        ),
        (
            {"CI_ACCELERATOR_COUNT": "2"},
            "'accelerator_count' is 2 but 'accelerator_type' is unset",
        ),
        (
            {"CI_ACCELERATOR_TYPE": "NVIDIA_L4"},
            "'accelerator_type' is NVIDIA_L4 but 'accelerator_count' is unset",
        ),
        # a near miss of a Vertex AI location is a typo; other shapes are refused by pattern
        ({"CI_REGION": "us-centrall1"}, "'us-centrall1' (not a Vertex AI location; did you mean"),
        ({"CI_REGION": "europe-wst4"}, "did you mean europe-west1 or europe-west2 or "),
        # absurd numbers, named with their limit
        ({"CI_LOCAL_MAX_REPLICAS": "99999"}, "bad value 99999 (at most 32, the emulator's limit"),
        ({"CI_POLL_INTERVAL": "0"}, "CI_POLL_INTERVAL: bad value '0' (must be above 0)"),
        ({"CI_HEARTBEAT": "1e300"}, "CI_HEARTBEAT: bad value '1e300' (at most 86400 seconds)"),
    ],
)
def test_names_follow_google_clouds_rules(tmp_path, env, message):
    with pytest.raises(UsageError) as info:
        resolve(_parse([], tmp_path), env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_good_names_pass(tmp_path):
    good = {
        "CI_PROJECT": "acme-ml-prod",
        "CI_BUCKET": "acme_ml.data-1",
        "CI_REGION": "northamerica-northeast1",
        "CI_MODEL_NAME": "Iris classifier (v2) — é",
        "CI_ACCELERATOR_TYPE": "NVIDIA_TESLA_T4",
        "CI_ACCELERATOR_COUNT": "1",
        "CI_API_ENDPOINT": "http://127.0.0.1:8080",
    }
    s = resolve(_parse([], tmp_path), good)
    assert (s.project, s.bucket, s.region) == (
        "acme-ml-prod",
        "acme_ml.data-1",
        "northamerica-northeast1",
    )


def test_unknown_key_in_file_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="unknown setting 'modle_name'"):
        resolve(_parse([], tmp_path, 'modle_name = "x"\n'), {})
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve(_parse([], tmp_path, "model_name = \n"), {})
    with pytest.raises(UsageError, match="settings file not found"):
        resolve(_parse(["--settings", str(tmp_path / "nope.toml")], tmp_path), {})


def test_embedded_default_and_cloud_requirements():
    local = Settings()
    assert local.embedded and local.project_id == "local-project" and local.bucket_name
    assert not Settings(api_endpoint="http://127.0.0.1:1").embedded
    with pytest.raises(UsageError, match="'bucket' is required"):
        _ = Settings(project="p").bucket_name
    assert Settings(model_name="m").endpoint_display_name == "m-endpoint"
    assert Settings(data_dir="d").data_path("x.csv") == "d/x.csv"
    assert Settings(data_dir="d").data_path("gs://b/x.csv") == "gs://b/x.csv"


def test_a_cloud_endpoint_needs_a_project():
    from ci.cloud import connect

    regional = Settings(api_endpoint="https://europe-west4-aiplatform.googleapis.com")
    with pytest.raises(UsageError, match="'project' is required"), connect(regional):
        pass


def test_docs_cli_is_generated_from_the_code():
    """docs/cli.md's settings, tiers and command flags are what the code declares."""
    from tests import cli_reference

    assert cli_reference.current() == cli_reference.generated(), (
        "docs/cli.md is stale: run `python -m tests.cli_reference`"
    )


def test_run_settings_are_settings(tmp_path):
    """Steps and the tier have one default, here, and come from ci.toml like the rest."""
    assert Settings().train_steps == 1000 and Settings().scale_tier == "BASIC"
    s = resolve(_parse([], tmp_path, 'train_steps = 50\nscale_tier = "STANDARD_1"\n'), {})
    assert (s.train_steps, s.scale_tier) == (50, "STANDARD_1")
    with pytest.raises(UsageError, match=r"'train_steps' from CI_TRAIN_STEPS: bad value '0'"):
        resolve(_parse([], tmp_path), {"CI_TRAIN_STEPS": "0"})


@pytest.mark.parametrize(
    "region", ["us-central1", "us-central2", "europe-west12", "africa-south1", "mars-north1"]
)
def test_real_and_new_regions_are_accepted(tmp_path, region):
    # Listed locations, a new number in a known area, and a new area all pass: only a near
    # miss of a listed name is refused.
    assert resolve(_parse([], tmp_path), {"CI_REGION": region}).region == region


@pytest.mark.parametrize(
    ("kind", "count"), [("NVIDIA_TESLA_T4", "4"), ("NVIDIA_TESLA_A100", "16"), ("TPU_V3", "8")]
)
def test_accelerator_counts_vertex_offers_are_accepted(tmp_path, kind, count):
    env = {"CI_ACCELERATOR_TYPE": kind, "CI_ACCELERATOR_COUNT": count}
    assert resolve(_parse([], tmp_path), env).accelerator_count == int(count)
