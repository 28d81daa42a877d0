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
_INT = r"\s*\d+\s*"


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


def _parse_block(path: str, line_numbers, lines, shuffle: bool):
    """``[n]`` lines → ``(features [n, 4] float32, labels [n] int32)``, validated."""
    where = lambda i: tf.strings.join([path, ":", tf.strings.as_string(line_numbers[i]), ": "])  # noqa: E731
    fields = tf.strings.split(lines, ",")
    columns = fields.row_lengths()
    columns_ok = _require(
        tf.equal(columns, C.NUM_COLUMNS),
        lambda i: tf.strings.join(
            [
                where(i),
                f"expected {C.NUM_COLUMNS} columns, got ",
                tf.strings.as_string(columns[i]),
                ": '",
                lines[i],
                "'",
            ]
        ),
    )
    with tf.control_dependencies([columns_ok]):
        values = tf.reshape(fields.flat_values, [-1, C.NUM_COLUMNS])
    features, labels = values[:, : len(C.FEATURES)], values[:, -1]

    numeric = tf.strings.regex_full_match(features, _FLOAT)
    row_ok = tf.reduce_all(numeric, axis=1)
    names = tf.constant(C.FEATURES)
    features_ok = _require(
        row_ok,
        lambda i: tf.strings.join(
            [
                where(i),
                "non-numeric value '",
                features[i][tf.argmin(tf.cast(numeric[i], tf.int32))],
                "' for ",
                names[tf.argmin(tf.cast(numeric[i], tf.int32))],
            ]
        ),
    )
    label_text_ok = _require(
        tf.strings.regex_full_match(labels, _INT),
        lambda i: tf.strings.join([where(i), "label '", labels[i], "' is not one of 0, 1, 2"]),
    )
    with tf.control_dependencies([features_ok, label_text_ok]):
        x = tf.strings.to_number(features, tf.float32)
        y = tf.strings.to_number(labels, tf.int32)
    label_ok = _require(
        (y >= 0) & (y < len(C.CLASSES)),
        lambda i: tf.strings.join([where(i), "label '", labels[i], "' is not one of 0, 1, 2"]),
    )
    with tf.control_dependencies([label_ok]):
        if shuffle:
            order = tf.random.shuffle(tf.range(tf.shape(y)[0]))
            x, y = tf.gather(x, order), tf.gather(y, order)
        return tf.identity(x), tf.identity(y)


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
