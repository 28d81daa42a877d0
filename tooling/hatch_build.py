"""The distribution's dependencies: the ``ci`` group of the repository's pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hatchling.metadata.plugin.interface import MetadataHookInterface


class CustomMetadataHook(MetadataHookInterface):
    """Fills ``dependencies`` from ``[dependency-groups] ci`` one directory up."""

    def update(self, metadata: dict) -> None:
        pyproject = Path(self.root).parent / "pyproject.toml"
        groups = tomllib.loads(pyproject.read_text())["dependency-groups"]
        metadata["dependencies"] = [r for r in groups["ci"] if isinstance(r, str)]
