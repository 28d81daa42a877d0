"""``python -m ci workflow-plan``: check train-and-deploy's inputs and decide how it runs.

The reusable workflow hands its inputs over as one JSON object (``CI_WORKFLOW_INPUTS``,
``toJSON(inputs)``) and GitHub's event through its usual variables. Every decision the jobs
need (which platform, whether to authenticate, which GitHub environment gates promotion, the
promotion's concurrency group, whether a pull request gets a comment) is made here, once,
and written as step outputs; the YAML only wires them. Bad inputs fail here, before any job
builds or authenticates. The files the run will read from the caller's repository are
checked here too (the plan job checks the caller out for it): the gate's ``gate-config``, the
trainer's ``package-dir`` and, with ``tune`` on, the study in ``tuning-config``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci import flags, gate_rules, outputs, settings, tuning_config
from ci.errors import UsageError
from ci.inputs import did_you_mean, parse_json, read_text
from ci.tiers import TIER_NAMES

# Every input of .github/workflows/train-and-deploy.yml (tests/test_workflow.py keeps the
# two in step): an unknown key means the workflow and the tooling disagree.
INPUTS = (
    "platform",
    "project",
    "region",
    "bucket",
    "model-name",
    "scale-tier",
    "train-steps",
    "gate-config",
    "environment",
    "workload-identity-provider",
    "service-account",
    "package-dir",
    "trainer-module",
    "data-dir",
    "train-file",
    "eval-file",
    "instances-file",
    "python-version",
    "pr-comment",
    "tune",
    "tuning-config",
    "tooling-repository",
    "tooling-ref",
)
PLATFORMS = ("local", "vertex")
# What platform vertex cannot run without (Workload Identity Federation, no keys).
VERTEX_NEEDS = ("project", "bucket", "workload-identity-provider", "service-account")
# What google-github-actions/auth takes: the provider's full resource name, and an email.
PROVIDER = re.compile(
    r"projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+"
)
SERVICE_ACCOUNT = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\.[a-z]+")
# The files of a trainer package's build (the pipeline builds its sdist from there).
PACKAGE_FILES = ("pyproject.toml", "setup.py")


@dataclass(frozen=True)
class Event:
    """What the plan needs of the GitHub event that started the run."""

    name: str
    repository: str
    ref: str = ""
    head_repository: str | None = None  # a pull request's head repository

    @property
    def pull_request(self) -> bool:
        return self.name in ("pull_request", "pull_request_target")

    @property
    def from_fork(self) -> bool:
        """A pull request whose head lives in another repository (its token is read-only)."""
        return self.pull_request and self.head_repository != self.repository

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Event:
        """The event of a workflow run: ``GITHUB_EVENT_NAME``, ``GITHUB_EVENT_PATH``, ..."""
        payload: dict = {}
        path = env.get("GITHUB_EVENT_PATH")
        if path and Path(path).is_file():
            text = read_text(path, "GITHUB_EVENT_PATH file") or "{}"
            payload = parse_json(text, f"GITHUB_EVENT_PATH {path!r}")
            if not isinstance(payload, dict):
                raise UsageError(f"GITHUB_EVENT_PATH {path!r}: the event is not a JSON object")
        head = ((payload.get("pull_request") or {}).get("head") or {}).get("repo") or {}
        return cls(
            name=env.get("GITHUB_EVENT_NAME", ""),
            repository=env.get("GITHUB_REPOSITORY", ""),
            ref=env.get("GITHUB_REF", ""),
            head_repository=head.get("full_name"),
        )


@dataclass(frozen=True)
class Plan:
    """How one run of train-and-deploy goes."""

    platform: str
    project: str
    environment: str
    promote_group: str
    pr_comment: bool
    notes: tuple[str, ...] = ()
    tuning_config: str = ""  # the study when train tunes (`ci tune`), "" to train once

    def outputs(self) -> dict[str, str]:
        """Step outputs (strings, as GitHub keeps them)."""
        return {
            "platform": self.platform,
            "project": self.project,
            "environment": self.environment,
            "promote_group": self.promote_group,
            "pr_comment": str(self.pr_comment).lower(),
            "tune": str(bool(self.tuning_config)).lower(),
            "tuning_config": self.tuning_config,
        }

    def summary(self) -> str:
        """A Markdown table for the job summary, then one line per note."""
        rows = [
            ("platform", self.platform),
            ("project", self.project or "(embedded emulators)"),
            ("approval environment", self.environment or "(none)"),
            ("pull request comment", "yes" if self.pr_comment else "no"),
            (
                "tuning",
                f"yes, best trial promoted ({self.tuning_config})" if self.tuning_config else "no",
            ),
        ]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        notes = "".join(f"\n> {n}" for n in self.notes)
        return f"### Plan\n\n| decision | value |\n| --- | --- |\n{table}\n{notes}"


def _text(inputs: Mapping, name: str) -> str:
    value = inputs.get(name)
    if value is None:
        return ""
    if isinstance(value, bool):  # toJSON keeps a boolean input's type
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():  # and a number input's
        value = int(value)
    text = str(value).strip()
    if "\n" in text:
        raise UsageError(f"input {name!r} spans several lines")
    return text


def check(inputs: Mapping) -> None:
    """Refuse inputs the tooling cannot run: unknown keys, bad names, missing cloud inputs."""
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        hint = did_you_mean(unknown[0], INPUTS)
        raise UsageError(f"unknown workflow input {unknown[0]!r}{hint}; known: {', '.join(INPUTS)}")
    for name in inputs:  # each becomes a CI_<NAME> variable or an output: one line each
        _text(inputs, name)
    platform = _text(inputs, "platform")
    if platform not in ("", *PLATFORMS):
        raise UsageError(f"input 'platform': {platform!r} is not one of '', local, vertex")
    tier = _text(inputs, "scale-tier")
    if tier and tier not in TIER_NAMES:
        raise UsageError(f"input 'scale-tier': {tier!r} is not one of {', '.join(TIER_NAMES)}")
    for name in inputs:  # an input that is a setting is checked as the setting is
        value, key = _text(inputs, name), name.replace("-", "_")
        if value and key in settings.FIELDS:
            settings.convert(key, value, f"input {name!r}")
    for name in ("pr-comment", "tune"):
        if _text(inputs, name) not in ("", "true", "false"):
            raise UsageError(f"input {name!r}: {_text(inputs, name)!r} is not true or false")
    for name, pattern, example in (
        (
            "workload-identity-provider",
            PROVIDER,
            "projects/123456789/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
        ),
        ("service-account", SERVICE_ACCOUNT, "deployer@my-project.iam.gserviceaccount.com"),
    ):
        value = _text(inputs, name)
        if value and not pattern.fullmatch(value):
            raise UsageError(f"input {name!r}: {_cut(value)!r} is not like {example}")


def _cut(text: str, limit: int = 80) -> str:
    """A value short enough for a one-line error."""
    return text if len(text) <= limit else text[:limit] + "..."


def _inside(inputs: Mapping, name: str, default: str, root: Path) -> Path:
    """The input's path in the caller's checkout ``root``; one that leaves it is refused."""
    given = _text(inputs, name) or default
    if Path(given).is_absolute() or ".." in Path(given).parts:
        raise UsageError(f"input {name!r}: {_cut(given)!r} is not a path inside the repository")
    return root / given


def _is(path: Path, kind: str) -> bool:
    """``path.is_file()`` or ``is_dir()``; a name the system cannot look up (too long, a NUL)
    is no file either."""
    try:
        return getattr(path, f"is_{kind}")()
    except (OSError, ValueError):
        return False


def check_files(inputs: Mapping, root: Path) -> None:
    """The caller's files the run reads, checked before anything builds or trains: the gate's
    thresholds (the gate never says yes without one) and the trainer package to build."""
    name = _text(inputs, "gate-config") or "gate.toml"
    gate = _inside(inputs, "gate-config", "gate.toml", root)
    if not _is(gate, "file"):
        raise UsageError(
            f"input 'gate-config': {_cut(name)!r} is not a file of the repository "
            "(the gate's thresholds, [metrics.NAME] tables: docs/promotion.md)"
        )
    gate_rules.thresholds_from(gate, [])  # the gate's own checks, by key, before training
    name = _text(inputs, "package-dir") or "."
    package = _inside(inputs, "package-dir", ".", root)
    if not _is(package, "dir"):
        raise UsageError(
            f"input 'package-dir': {_cut(name)!r} is not a directory of the repository"
        )
    if not any(_is(package / file, "file") for file in PACKAGE_FILES):
        raise UsageError(
            f"input 'package-dir': {_cut(name)!r} holds no pyproject.toml or setup.py "
            "(the trainer package the job builds)"
        )


def choose_tuning(inputs: Mapping, root: Path) -> str:
    """The study's path when ``tune`` is on (checked, as ``ci tune`` would), else ""."""
    if _text(inputs, "tune") != "true":
        return ""
    name = _text(inputs, "tuning-config") or "tuning.toml"
    _inside(inputs, "tuning-config", "tuning.toml", root)
    if not _is(root / name, "file"):
        raise UsageError(f"input 'tuning-config': {name!r} is not a file of the repository")
    tuning_config.load(root / name)  # a bad study is refused by its key, before training
    return name


def choose_platform(inputs: Mapping, event: Event) -> str:
    """The platform: as given, else vertex when a project is named and this is no PR."""
    given = _text(inputs, "platform")
    if given:
        return given
    return "vertex" if _text(inputs, "project") and not event.pull_request else "local"


def plan(inputs: Mapping, event: Event, root: Path = Path(".")) -> Plan:
    """Check ``inputs`` and decide the run (everything comes in as arguments; ``root`` is the
    caller's checkout, read for the gate config, the package directory and the study)."""
    check(inputs)
    check_files(inputs, root)
    tuning = choose_tuning(inputs, root)
    platform = choose_platform(inputs, event)
    notes = []
    if platform == "vertex":
        missing = [name for name in VERTEX_NEEDS if not _text(inputs, name)]
        if missing:
            raise UsageError(f"platform vertex needs the inputs {', '.join(missing)}")
        if event.from_fork:
            notes.append("A fork's pull request never reaches the cloud: the jobs are skipped.")
        project = _text(inputs, "project")
        # Nothing real is deployed locally, so only vertex waits for an approval.
        environment = _text(inputs, "environment")
        group = f"promote-{project}-{_text(inputs, 'model-name')}"
    else:
        project, environment = "", ""
        # The local cloud lives in the Actions cache, which GitHub keeps per branch.
        group = f"promote-local-{event.repository}-{event.ref}-{_text(inputs, 'model-name')}"
    comment = event.pull_request and _text(inputs, "pr-comment") != "false"
    if comment and event.from_fork:
        comment = False
        notes.append(
            "No pull request comment: a fork's pull request gets a read-only token. "
            "The report is in this run's artifacts."
        )
    return Plan(platform, project, environment, group, comment, tuple(notes), tuning)


def main(argv: list[str]) -> int:
    parser = flags.parser("workflow-plan", __doc__, with_settings=False)
    parser.add_argument(
        "--inputs-json",
        metavar="JSON",
        help="the workflow's inputs as a JSON object (default: $CI_WORKFLOW_INPUTS)",
    )
    args = parser.parse_args(argv)
    source = "--inputs-json" if args.inputs_json else "CI_WORKFLOW_INPUTS"
    text = args.inputs_json or os.environ.get("CI_WORKFLOW_INPUTS") or "{}"
    try:
        inputs = parse_json(text, source, strict=True)
    except UsageError as exc:
        raise UsageError(f"workflow inputs are not JSON: {exc}") from None
    if not isinstance(inputs, dict):
        raise UsageError("workflow inputs must be a JSON object")
    decided = plan(inputs, Event.from_env(os.environ))
    outputs.write_outputs(args.outputs, decided.outputs())
    outputs.write_summary(args.summary, decided.summary())
    for key, value in decided.outputs().items():
        print(f"{key}: {value}")
    for note in decided.notes:
        print(f"::notice::{note}")
    return 0
