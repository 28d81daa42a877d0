"""Long-running operations: ``google.longrunning.Operation`` records in the store.

Names follow Vertex: ``<resource name>/operations/<id>`` (``.../models/7/operations/9``,
``.../endpoints/3/operations/12``). Every ``operations.get`` method of the discovery
document builds the URL ``v1/<name>``, so one handler answers them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, Request, not_found
from ci.emulator.store import Store, now, public

TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."


class Operations:
    """Creates operations, completes them (now or in the background) and answers get."""

    def __init__(self, store: Store, faults: FaultTable):
        self.store = store
        self.faults = faults

    def run(
        self,
        parent: str,
        kind: str,
        work: Callable[[], dict],
        *,
        response: str | None = None,
        background: bool = False,
    ) -> dict:
        """Start an operation on ``parent`` whose result is ``work()``'s return value.

        ``kind`` names the messages: ``UploadModel`` → ``UploadModelOperationMetadata``
        and ``UploadModelResponse`` (``response`` overrides the latter's full name).
        Quick work runs inside the request (the answer may already say ``done``); slow
        work (loading a model) runs in ``background``.
        Raises the ApiError of quick work directly, as Vertex validates before it starts.
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

    def _complete(self, op_id: str, response_type: str, work, deadline: float) -> None:
        record = self.store.get("operations", op_id)
        try:
            result, error = work(), None
        except ApiError as exc:
            result, error = None, {"code": _rpc_code(exc.status), "message": exc.message}
        except Exception as exc:
            result, error = None, {"code": 13, "message": f"emulator error: {exc!r}"}
        time.sleep(max(0.0, deadline - time.monotonic()))  # an injected delay, if any
        with self.store.lock:
            if error:
                record.update(done=True, error=error)
                self.store.save("operations", op_id, record)
            else:
                self._done(op_id, record, response_type, result)

    def _done(self, op_id: str, record: dict, response_type: str, result: dict) -> None:
        record["done"] = True
        record["response"] = {"@type": response_type, **(result or {})}
        record["metadata"]["genericMetadata"]["updateTime"] = now()
        self.store.save("operations", op_id, record)

    def recover(self) -> None:
        """Operations cut short by a dead emulator end with an error, never pending forever."""
        for record in self.store.all("operations"):
            if not record["done"]:
                record.update(
                    done=True,
                    error={"code": 14, "message": "The emulator restarted during this operation."},
                )
                self.store.save("operations", record["name"].rsplit("/", 1)[-1], record)

    def get(self, request: Request):
        """``operations.get`` for any resource's operations."""
        name = request.params["name"]
        record = self.store.get("operations", name.rsplit("/", 1)[-1])
        if record is None or record["name"] != name:
            raise not_found(f"Operation {name}")
        return 200, public(record)


def _rpc_code(status: str) -> int:
    codes = {
        "INVALID_ARGUMENT": 3,
        "NOT_FOUND": 5,
        "ALREADY_EXISTS": 6,
        "FAILED_PRECONDITION": 9,
        "RESOURCE_EXHAUSTED": 8,
        "INTERNAL": 13,
        "UNAVAILABLE": 14,
    }
    return codes.get(status, 2)
