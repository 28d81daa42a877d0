"""The trainer's inputs, made ready before TensorFlow is imported: the files each flag names
(globs and lists expanded, this replica's share picked), local copies of Cloud Storage ones,
and each file's first line checked. So a missing file, a glob that matches nothing or a
wrong header fails in a fraction of a second, not after TensorFlow's seconds of start-up,
and a job's downloads are done before its training starts. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from trainer import cluster, storage
from trainer import constants as C

_FLOAT = r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*"
# A whole data row: the features, then a label 0, 1 or 2.
_ROW = ",".join([_FLOAT] * len(C.FEATURES) + [rf"\s*[0-{len(C.CLASSES) - 1}]\s*"])
# The first line may name the columns, or be TensorFlow's Iris header (rows, features, class
# names), or be a data row already (no header).
_NAMES_HEADER = ",".join([*C.FEATURES, C.LABEL])
_IRIS_HEADER = ",".join(rf"\s*{f}\s*" for f in [r"\d+", len(C.FEATURES), *C.CLASSES])
# Messages quote at most this many characters of a line or value (a line may be megabytes).
_QUOTE = 80
# A carriage return inside a line: the file's lines are separated by "\r" alone.
CR_ALONE = "lines end in a carriage return alone (\\r, old Mac style); end them in \\n or \\r\\n"
# Bytes of the first line looked at: a longer line is no header.
_HEADER_BYTES = 4096


class DataError(ValueError):
    """A data file that cannot be used; the message names file, line and value."""


def check_file(path: str, name: str | None = None) -> int:
    """Fail early on a missing or empty file, a wrong header, or a header and no rows.

    Returns the number of header lines (0 or 1). ``name`` is what messages call the file
    (its URI when ``path`` is a downloaded copy).
    """
    name = name or path
    try:
        with open(path, "rb") as f:
            first = f.readline(_HEADER_BYTES)
            more = iter(lambda: f.readline(_HEADER_BYTES), b"")
            has_rows = any(line.strip() for line in more)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not a CSV file") from None
    first = first.removeprefix(codecs.BOM_UTF8)  # as spreadsheets save "CSV UTF-8"
    if not first:
        raise DataError(f"{name}: empty file (expected a header line, then data rows)")
    try:  # final=False: a multi-byte character cut by the byte limit is not an error
        line = codecs.getincrementaldecoder("utf-8")().decode(first, final=False).strip()
    except UnicodeDecodeError:
        line = "\0"
    if re.search(r"[\x00-\x08\x0e-\x1f]", line):
        raise DataError(f"{name}:1: not UTF-8 text (is this a binary file?)")
    if b"\r" in first.rstrip(b"\r\n"):
        raise DataError(f"{name}:1: {CR_ALONE}")
    if re.fullmatch(_ROW, line) or (not line and has_rows):
        return 0  # no header (a blank first line is skipped like any blank line)
    names = re.fullmatch(_NAMES_HEADER, line.replace(" ", ""), re.IGNORECASE)
    if line and not names and not re.fullmatch(_IRIS_HEADER, line):
        raise DataError(
            f"{name}:1: unexpected header '{_excerpt(line)}' (expected the columns "
            f"{_NAMES_HEADER}, TensorFlow's Iris header "
            f"'<rows>,{len(C.FEATURES)},{','.join(C.CLASSES)}', or a data row)"
        )
    if not has_rows:
        raise DataError(f"{name}: no data rows after the header line")
    return 1


def _excerpt(text: str) -> str:
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


@dataclass(frozen=True)
class Inputs:
    """What one replica reads: names (as given, URIs included) and their local copies."""

    train_files: list[str]
    train_local: list[str]
    sharded: bool  # the train files are this replica's own share
    eval_files: list[str]
    eval_local: list[str]


def prepare(train_spec: str, eval_spec: str, role: cluster.Role, work: str) -> Inputs:
    """Expand the file flags, copy Cloud Storage files under ``work`` and check every file's
    first line (:func:`check_file`); the chief alone reads the evaluation files."""
    train_files, sharded = cluster.share(storage.expand(train_spec), role)
    eval_files = storage.expand(eval_spec) if role.chief else []
    print(
        f"task {role.task_type}:{role.index} reads {len(train_files)} train file(s)"
        f"{' (its own share)' if sharded else ''}: {', '.join(train_files)}",
        flush=True,
    )
    train_local = [storage.localize(f, work) for f in train_files]
    eval_local = [storage.localize(f, work) for f in eval_files]
    for path, name in zip([*train_local, *eval_local], [*train_files, *eval_files], strict=True):
        check_file(path, name)
    return Inputs(train_files, train_local, sharded, eval_files, eval_local)
