"""Directories the commands create in the caller's tree, created so that git ignores them.

``pipeline`` and friends write into the repository they run in (the embedded emulators'
``state_dir``, the sdist's ``dist/``). An adopting repository should not find untracked
files it never asked for, so a directory made here gets its own ``.gitignore`` (as pytest
and ruff do for their caches) and one line on stdout saying where it is and what it holds.
"""

from __future__ import annotations

from pathlib import Path

from ci.errors import UsageError

IGNORE_ALL = "# created by tf-vertex-ci: nothing in here belongs in git\n*\n"


def ensure(path: Path, what: str, announce: bool = True) -> Path:
    """Create ``path`` if needed; a new one gets a ``.gitignore`` (and a note, if ``announce``)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{str(path)!r} (for {what}) exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / ".gitignore").write_text(IGNORE_ALL)
    except OSError as exc:  # a part of it is a file, no permission, a name too long
        raise UsageError(f"cannot create {str(path)!r} for {what}: {exc.strerror}") from None
    # stdout: stderr is kept for the one `Error:` line a failing command prints. `package`
    # does not announce: its output is the sdist's path, which says where it went.
    if announce:
        note = f"note: created {path}/ for {what} (git-ignored; delete it to start over)"
        print(note, flush=True)
    return path
