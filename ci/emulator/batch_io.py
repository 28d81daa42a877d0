"""A batch prediction job's data path: instances streamed in, predicted, written to shards.

Kept apart from the resource handlers in :mod:`ci.emulator.batch`: this is the part whose
memory must stay flat as the input grows (lines stream in a batch at a time; output lines
go to local files of at most SHARD_LINES lines, uploaded when the job ends).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ci.emulator import batch_read
from ci.emulator.httpd import RPC_CODES, ApiError

DEFAULT_BATCH = 64
SHARD_LINES = 100_000  # lines per output file: bounds what one upload holds
MAX_PARTIAL_FAILURES = 20  # BatchPredictionJob.partialFailures "never exceeds 20 entries"


class Shards:
    """Result and error lines in local files of at most SHARD_LINES lines each."""

    def __init__(self, folder: Path):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.files = {True: [], False: []}
        self.open = {}
        self.lines = {True: 0, False: 0}

    def write(self, ok: bool, line: str) -> None:
        """Add a result (``ok``) or error line."""
        if self.lines[ok] % SHARD_LINES == 0:
            if ok in self.open:
                self.open[ok].close()
            path = self.folder / f"{'results' if ok else 'errors'}-{len(self.files[ok])}"
            self.files[ok].append(path)
            self.open[ok] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed later)
        self.open[ok].write(line + "\n")
        self.lines[ok] += 1

    def upload(self, client, out_dir: str) -> None:
        """Upload as ``prediction.results-NNNNN-of-NNNNN`` and ``…errors_stats…`` files."""
        for handle in self.open.values():
            handle.close()
        bucket_name, _, folder = out_dir.removeprefix("gs://").partition("/")
        bucket = client.bucket(bucket_name)
        for ok, kind in ((True, "results"), (False, "errors_stats")):
            # Vertex writes both kinds even when one is empty.
            paths = self.files[ok] or [None]
            for i, path in enumerate(paths):
                blob = bucket.blob(f"{folder}/prediction.{kind}-{i:05d}-of-{len(paths):05d}")
                if path is None:
                    blob.upload_from_string(b"", content_type="application/jsonl")
                else:
                    blob.upload_from_filename(str(path), content_type="application/jsonl")


def client(storage_url: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": storage_url},
    )


def _pattern(name: str) -> re.Pattern:
    """Cloud Storage wildcards: ``*`` within one folder level, ``**`` across, ``?`` one
    character (https://cloud.google.com/storage/docs/wildcards)."""
    parts = re.split(r"(\*\*|\*|\?)", name)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(p) or re.escape(p) for p in parts))


def _blobs(client, uris: list[str]):
    """The objects the input URIs name, wildcards expanded in name order; a wildcard that
    matches nothing fails the job, as a named object that does not exist does."""
    from google.api_core.exceptions import NotFound

    for uri in uris:
        bucket_name, _, name = uri.removeprefix("gs://").partition("/")
        if "*" not in name and "?" not in name:
            yield client.bucket(bucket_name).blob(name)
            continue
        prefix, pattern = re.split(r"[*?]", name, maxsplit=1)[0], _pattern(name)
        try:
            found = sorted(b.name for b in client.list_blobs(bucket_name, prefix=prefix))
        except NotFound:
            found = []
        matched = [n for n in found if pattern.fullmatch(n)]
        if not matched:
            raise ApiError(400, f"No objects match the input URI {uri}.", "INVALID_ARGUMENT")
        for blob_name in matched:
            yield client.bucket(bucket_name).blob(blob_name)


def items(client, uris: list[str], fmt: str, shape, failures: list[dict]):
    """Every input instance as a :class:`batch_read.Item`, in input order. A file whose
    content cannot be read is added to ``failures`` (``partialFailures``); the job goes on."""
    from google.api_core.exceptions import NotFound

    for blob in _blobs(client, uris):
        uri = f"gs://{blob.bucket.name}/{blob.name}"
        try:
            with blob.open("rb", chunk_size=batch_read.CHUNK) as stream:
                if fmt == "jsonl":
                    yield from batch_read.jsonl(stream, shape)
                elif fmt == "csv":
                    yield from batch_read.csv_rows(stream, shape, uri)
                elif fmt == "file-list":
                    yield from batch_read.file_list(stream, client)
                else:
                    yield from batch_read.tf_records(stream, uri, fmt == "tf-record-gzip")
        except NotFound:
            raise ApiError(400, f"Input {uri} does not exist.", "FAILED_PRECONDITION") from None
        except batch_read.Unreadable as exc:
            if len(failures) < MAX_PARTIAL_FAILURES:
                failures.append({"code": RPC_CODES["INVALID_ARGUMENT"], "message": str(exc)})


def batches(stream, size: int):
    """Lists of ``size`` items (the last one shorter)."""
    size = size or DEFAULT_BATCH
    batch = []
    for item in stream:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(predictor, batch: list):
    """``(ok, output line)`` per item, in input order; one bad instance never spoils the
    others."""
    from ci.errors import CiError

    good = [item for item in batch if not item.error]
    try:
        predictions = predictor.predict([item.instance for item in good]) if good else []
    except (CiError, ValueError, TypeError):
        predictions = None
    answers = dict(zip(map(id, good), predictions or [], strict=False))
    for item in batch:
        if item.error:
            yield False, _error(item.head, item.status, item.error)
            continue
        if predictions is None:  # find the bad ones
            try:
                answers[id(item)] = predictor.predict([item.instance])[0]
            except (CiError, ValueError, TypeError) as exc:
                message = str(exc).replace("instance 0: ", "", 1)
                yield False, _error(item.head, item.status, message)
                continue
        yield True, f'{{{item.head}, "prediction": {json.dumps(answers[id(item)])}}}'


def _error(head: str, status: str, message: str) -> str:
    return f'{{{head}, "error": {json.dumps({"status": status, "message": message})}}}'
