"""A PEP 517 backend's sdist hooks, both in one process of the build environment.

Run by :mod:`ci.package` as ``python -P sdist_hooks.py RESULT_FILE`` with the request as
JSON on stdin: ``backend`` (``module:object``), ``backend_path`` (absolute directories, the
PEP 517 ``backend-path``), ``sdist_dir``, ``requires_known`` (skip
``get_requires_for_build_sdist``: they were installed). The working directory is the source
tree. It writes JSON to RESULT_FILE: ``{"sdist": NAME}`` once built; ``{"requires": [...]}``
when the backend asks for more requirements first (build nothing: the caller installs them
and asks again with ``requires_known``); ``{"unavailable": MESSAGE}`` when the backend cannot
be imported. A hook's exception is a traceback on stderr and a non-zero exit. Standard
library only: it runs in the isolated environment, not the tooling's.

pyproject-hooks (what pypa/build uses) runs each hook in a process of its own; one process
for both saves a start of the interpreter and of the backend (0.2-0.3 s with setuptools).
"""

from __future__ import annotations

import importlib
import json
import os
import sys


class Unavailable(Exception):
    """The backend cannot be imported as declared."""


def load_backend(spec: str, backend_path: list[str]):
    """The backend object ``module:object`` names, found first on ``backend_path``."""
    sys.path[:0] = backend_path
    module_name, _, qualname = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise Unavailable(f"cannot import {module_name!r}: {exc}") from None
    if backend_path:  # PEP 517: an in-tree backend must come from backend-path
        origin = os.path.abspath(getattr(obj, "__file__", "") or "")
        if not any(origin.startswith(os.path.join(p, "")) for p in backend_path):
            raise Unavailable(f"{module_name!r} was not loaded from backend-path {backend_path}")
    for attr in filter(None, qualname.split(".")):
        obj = getattr(obj, attr)
    return obj


def main(result_file: str) -> int:
    request = json.load(sys.stdin)
    try:
        backend = load_backend(request["backend"], request["backend_path"])
    except Unavailable as exc:
        result = {"unavailable": str(exc)}
    else:
        hook = getattr(backend, "get_requires_for_build_sdist", None)
        requires = [] if request["requires_known"] or hook is None else list(hook(None))
        if requires:
            result = {"requires": requires}
        else:
            result = {"sdist": backend.build_sdist(request["sdist_dir"], None)}
    with open(result_file, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
