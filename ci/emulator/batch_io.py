"""A batch prediction job's data path: instances streamed in, predicted, written to shards.

Kept apart from the resource handlers in :mod:`ci.emulator.batch`: this is the part whose
memory must stay flat as the input grows (lines stream in a batch at a time; output lines
go to local files of at most SHARD_LINES lines, uploaded when the job ends).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

from ci.emulator.httpd import ApiError

DEFAULT_BATCH = 64
SHARD_LINES = 100_000  # lines per output file: bounds what one upload holds


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


def _blobs(client, uris: list[str]):
    """The objects the input URIs name; ``*`` wildcards are expanded, in name order."""
    for uri in uris:
        bucket_name, _, name = uri.removeprefix("gs://").partition("/")
        if "*" not in name:
            yield client.bucket(bucket_name).blob(name)
            continue
        prefix = name.split("*", 1)[0]
        found = client.list_blobs(bucket_name, prefix=prefix)
        yield from sorted((b for b in found if fnmatch.fnmatch(b.name, name)), key=lambda b: b.name)


def batches(client, uris: list[str], size: int):
    """Lists of raw instance lines, ``size`` at a time, streamed from the objects."""
    from google.api_core.exceptions import NotFound

    size = size or DEFAULT_BATCH
    batch: list[str] = []
    for blob in _blobs(client, uris):
        try:
            with blob.open("r", encoding="utf-8", chunk_size=8 << 20) as stream:
                for line in stream:
                    if line.strip():
                        batch.append(line.rstrip("\r\n"))
                        if len(batch) >= size:
                            yield batch
                            batch = []
        except NotFound:
            raise ApiError(
                400,
                f"Input gs://{blob.bucket.name}/{blob.name} does not exist.",
                "FAILED_PRECONDITION",
            ) from None
    if batch:
        yield batch


def predict(predictor, lines: list[str]):
    """``(ok, output line)`` per input line; one bad instance never spoils the others."""
    from ci.errors import CiError

    instances, good = [], []
    for line in lines:
        try:
            instances.append(json.loads(line))
            good.append(line)
        except ValueError as exc:
            yield False, _error(json.dumps(line), f"Not JSON: {exc}")
    if not instances:
        return
    try:
        predictions = predictor.predict(instances)
    except (CiError, ValueError, TypeError):
        predictions = None
    if predictions is not None:
        for line, prediction in zip(good, predictions, strict=True):
            yield True, f'{{"instance": {line}, "prediction": {json.dumps(prediction)}}}'
        return
    for line, instance in zip(good, instances, strict=True):  # find the bad ones
        try:
            prediction = predictor.predict([instance])[0]
        except (CiError, ValueError, TypeError) as exc:
            yield False, _error(line, str(exc).replace("instance 0: ", "", 1))
            continue
        yield True, f'{{"instance": {line}, "prediction": {json.dumps(prediction)}}}'


def _error(instance_json: str, message: str) -> str:
    error = json.dumps({"status": "INVALID_ARGUMENT", "message": message})
    return f'{{"instance": {instance_json}, "error": {error}}}'
