"""Long-running operations: ``google.longrunning.Operation`` records in the store.

Names follow Vertex: ``<resource name>/operations/<id>`` (``.../models/7/operations/9``,
``.../endpoints/3/operations/12``). Every operations method of the discovery document
builds ``v1/<name>`` (``:wait``, ``:cancel``, ``<parent>/operations`` for list), and the
published client libraries poll the same names under ``/ui/`` first, so :meth:`routes`
serves both prefixes with one set of handlers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ci.emulator import listing
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, Request, not_found
from ci.emulator.store import Store, now, public

TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
_PARENT = r"/(?:ui|v1)/(?P<parent>projects/[^/]+/locations/[^/]+(?:/[^/]+/[^/:]+)?)/operations"
_NAME = r"/(?:ui|v1)/(?P<name>projects/[^/]+/locations/[^/]+/(?:[^/]+/[^/]+/)?operations/[^/:]+)"
API = "aiplatform.projects.locations.operations."
MAX_WAIT_SECONDS = 60.0


class Operations:
    """Creates operations, completes them (now or in the background), serves the methods."""

    def __init__(self, store: Store, faults: FaultTable):
        self.store = store
        self.faults = faults
        self._changed = threading.Condition(store.lock)
        self._cancelled: set[str] = set()
        self._released: set[str] = set()  # ended their injected delay early (release())

    def routes(self):
        """(HTTP method, path regex, discovery method id, handler) for each method served."""
        return [
            ("GET", _NAME, API + "get", self.get),
            ("GET", _NAME + ":wait", API + "wait", self.wait),
            ("POST", _NAME + ":wait", API + "wait", self.wait),
            ("POST", _NAME + ":cancel", API + "cancel", self.cancel),
            ("DELETE", _NAME, API + "delete", self.delete),
            ("GET", _PARENT, API + "list", self.list),
        ]

    def run(
        self,
        parent: str,
        kind: str,
        work: Callable[[], dict | Callable[[], dict]],
        *,
        response: str | None = None,
        background: bool = False,
    ) -> dict:
        """Start an operation on ``parent`` whose result is ``work()``'s return value.

        ``kind`` names the messages: ``UploadModel`` → ``UploadModelOperationMetadata``
        and ``UploadModelResponse`` (``response`` overrides the latter's full name).
        Quick work runs inside the request (the answer may already say ``done``); slow
        work (loading a model) runs in ``background``. Background work may return a
        *commit* callable instead of the result: it runs under the store lock at the very
        end, after any injected delay, and only if the operation was not cancelled, so
        the change it makes is the operation's last step (as the resource change is on
        Vertex). Raises the ApiError of quick work directly, as Vertex validates before
        it starts.
        """
        op_id = self.store.new_id()
        response_type = "type.googleapis.com/" + (
            response or f"google.cloud.aiplatform.v1.{kind}Response"
        )
        started = now()
        record = {
            "name": f"{parent}/operations/{op_id}",
            "done": False,
            "metadata": {
                "@type": f"{TYPE_PREFIX}{kind}OperationMetadata",
                "genericMetadata": {"createTime": started, "updateTime": started},
            },
            "_parent": parent,
            "_created": started,
        }
        delay = self.faults.take_operation_delay()
        deadline = time.monotonic() + delay
        if background:
            self.store.save("operations", op_id, record)
            threading.Thread(
                target=self._complete, args=(op_id, response_type, work, deadline), daemon=True
            ).start()
        else:
            result = work()
            if delay:
                self.store.save("operations", op_id, record)
                threading.Thread(
                    target=self._complete,
                    args=(op_id, response_type, lambda: result, deadline),
                    daemon=True,
                ).start()
            else:
                self._done(op_id, record, response_type, result)
        return public(record)

    def pending(self, parent: str, kind: str) -> bool:
        """Whether an operation of ``kind`` on ``parent`` has not finished yet."""
        metadata = f"{TYPE_PREFIX}{kind}OperationMetadata"
        with self.store.lock:
            return any(
                not op["done"]
                and op.get("_parent") == parent
                and op["metadata"]["@type"] == metadata
                for op in self.store.all("operations")
            )

    def _complete(self, op_id: str, response_type: str, work, deadline: float) -> None:
        error = None
        try:
            result = work()
        except ApiError as exc:
            result, error = None, exc.rpc_status()
        except Exception as exc:
            result, error = None, {"code": 13, "message": f"emulator error: {exc!r}"}
        with self._changed:  # an injected delay, if any; a cancel or a release ends it early
            self._changed.wait_for(
                lambda: op_id in self._cancelled or op_id in self._released,
                max(0.0, deadline - time.monotonic()),
            )
            record = self.store.get("operations", op_id)
            if record is None:  # deleted by operations.delete: nobody is waiting for it
                return
            if error is None and op_id in self._cancelled:
                error = {"code": 1, "message": "Operation was cancelled."}
            if error is None and callable(result):
                try:
                    result = result()
                except ApiError as exc:
                    error = exc.rpc_status()
            if error:
                record.update(done=True, error=error)
                self.store.save("operations", op_id, record)
                self._changed.notify_all()
            else:
                self._done(op_id, record, response_type, result)

    def _done(self, op_id: str, record: dict, response_type: str, result: dict) -> None:
        with self._changed:
            record["done"] = True
            record["response"] = {"@type": response_type, **(result or {})}
            record["metadata"]["genericMetadata"]["updateTime"] = now()
            self.store.save("operations", op_id, record)
            self._changed.notify_all()

    def recover(self) -> None:
        """Operations cut short by a dead emulator end with an error, never pending forever."""
        for record in self.store.all("operations"):
            if not record["done"]:
                record.update(
                    done=True,
                    error={"code": 14, "message": "The emulator restarted during this operation."},
                )
                self.store.save("operations", record["name"].rsplit("/", 1)[-1], record)

    # --- handlers ---------------------------------------------------------------------

    def _record(self, request: Request) -> dict:
        name = request.params["name"]
        record = self.store.get("operations", name.rsplit("/", 1)[-1])
        if record is None or record["name"] != name:
            raise not_found(f"Operation {name}")
        return record

    def get(self, request: Request):
        """``operations.get`` for any resource's operations."""
        with self.store.lock:
            return 200, public(self._record(request))

    def wait(self, request: Request):
        """``operations.wait``: the operation once done, or as it is when ``timeout`` ends."""
        timeout = _seconds(request.query.get("timeout"), MAX_WAIT_SECONDS)
        with self._changed:
            record = self._record(request)
            self._changed.wait_for(lambda: record["done"], min(timeout, MAX_WAIT_SECONDS))
            return 200, public(record)

    def cancel(self, request: Request):
        """``operations.cancel``: best effort; a cancelled operation ends with code 1."""
        with self._changed:
            record = self._record(request)
            if not record["done"]:
                self._cancelled.add(record["name"].rsplit("/", 1)[-1])
                self._changed.notify_all()
        return 200, {}

    def release(self) -> int:
        """End every injected delay now (the admin API's ``operations:release``): the
        operations still held finish as their work decided; how many were released."""
        with self._changed:
            records = self.store.all("operations")
            held = [op["name"].rsplit("/", 1)[-1] for op in records if not op["done"]]
            self._released.update(held)
            self._changed.notify_all()
        return len(held)

    def delete(self, request: Request):
        """``operations.delete``: forget the record (the work itself is not stopped)."""
        with self.store.lock:
            record = self._record(request)
            self.store.delete("operations", record["name"].rsplit("/", 1)[-1])
        return 200, {}

    def list(self, request: Request):
        """``operations.list`` of a location or of one resource, newest last, paginated."""
        parent = request.params["parent"]
        location_level = parent.count("/") == 3
        with self.store.lock:
            found = [
                public(op)
                for op in self.store.all("operations")
                if op["name"].startswith(parent + "/")
                and (location_level or op["name"].startswith(parent + "/operations/"))
            ]
        return 200, listing.page("operations", found, request.query, listing.OPERATION_FIELDS)


def _seconds(text: str | None, default: float) -> float:
    """A google.protobuf.Duration in JSON (``"2.5s"``)."""
    if not text:
        return default
    try:
        return max(0.0, float(text.removesuffix("s")))
    except ValueError:
        raise ApiError(400, f"Invalid value for timeout: {text!r}.") from None
