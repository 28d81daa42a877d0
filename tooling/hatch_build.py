"""Build hooks of the ``tf-vertex-ci`` distribution.

In a checkout the tooling lives one directory up (``../ci``, ``../pyproject.toml``); in an
sdist built from the checkout, copies of both sit beside this file. Either way the wheel
gets the ``ci`` package, and its dependencies are the ``ci`` dependency group of the
repository's pyproject.toml, so they are declared once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

# Where the sdist keeps the repository's pyproject.toml (see [tool.hatch.build.targets.sdist]).
SDIST_PYPROJECT = "repository-pyproject.toml"


def _repository_file(root: Path, name: str, in_sdist: str) -> Path:
    checkout = root.parent / name
    return checkout if checkout.exists() else root / in_sdist


class CustomMetadataHook(MetadataHookInterface):
    """Fills ``dependencies`` from ``[dependency-groups] ci`` of the repository."""

    def update(self, metadata: dict) -> None:
        pyproject = _repository_file(Path(self.root), "pyproject.toml", SDIST_PYPROJECT)
        groups = tomllib.loads(pyproject.read_text())["dependency-groups"]
        metadata["dependencies"] = [r for r in groups["ci"] if isinstance(r, str)]


class CustomBuildHook(BuildHookInterface):
    """Ships the repository's ``ci`` package in the wheel."""

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name == "wheel":
            source = _repository_file(Path(self.root), "ci", "ci")
            build_data["force_include"][str(source)] = "ci"
