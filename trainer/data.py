"""The input pipeline: CSV lines streamed with ``tf.data`` and parsed a block at a time.

The first line is a header (the column names, or TensorFlow's Iris header) or already a
data row; any other first line is refused. Rows are validated as they stream (text
encoding, column count, numbers, label range), so a bad file fails with its path, line and
value (cut to 80 characters) instead of training on garbage. Reading,
parsing and shuffling work on blocks of lines with vectorised ops: per-row dataset
elements would cost far more than the arithmetic. Several files (shards) are read
interleaved, in parallel and in a fixed order. Memory stays flat whatever the size.
"""

from __future__ import annotations

import os
import re

import tensorflow as tf

from trainer import constants as C
from trainer.inputs import _FLOAT, _QUOTE, _ROW, CR_ALONE, DataError, check_file

__all__ = ["DataError", "bad_data_message", "check_file", "dataset"]

# Validation errors carry these marks so the entry point can report them in one line.
_MARK = "BADCSV<<"
_END = ">>"
_TOO_LONG = (
    f"a line longer than {C.MAX_LINE_BYTES} bytes (a data row is one line of 5 values: "
    "are the line breaks missing?)"
)
# Files read at once when there are several; more only adds buffers, not speed, on few cores.
_CYCLE = 4
# The pipeline's functions use tf.cond, never Python control flow on tensors: AutoGraph's
# source conversion would only add seconds of start-up to every run.
_plain = tf.autograph.experimental.do_not_convert


def _quote(text):
    """A string tensor as messages quote it: cut to ``_QUOTE`` characters, then ``...``."""
    long = tf.strings.length(text, unit="UTF8_CHAR") > _QUOTE
    head = tf.strings.substr(text, 0, _QUOTE - 3, unit="UTF8_CHAR")
    return tf.where(long, tf.strings.join([head, "..."]), text)


def bad_data_message(error: Exception) -> str | None:
    """The one-line message of a validation failure raised inside the pipeline, if it is one."""
    # TensorFlow's message may carry the raw bytes of a bad line: never fail on decoding it.
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    match = re.search(re.escape(_MARK) + r"(.*?)" + re.escape(_END), text, re.S)
    return match.group(1) if match else None


def _require(ok, message_at):
    """A control dependency that fails, naming the first offending row, unless all ``ok``."""

    def fail():
        first_bad = tf.argmin(tf.cast(ok, tf.int32))
        message = tf.strings.join([_MARK, message_at(first_bad), _END])
        # Parsing the message as a number fails with the message in the error. Not
        # tf.debugging.Assert: it is stateful, and under op determinism tf.data runs a map
        # whose function is stateful on one thread.
        return tf.equal(tf.strings.to_number(message), 0.0)

    return tf.cond(tf.reduce_all(ok), lambda: tf.constant(True), fail)


def _diagnose(path, number, line):
    """Why one line is not a valid row: only ever computed for the first bad line."""
    fields = tf.strings.split(line, ",")
    where = tf.strings.join([path, ":", tf.strings.as_string(number), ": "])
    count = tf.size(fields)
    # Replacing invalid UTF-8 changes the line: then it is binary, and is not quoted.
    text = tf.equal(
        tf.strings.unicode_transcode(line, "UTF-8", "UTF-8", errors="replace"), line
    ) & ~tf.strings.regex_full_match(line, r".*[\x00-\x08\x0e-\x1f].*")

    def columns():
        return tf.strings.join(
            [where, f"expected {C.NUM_COLUMNS} columns, got ", tf.strings.as_string(count),
             ": '", _quote(line), "'"]
        )  # fmt: skip

    def values():
        numeric = tf.strings.regex_full_match(fields[: len(C.FEATURES)], _FLOAT)
        first = tf.argmin(tf.cast(numeric, tf.int32))
        names = tf.constant(C.FEATURES)
        return tf.cond(
            tf.reduce_all(numeric),
            lambda: tf.strings.join(
                [where, "label '", _quote(fields[-1]), "' is not one of 0, 1, 2"]
            ),
            lambda: tf.strings.join(
                [where, "non-numeric value '", _quote(fields[first]), "' for ", names[first]]
            ),
        )

    def binary():
        return tf.strings.join([where, "not UTF-8 text (is this a binary file?)"])

    def row():
        return tf.cond(
            tf.strings.regex_full_match(line, ".*\r.*"),
            lambda: tf.strings.join([where, CR_ALONE]),
            lambda: tf.cond(tf.equal(count, C.NUM_COLUMNS), values, columns),
        )

    return tf.cond(text, row, binary)


def _parse_block(path, line_numbers, lines, seed=None):
    """``[n]`` lines → ``(features [n, 4] float32, labels [n] int32)``, validated.

    One regular expression per line checks columns, numbers and label together; only a
    block with a bad line pays for working out what is wrong with it. With ``seed`` (a
    ``[2]`` tensor) the rows are shuffled by a stateless op: the same seed, the same order.
    """
    valid = _require(
        tf.strings.regex_full_match(lines, _ROW),
        lambda i: _diagnose(path, line_numbers[i], lines[i]),
    )
    with tf.control_dependencies([valid]):
        values = tf.reshape(tf.strings.split(lines, ",").flat_values, [-1, C.NUM_COLUMNS])
    x = tf.strings.to_number(values[:, : len(C.FEATURES)], tf.float32)
    y = tf.strings.to_number(values[:, -1], tf.int32)
    if seed is not None:
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(y)[0]), seed)
        x, y = tf.gather(x, order), tf.gather(y, order)
    return x, y


def _lines(path, size, name, header_lines):
    """Blocks of ``(name, line numbers, lines)`` read ``READ_CHUNK`` bytes at a time.

    Reading fixed-size chunks and splitting them with one vectorised op keeps per-element
    dataset overhead per chunk instead of per line; a ``scan`` carries the part of a line
    cut by a chunk boundary into the next chunk. The arguments may be tensors.
    """
    tail = size % C.READ_CHUNK
    chunks = tf.data.FixedLengthRecordDataset(path, C.READ_CHUNK, footer_bytes=tail)
    # The last, shorter chunk; with no tail this reads nothing (an empty body after the header).
    chunks = chunks.concatenate(
        tf.data.FixedLengthRecordDataset(path, tf.maximum(tail, 1), header_bytes=size - tail)
    )
    # A final newline flushes a last line that has none. (from_tensor_slices: under op
    # determinism tf.data runs the whole pipeline on one thread if it meets a from_tensors.)
    chunks = chunks.concatenate(tf.data.Dataset.from_tensor_slices(["\n"]))

    def split(state, chunk):
        carry, seen = state
        parts = tf.strings.split(carry + chunk, "\n")
        # A byte order mark before the first line (spreadsheets' "CSV UTF-8") is no data.
        parts = tf.cond(
            tf.equal(seen, 0),
            lambda: tf.concat([tf.strings.regex_replace(parts[:1], "^\ufeff", ""), parts[1:]], 0),
            lambda: parts,
        )
        complete = parts[:-1]
        count = tf.size(complete, out_type=tf.int64)
        numbers = seen + 1 + tf.range(count, dtype=tf.int64)
        # The unfinished line is carried into the next chunk, up to MAX_LINE_BYTES.
        short = _require(
            tf.reshape(tf.strings.length(parts[-1]) <= C.MAX_LINE_BYTES, [1]),
            lambda _: tf.strings.join(
                [name, ":", tf.strings.as_string(seen + count + 1), f": {_TOO_LONG}"]
            ),
        )
        with tf.control_dependencies([short]):
            carry = tf.identity(parts[-1])
        return (carry, seen + count), (numbers, tf.strings.strip(complete))

    def data_rows(numbers, lines):
        # Skip the header, if any, and blank lines; numbers still count them, as an editor would.
        keep = (numbers > header_lines) & (tf.strings.length(lines) > 0)
        return name, tf.boolean_mask(numbers, keep), tf.boolean_mask(lines, keep)

    start = (tf.constant(""), tf.constant(0, tf.int64))
    blocks = chunks.scan(start, _plain(split)).map(_plain(data_rows))
    return blocks.filter(_plain(lambda _p, n, _l: tf.size(n) > 0))


def dataset(
    files,
    batch_size: int,
    *,
    seed: int | None = None,
    repeat: bool = False,
    names: list[str] | None = None,
):
    """Batches of ``(features [b, 4], labels [b])`` streamed from local CSV files.

    ``files`` is one path or a list, read interleaved block by block; ``names`` are what
    messages call them (default: the paths). With ``seed``, rows are shuffled within each
    block and blocks are shuffled too, the same way for the same seed (differently in
    each epoch).
    """
    files = [files] if isinstance(files, str) else list(files)
    names = list(names or files)
    headers = [check_file(path, name) for path, name in zip(files, names, strict=True)]
    sizes = tf.constant([os.path.getsize(path) for path in files], tf.int64)
    blocks = tf.data.Dataset.from_tensor_slices(
        (files, sizes, names, tf.constant(headers, tf.int64))
    )
    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
    blocks = blocks.interleave(
        _plain(_lines), cycle_length=min(len(files), _CYCLE), **(parallel if len(files) > 1 else {})
    )
    if seed is not None:
        blocks = blocks.shuffle(C.SHUFFLE_BLOCKS, seed=seed)
    if repeat:
        blocks = blocks.repeat()
    if seed is None:
        parsed = blocks.map(_plain(_parse_block), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # The block's position in the stream (epochs included) varies the row shuffle.
        parsed = blocks.enumerate().map(
            _plain(lambda i, b: _parse_block(*b, seed=tf.stack([tf.constant(seed, tf.int64), i]))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # AUTOTUNE without the autotuner: parallelism is the core count and the prefetch buffer
    # grows while the consumer waits. The autotuner's own thread, re-planning buffers and
    # parallelism as batches flow, cost more than it found on two cores (2,000,000 rows:
    # 2.05 s against 2.36 s, the consumer alone 1.88 s; BENCHMARKS.md).
    options = tf.data.Options()
    options.autotune.enabled = False
    return parsed.rebatch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)
