"""Settings shared by every command, declared once.

Each field of :class:`Settings` is one setting: its flag is ``--<name-with-dashes>``, its
environment variable ``CI_<NAME>``, its key in ``ci.toml`` ``<name>``. Resolution order:
flag > environment > ``ci.toml`` > default. With no ``project`` and no ``api_endpoint`` the
commands start the embedded local emulators (state under ``state_dir``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import re
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ci import limits
from ci.clients import NUM_RETRIES
from ci.errors import UsageError
from ci.inputs import did_you_mean, number, optional_file, read_text, whole

SETTINGS_FILE = "ci.toml"
# The embedded default's project id: a fixed name, so state in ``state_dir`` is found again.
LOCAL_PROJECT = "local-project"
LOCAL_BUCKET = "local-ci"
# The variable google-cloud-storage reads for an emulator: the storage_endpoint default.
STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"


@dataclass(frozen=True)
class Form:
    """What a text setting must look like: a pattern, and how to say it."""

    pattern: str
    says: str
    # The likely meaning of a bad value, tried in the message ("did you mean ...?"), or None.
    guess: Callable[[str], str | None] | None = None

    def check(self, value: str, what: str) -> None:
        if not re.fullmatch(self.pattern, value):
            meant = self.guess(value) if self.guess else None
            hint = (
                f"; did you mean {meant!r}?" if meant and re.fullmatch(self.pattern, meant) else ""
            )
            raise UsageError(f"{what}: bad value {value!r} ({self.says}{hint})")


# Google Cloud's rules for the names the settings hold.
PROJECT = Form(
    r"([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]",
    "a project id: 6-30 lowercase letters, digits or hyphens, a letter first",
)
REGION = Form(r"[a-z]+(-[a-z]+)+[0-9]+", "a region such as us-central1")
# Cloud Storage's bucket naming rules: 3-63 characters, or up to 222 with dots and each
# dot-separated part at most 63; a letter or digit at each end; not an IP address; no
# "goog" prefix and no "google" in it.
_BUCKET_PART = r"[a-z0-9_-]{1,63}"
BUCKET = Form(
    r"(?!goog)(?!.*google)(?![0-9.]+$)(?=[a-z0-9])(?=.*[a-z0-9]$)"
    rf"(?=.{{3,222}}$)(?!.*\.(\.|-)|.*-\.){_BUCKET_PART}(\.{_BUCKET_PART})*",
    "a bucket name, not a gs:// URI: 3-63 lowercase letters, digits, '-', '_' or '.' "
    "(222 with dots, 63 between them), a letter or digit at each end, no 'goog' prefix",
)
DISPLAY_NAME = Form(r"(?=.*\S)[^\x00-\x1f\x7f]{1,128}", "up to 128 printable characters")
MACHINE = Form(r"[a-z][a-z0-9]*(-[a-z0-9]+)+", "a machine type such as n1-standard-4")
MODULE = Form(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", "a Python module such as trainer.task")
# A TCP port: 1 to 65535.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL = Form(
    rf"https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#:@\[\]]+)(:{_PORT})?([/?#]\S*)?",
    "an http:// or https:// URL",
    # HOST:PORT, as other clients take STORAGE_EMULATOR_HOST (google-cloud-storage does not).
    lambda value: None if "://" in value else f"http://{value}",
)
# A container image reference: registry host[:port], a lowercase path, a tag or a digest.
IMAGE = Form(
    r"[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?",
    "a container image such as us-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG",
)
# Versions are labelled with it (lowercased, at most 63 characters): a commit id or name.
GIT_SHA = Form(r"[A-Za-z0-9_-]{1,64}", "a commit id: up to 64 letters, digits, '-' or '_'")
# An integer setting above this is a typo, not a plan (and no API field takes it).
INT_MAX = 2**31 - 1
# A number of seconds above this (a day) is a typo: the process would sleep that long.
SECONDS_MAX = 86_400.0


def _s(default, help_: str, form: Form | None = None):
    return field(default=default, metadata={"help": help_, "form": form})


@dataclass(frozen=True)
class Settings:
    """The resolved settings. Field metadata is the single declaration of each setting."""

    project: str | None = _s(
        None, "Google Cloud project; unset = the embedded local emulators", PROJECT
    )
    region: str = _s("us-central1", "Vertex AI region", REGION)
    bucket: str | None = _s(None, f"Cloud Storage bucket (local default: {LOCAL_BUCKET})", BUCKET)
    api_endpoint: str | None = _s(None, "Vertex AI endpoint URL, e.g. a running emulator", URL)
    storage_endpoint: str | None = _s(
        None,
        "Cloud Storage endpoint URL (default: STORAGE_EMULATOR_HOST when set, else Google)",
        URL,
    )
    model_name: str = _s("model", "display name of the Vertex AI model", DISPLAY_NAME)
    endpoint_name: str | None = _s(
        None, "display name of the endpoint (default: MODEL-endpoint)", DISPLAY_NAME
    )
    trainer_module: str = _s("trainer.task", "python module the training job runs", MODULE)
    data_dir: str = _s("data", "directory of relative train/eval/instances files")
    train_file: str | None = _s(None, "training CSV (local path or gs:// URI)")
    eval_file: str | None = _s(None, "evaluation CSV (local path or gs:// URI)")
    instances_file: str = _s("test.json", "JSON-lines instances for smoke tests")
    state_dir: str = _s(".local-cloud", "where the embedded emulators keep their state")
    local_max_replicas: int | None = _s(None, "cap on local training processes per job")
    poll_interval: float | None = _s(None, "seconds between polls (default 10; emulators 0.05)")
    api_retries: int = _s(
        NUM_RETRIES, "retries of a Vertex AI call answered 429 or 5xx (backoff; 1/20 on emulators)"
    )
    heartbeat: float = _s(60.0, "seconds between 'still running' lines while waiting")
    tf_version: str | None = _s(None, "TensorFlow version for images (default: installed)")
    executor_image: str | None = _s(
        None, "training executorImageUri (default: from tf_version)", IMAGE
    )
    serving_image: str | None = _s(None, "prediction image (default: from tf_version)", IMAGE)
    serving_machine_type: str = _s(
        "n1-standard-2", "machine type of endpoints and batch jobs", MACHINE
    )
    git_sha: str | None = _s(
        None, "commit labelled on versions (default: GITHUB_SHA or git)", GIT_SHA
    )
    # What a training job runs: steps, and the cluster (a legacy tier, or CUSTOM's machines).
    train_steps: int = _s(1000, "global training steps passed to the trainer")
    scale_tier: str = _s("BASIC", "legacy ML Engine scale tier (docs/cli.md: tiers)")
    master_type: str | None = _s(
        None, "CUSTOM tier: chief machine type, e.g. n1-standard-4", MACHINE
    )
    worker_type: str | None = _s(None, "CUSTOM tier: worker machine type", MACHINE)
    worker_count: int | None = _s(None, "CUSTOM tier: number of workers (default none)")
    accelerator_type: str | None = _s(None, "CUSTOM tier: accelerator, e.g. NVIDIA_TESLA_T4")
    accelerator_count: int | None = _s(None, "CUSTOM tier: accelerators per replica")
    emulator_serving_runtime: str | None = _s(
        None, "embedded emulator serves with: local TensorFlow, or image (its TF, cached venv)"
    )

    @property
    def embedded(self) -> bool:
        """True when no cloud and no running emulator is configured."""
        return self.project is None and self.api_endpoint is None

    @property
    def poll_seconds(self) -> float:
        """Seconds between polls: a local emulator answers at once, Vertex AI takes minutes."""
        if self.poll_interval is not None:
            return self.poll_interval
        local = self.embedded or (self.api_endpoint or "").startswith("http://")
        return 0.05 if local else 10.0

    @property
    def project_id(self) -> str:
        """The project to address: the setting, or the embedded default's fixed id."""
        return self.project or LOCAL_PROJECT

    @property
    def bucket_name(self) -> str:
        """The bucket to use; required in a real project, ``local-ci`` otherwise."""
        if self.bucket:
            return self.bucket
        if self.project:
            raise UsageError("setting 'bucket' is required when 'project' is set (CI_BUCKET)")
        return LOCAL_BUCKET

    @property
    def endpoint_display_name(self) -> str:
        """The endpoint's display name (default ``<model_name>-endpoint``)."""
        return self.endpoint_name or f"{self.model_name}-endpoint"

    def data_path(self, name: str) -> str:
        """A data file setting as a path: URIs and absolute paths as given, else in data_dir."""
        if name.startswith("gs://") or Path(name).is_absolute():
            return name
        return str(Path(self.data_dir) / name)

    @property
    def parent(self) -> str:
        """``projects/P/locations/R``."""
        return f"projects/{self.project_id}/locations/{self.region}"


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def env_var(name: str) -> str:
    """The environment variable of a setting: ``CI_<NAME>``."""
    return f"CI_{name.upper()}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register every setting as a flag (default None: 'not given on the command line')."""
    group = parser.add_argument_group("settings (flag > CI_<NAME> env > ci.toml > default)")
    group.add_argument(
        "--settings", metavar="FILE", help=f"settings file (default {SETTINGS_FILE})"
    )
    for name, f in FIELDS.items():
        shown = f.default if f.default is not None else "unset"
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"setting_{name}",
            metavar=name.upper(),
            help=f"{f.metadata['help']} (env {env_var(name)}; default {shown})",
        )


def convert(name: str, value, source: str):
    """Setting ``name``'s value from text (or TOML) ``value``; a UsageError naming ``source``."""
    kind = FIELDS[name].type
    what = f"setting {name!r} from {source}"
    # One check per kind of value (ci.inputs): NaN, inf, booleans and 2.5-for-an-int fail.
    if "float" in kind:
        out = number(value, what)
        if out < 0:
            raise UsageError(f"{what}: bad value {value!r} (must not be negative)")
        if out > SECONDS_MAX:
            raise UsageError(f"{what}: bad value {value!r} (at most {SECONDS_MAX:g} seconds)")
        if name == "poll_interval" and out == 0:  # polling without a pause floods the API
            raise UsageError(f"{what}: bad value {value!r} (must be above 0)")
        return out
    if "int" in kind:
        out = whole(value, what)
        if not 1 <= out <= INT_MAX:
            raise UsageError(f"{what}: bad value {value!r} (must be 1 to {INT_MAX})")
        return out
    form = FIELDS[name].metadata["form"]
    if not isinstance(value, str) or not value or (form is None and not value.strip()):
        raise UsageError(f"setting {name!r} from {source}: expected a non-empty string")
    if "\x00" in value:
        raise UsageError(f"setting {name!r} from {source}: contains a NUL byte")
    if form is not None:
        form.check(value, what)
    return value


def load_file(path: Path) -> dict:
    """The settings table of ``path``; unknown keys are errors so typos do not pass silently."""
    try:
        data = tomllib.loads(read_text(path, "settings file"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"settings file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"settings file {str(path)!r}: TOML nested too deeply") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        hint = did_you_mean(unknown[0], FIELDS)
        raise UsageError(f"unknown setting {unknown[0]!r} in {str(path)!r}{hint}")
    return data


def resolve(args: argparse.Namespace | None = None, env: dict | None = None) -> Settings:
    """Resolve every setting: flag > ``CI_<NAME>`` > settings file > default."""
    env = os.environ if env is None else env
    args_d = vars(args) if args is not None else {}
    file_name = args_d.get("settings") or env.get("CI_SETTINGS")
    path = Path(file_name or SETTINGS_FILE)
    if file_name and path.is_dir():
        raise UsageError(f"settings file {str(path)!r} is a directory")
    if file_name and not os.path.lexists(path):
        raise UsageError(f"settings file not found: {str(path)!r}")
    from_file = load_file(path) if optional_file(path, "settings file") else {}
    values = {}
    for name in FIELDS:
        flag = args_d.get(f"setting_{name}")
        if flag is not None:
            values[name] = convert(name, flag, f"--{name.replace('_', '-')}")
        elif env.get(env_var(name)):
            values[name] = convert(name, env[env_var(name)], env_var(name))
        elif name in from_file:
            values[name] = convert(name, from_file[name], str(path))
    # google-cloud-storage's own variable, read here once: the client gets the endpoint
    # explicitly, so nothing depends on the process environment after this point.
    if "storage_endpoint" not in values and env.get(STORAGE_EMULATOR_HOST):
        host = env[STORAGE_EMULATOR_HOST]
        values["storage_endpoint"] = convert("storage_endpoint", host, STORAGE_EMULATOR_HOST)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    """Checks across settings, done here so they fail before anything is built or started."""
    DISPLAY_NAME.check(settings.endpoint_display_name, "the endpoint's display name")
    limits.check_region(settings.region)
    if settings.local_max_replicas is not None:
        from ci.emulator.replicas import LOCAL_REPLICA_LIMIT

        if settings.local_max_replicas > LOCAL_REPLICA_LIMIT:
            raise UsageError(
                f"setting 'local_max_replicas': bad value {settings.local_max_replicas} (at "
                f"most {LOCAL_REPLICA_LIMIT}, the emulator's limit of local processes a job)"
            )
    if settings.accelerator_type:
        from ci.emulator import schema  # the API's own list (its discovery document)

        spec = schema.document()["schemas"]["GoogleCloudAiplatformV1MachineSpec"]
        known = spec["properties"]["acceleratorType"]["enum"][1:]  # not UNSPECIFIED
        if settings.accelerator_type not in known:
            raise UsageError(
                f"setting 'accelerator_type': bad value {settings.accelerator_type!r} "
                f"(one of {', '.join(known)})"
            )
    limits.check_accelerators(settings.accelerator_type, settings.accelerator_count)
    if settings.emulator_serving_runtime is not None:
        from ci.emulator.runtime import RUNTIMES

        if settings.emulator_serving_runtime not in RUNTIMES:
            raise UsageError(
                f"setting 'emulator_serving_runtime': bad value "
                f"{settings.emulator_serving_runtime!r} (one of {', '.join(RUNTIMES)})"
            )
    from ci.tiers import TIER_NAMES

    if settings.scale_tier.upper() not in TIER_NAMES:
        raise UsageError(
            f"setting 'scale_tier': bad value {settings.scale_tier!r} "
            f"(one of {', '.join(TIER_NAMES)})"
        )
    if settings.tf_version:
        from ci import tiers

        try:  # both images must exist for the version: training's and serving's
            tiers.executor_image(settings.tf_version, settings.region)
            tiers.serving_image(settings.tf_version, settings.region)
        except UsageError as exc:
            raise UsageError(f"setting 'tf_version': {exc}") from None


def tf_version(settings: Settings) -> str:
    """The TensorFlow version images are chosen for: the setting, else the installed one."""
    if settings.tf_version:
        return settings.tf_version
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return _newest_prebuilt()


def serving_image(settings: Settings) -> str:
    """The image new versions are served with: the setting, else the prebuilt prediction
    image for :func:`tf_version`."""
    from ci import tiers

    return settings.serving_image or tiers.serving_image(tf_version(settings), settings.region)


def git_sha(settings: Settings) -> str:
    """The commit to label versions with: setting, ``GITHUB_SHA``, ``git``, else 'unknown'."""
    sha = settings.git_sha or os.environ.get("GITHUB_SHA")
    if not sha:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        sha = proc.stdout.strip() if proc.returncode == 0 else "unknown"
    return sha.lower()[:63]


def _newest_prebuilt() -> str:
    from ci.tiers import TRAINING_TF

    return TRAINING_TF[-1]
