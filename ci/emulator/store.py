"""State on disk: one JSON file per resource, written atomically, loaded on start.

Layout under ``<state-dir>/vertex/``: ``records/<kind>/<id>.json`` for customJobs, models,
endpoints and operations; ``jobs/<id>/`` for a job's packages and logs; ``model-cache/``
for SavedModels copied out of the storage emulator for predict. Keys starting with ``_``
are the emulator's own bookkeeping (process ids, ...) and never reach a client.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import sys
import threading
from pathlib import Path

# Kinds every emulator has; a new kind (a new API) needs no entry: its folder is made
# on its first save and loaded on start like these.
KINDS = ("customJobs", "models", "endpoints", "operations")
KINDS += ("hyperparameterTuningJobs", "batchPredictionJobs")


def now() -> str:
    """The current time as Vertex writes timestamps (RFC 3339, UTC, microseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Kinds whose records are filed under :func:`key`, not their bare id.
SCOPED = ("models", "endpoints")


def key(name: str) -> str:
    """The store id of ``projects/P/locations/L/<collection>/ID``: ``P~L~ID``. The ids a
    caller chooses (``modelId``, ``endpointId``) are unique only within their project and
    location, so two projects may each have an endpoint ``my-endpoint``."""
    parts = name.split("/")
    return "~".join((parts[1], parts[3], parts[5]))


def public(record: dict) -> dict:
    """A deep copy of ``record`` as Vertex answers it: without the emulator's private ``_``
    keys, and without empty lists and maps (proto3 JSON leaves out an empty repeated or map
    field: an endpoint with no deployed model has no ``deployedModels`` key)."""
    return {
        k: copy.deepcopy(v)
        for k, v in record.items()
        if not k.startswith("_") and v != [] and v != {}
    }


class Store:
    """Resources by kind and id, mirrored to disk on every change.

    One re-entrant lock guards everything: requests are short, and handlers that read,
    check and write a resource hold it across the whole sequence.
    """

    def __init__(self, state_dir: Path):
        self.root = Path(state_dir).resolve() / "vertex"
        self.lock = threading.RLock()
        self._data: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
        self._next_id = 1000
        self.damaged: list[Path] = []
        for kind in KINDS:
            (self.root / "records" / kind).mkdir(parents=True, exist_ok=True)
        for folder in sorted((self.root / "records").iterdir()):
            if folder.is_dir():
                self._load(folder)

    def _load(self, folder: Path) -> None:
        records = self._data.setdefault(folder.name, {})
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or "name" not in record:
                    raise ValueError("not a resource record")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                # One damaged file (a disk filled up, a hand edit) must not cost the other
                # records: set it aside, say so once, keep starting.
                aside = path.with_suffix(".json.damaged")
                os.replace(path, aside)
                self.damaged.append(aside)
                print(
                    f"emulator: warning: {path} is not a valid record ({exc}); "
                    f"moved to {aside.name}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            rid = path.stem
            if folder.name in SCOPED and "~" not in rid:
                # A state directory from before ids were scoped: file it under its new key.
                rid = key(record["name"])
                os.replace(path, path.with_name(f"{rid}.json"))
            records[rid] = record
            last = rid.rsplit("~", 1)[-1]  # models and endpoints: P~L~ID
            if last.isdigit():
                self._next_id = max(self._next_id, int(last) + 1)

    def new_id(self) -> str:
        """A fresh numeric id, unique across kinds and restarts (Vertex ids are numeric)."""
        with self.lock:
            self._next_id += 1
            return str(self._next_id)

    def get(self, kind: str, rid: str) -> dict | None:
        """The live record (mutate it under ``lock``, then :meth:`save`)."""
        return self._data.get(kind, {}).get(rid)

    def all(self, kind: str) -> list[dict]:
        """Records of ``kind`` in creation order."""
        with self.lock:
            records = self._data.get(kind, {}).values()
            return sorted(records, key=lambda r: r.get("createTime", ""))

    def save(self, kind: str, rid: str, record: dict) -> None:
        """Store ``record`` and write it to disk atomically (temp file + rename)."""
        with self.lock:
            if kind not in self._data:
                (self.root / "records" / kind).mkdir(parents=True, exist_ok=True)
            self._data.setdefault(kind, {})[rid] = record
            path = self.root / "records" / kind / f"{rid}.json"
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
            os.replace(tmp, path)

    def delete(self, kind: str, rid: str) -> None:
        """Forget a record and remove its file."""
        with self.lock:
            self._data.get(kind, {}).pop(rid, None)
            (self.root / "records" / kind / f"{rid}.json").unlink(missing_ok=True)

    def job_dir(self, job_id: str) -> Path:
        """Where a job's packages, working directory and logs live."""
        return self.root / "jobs" / job_id

    def cache_dir(self) -> Path:
        """Where exports are copied for predict."""
        return self.root / "model-cache"
