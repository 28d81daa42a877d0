"""The input pipeline: CSV lines streamed with ``tf.data`` and parsed a block at a time.

Rows are validated as they stream (column count, numbers, label range), so a bad file
fails with its path, line and value instead of training on garbage. Reading, parsing and
shuffling work on blocks of lines with vectorised ops: per-row dataset elements would
cost far more than the arithmetic. Memory stays flat whatever the file's size.
"""

from __future__ import annotations

import os
import re

import tensorflow as tf

from trainer import constants as C

# Assertion messages carry this prefix so the entry point can report them in one line.
_MARK = "BADCSV<<"
_END = ">>"
_FLOAT = r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*"
# A whole data row: the features, then a label 0, 1 or 2.
_ROW = ",".join([_FLOAT] * len(C.FEATURES) + [rf"\s*[0-{len(C.CLASSES) - 1}]\s*"])


class DataError(ValueError):
    """A data file that cannot be used; the message names file, line and value."""


def check_file(path: str) -> None:
    """Fail early on a missing file, an empty one, or one with a header and no rows."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline()
            first_row = f.readline()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CSV file") from None
    if not header:
        raise DataError(f"{path}: empty file (expected a header line, then data rows)")
    if not first_row.strip():
        raise DataError(f"{path}: no data rows after the header line")


def bad_data_message(error: Exception) -> str | None:
    """The one-line message of a validation failure raised inside the pipeline, if it is one."""
    match = re.search(re.escape(_MARK) + r"(.*?)" + re.escape(_END), str(error), re.S)
    # The assertion's text comes back repr-escaped inside TensorFlow's message.
    return match.group(1).replace("\\'", "'") if match else None


def _require(ok, message_at):
    """A control dependency that fails, naming the first offending row, unless all ``ok``."""

    def fail():
        first_bad = tf.argmin(tf.cast(ok, tf.int32))
        message = tf.strings.join([_MARK, message_at(first_bad), _END])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    return tf.cond(tf.reduce_all(ok), lambda: tf.constant(True), fail)


def _diagnose(path: str, number, line):
    """Why one line is not a valid row: only ever computed for the first bad line."""
    fields = tf.strings.split(line, ",")
    where = tf.strings.join([path, ":", tf.strings.as_string(number), ": "])
    count = tf.size(fields)

    def columns():
        return tf.strings.join(
            [where, f"expected {C.NUM_COLUMNS} columns, got ", tf.strings.as_string(count),
             ": '", line, "'"]
        )  # fmt: skip

    def values():
        numeric = tf.strings.regex_full_match(fields[: len(C.FEATURES)], _FLOAT)
        first = tf.argmin(tf.cast(numeric, tf.int32))
        names = tf.constant(C.FEATURES)
        return tf.cond(
            tf.reduce_all(numeric),
            lambda: tf.strings.join([where, "label '", fields[-1], "' is not one of 0, 1, 2"]),
            lambda: tf.strings.join(
                [where, "non-numeric value '", fields[first], "' for ", names[first]]
            ),
        )

    return tf.cond(tf.equal(count, C.NUM_COLUMNS), values, columns)


def _parse_block(path: str, line_numbers, lines, shuffle: bool):
    """``[n]`` lines → ``(features [n, 4] float32, labels [n] int32)``, validated.

    One regular expression per line checks columns, numbers and label together; only a
    block with a bad line pays for working out what is wrong with it.
    """
    valid = _require(
        tf.strings.regex_full_match(lines, _ROW),
        lambda i: _diagnose(path, line_numbers[i], lines[i]),
    )
    with tf.control_dependencies([valid]):
        values = tf.reshape(tf.strings.split(lines, ",").flat_values, [-1, C.NUM_COLUMNS])
    x = tf.strings.to_number(values[:, : len(C.FEATURES)], tf.float32)
    y = tf.strings.to_number(values[:, -1], tf.int32)
    if shuffle:
        order = tf.random.shuffle(tf.range(tf.shape(y)[0]))
        x, y = tf.gather(x, order), tf.gather(y, order)
    return x, y


def _lines(path: str):
    """Blocks of ``(line numbers, lines)`` read ``READ_CHUNK`` bytes at a time.

    Reading fixed-size chunks and splitting them with one vectorised op keeps per-element
    dataset overhead per chunk instead of per line; a ``scan`` carries the part of a line
    cut by a chunk boundary into the next chunk.
    """
    size = os.path.getsize(path)
    tail = size % C.READ_CHUNK
    chunks = tf.data.FixedLengthRecordDataset(path, C.READ_CHUNK, footer_bytes=tail)
    if tail:
        chunks = chunks.concatenate(
            tf.data.FixedLengthRecordDataset(path, tail, header_bytes=size - tail)
        )
    # A final newline flushes a last line that has none.
    chunks = chunks.concatenate(tf.data.Dataset.from_tensors(tf.constant("\n")))

    def split(state, chunk):
        carry, seen = state
        parts = tf.strings.split(carry + chunk, "\n")
        complete = parts[:-1]
        count = tf.size(complete, out_type=tf.int64)
        numbers = seen + 1 + tf.range(count, dtype=tf.int64)
        return (parts[-1], seen + count), (numbers, tf.strings.strip(complete))

    def data_rows(numbers, lines):
        # Skip the header (line 1) and blank lines; numbers still count them, as an editor would.
        keep = (numbers > 1) & (tf.strings.length(lines) > 0)
        return tf.boolean_mask(numbers, keep), tf.boolean_mask(lines, keep)

    start = (tf.constant(""), tf.constant(0, tf.int64))
    return chunks.scan(start, split).map(data_rows).filter(lambda n, _: tf.size(n) > 0)


def dataset(path: str, batch_size: int, *, shuffle: bool = False, repeat: bool = False):
    """Batches of ``(features [b, 4], labels [b])`` streamed from a local CSV file.

    With ``shuffle``, rows are shuffled within each block and blocks are shuffled too.
    """
    check_file(path)
    blocks = _lines(path).map(
        lambda numbers, text: _parse_block(path, numbers, text, shuffle),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if shuffle:
        blocks = blocks.shuffle(C.SHUFFLE_BLOCKS)
    if repeat:
        blocks = blocks.repeat()
    return blocks.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)
