"""Wiring: the storage emulator, the store, the Vertex handlers and the HTTP server."""

from __future__ import annotations

import sys
import threading
from functools import partial
from pathlib import Path

from ci.emulator import locations, masks, schema
from ci.emulator.batch import BatchJobs
from ci.emulator.endpoints_api import Endpoints
from ci.emulator.faults import FaultTable
from ci.emulator.httpd import ApiError, QuickStop, Request, Route, Router, Server
from ci.emulator.jobs import JobRunner
from ci.emulator.jobs_api import CustomJobs
from ci.emulator.models_api import Models
from ci.emulator.objects import Objects
from ci.emulator.operations import Operations
from ci.emulator.pipelines_api import TrainingPipelines
from ci.emulator.predict import ModelCache
from ci.emulator.store import Store
from ci.emulator.tuning import TuningJobs


def _storage_server(port: int, data_dir: Path, faults: FaultTable) -> QuickStop:
    """gcp-storage-emulator's request handler and file store on 127.0.0.1:``port``, one
    request at a time as its own server serves them (its ``Server`` would stop slowly),
    behind the fault table (:mod:`ci.emulator.storage_faults`)."""
    from gcp_storage_emulator.storage import Storage

    from ci.emulator.storage_faults import FaultyHandler

    storage = Storage(use_memory_fs=False, data_dir=str(data_dir))
    server = QuickStop(("127.0.0.1", port), partial(FaultyHandler, storage, faults))
    server.objects = Objects(storage)
    return server


class Emulator:
    """Both servers of ``python -m ci emulator``, started and stopped together."""

    def __init__(
        self,
        state_dir: Path,
        vertex_port=0,
        storage_port=0,
        max_local_replicas=None,
        serving_runtime="local",
        warm_up=None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.vertex_port, self.storage_port = vertex_port, storage_port
        self.max_local_replicas = max_local_replicas
        self.serving_runtime = serving_runtime
        self.faults = FaultTable()
        self.warm_up = warm_up
        self._warming = threading.Lock()  # held for good once the warm-up has started

    def start(self) -> None:
        """Start Cloud Storage, recover state, then serve Vertex AI (all in threads)."""
        data_dir = self.state_dir / "storage"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = _storage_server(self.storage_port, data_dir, self.faults)  # OSError if taken
        host, port = self.storage.server_address[:2]
        self.storage_url = f"http://{host}:{port}"
        threading.Thread(target=self.storage.serve_forever, name="storage", daemon=True).start()

        try:
            self.store = Store(self.state_dir)
            self.runner = JobRunner(
                self.store, self.storage_url, self.storage.objects.read, self.max_local_replicas
            )
            self.runner.recover()
            if self.warm_up is not None:
                self.runner.on_running.append(self._warm_up)
            self.operations = Operations(self.store, self.faults)
            self.operations.recover()
            self.vertex = Server(self.vertex_port, self._router())
        except BaseException:
            self._stop_storage()
            raise
        self._thread = threading.Thread(
            target=self.vertex.serve_forever, name="vertex", daemon=True
        )
        self._thread.start()

    def _warm_up(self, job_id: str) -> None:
        # Start what serving the job's export will need while the first job trains, so the
        # deploy after it does not wait for it: TensorFlow here, or under the image runtime
        # the worker of the serving image's TensorFlow (--warm-up IMAGE). Not sooner: the
        # import holds the interpreter (or a core) for seconds, and the job's start (package
        # download, spawning) would wait behind it. Without --warm-up the first model load
        # does it (most `ci` commands never need it).
        if self._warming.acquire(blocking=False):
            threading.Thread(target=self._warm, name="warm-up", daemon=True).start()

    def _warm(self) -> None:
        if self.serving_runtime == "image":
            from ci.emulator import runtime

            if runtime.warm_up(self.warm_up, self.store.cache_dir()):
                return
        _import_serving()

    @property
    def vertex_url(self) -> str:
        """The Vertex AI emulator's base URL."""
        return self.vertex.url

    def stop(self) -> None:
        """Stop serving, end running jobs (their processes are terminated), stop storage."""
        self.vertex.shutdown()
        self.vertex.server_close()
        self.tuning.shutdown()  # before the runner: no trial may start once it stops
        self.runner.shutdown()
        self._stop_storage()

    def _stop_storage(self) -> None:
        self.storage.shutdown()
        self.storage.server_close()

    def _router(self) -> Router:
        router = Router()
        models = Models(self.store, self.operations)
        cache = ModelCache(
            self.store.cache_dir(), self.storage_url, self.storage.objects, self.serving_runtime
        )
        jobs = CustomJobs(self.store, self.faults, self.runner, self.operations)
        pipelines = TrainingPipelines(self.store, jobs, models, self.operations)
        pipelines.recover()
        resources = [
            jobs,
            models,
            Endpoints(self.store, self.operations, models, cache),
            pipelines,
        ]
        self.tuning = TuningJobs(self.store, self.runner, self.operations, self.faults)
        batch = BatchJobs(self.store, self.operations, models, cache, self.faults)
        resources += [self.tuning, batch]
        for resource in resources:
            for http_method, pattern, method_id, handler in resource.routes():
                wanted = schema.request_schema(method_id) if method_id[0] != "_" else None
                router.add(http_method, pattern, method_id, handler, wanted)
        for http_method, pattern, method_id, handler in self.operations.routes():
            router.add(http_method, pattern, method_id, handler)
        for http_method, pattern, method_id, handler in locations.routes():
            router.add(http_method, pattern, method_id, handler)
        router.add("GET", "/_emulator/faults", "_emulator.faults.list", self._faults_list)
        router.add("POST", "/_emulator/faults", "_emulator.faults.add", self._faults_add)
        router.add("DELETE", "/_emulator/faults", "_emulator.faults.clear", self._faults_clear)
        router.add(
            "POST", "/_emulator/operations:release", "_emulator.operations.release", self._release
        )
        router.add("GET", "/_emulator/health", "_emulator.health", self._health)
        router.unserved = partial(_unserved, frozenset(route.method_id for route in router.routes))
        router.before.append(self._before)
        router.after.append(self._after)
        router.acted.append(self._acted)
        return router

    def _before(self, route: Route, request: Request) -> None:
        if route.method_id.startswith("aiplatform."):
            # Injected faults come first: a real 429/503 arrives before any validation.
            self.faults.check_call(route.method_id)
            locations.check(route.method_id, request.raw_path)
            schema.check_query(route.method_id, request.query)
            if route.request_schema:
                partial = route.method_id.endswith(".patch")
                mask = request.query.get("updateMask") if partial else None
                # mutateDeployedModel's DeployedModel carries only its update mask's fields.
                deep = route.method_id.endswith(".mutateDeployedModel")
                request.body = schema.validate(
                    route.request_schema, request.body, partial, mask, deep
                )

    def _acted(self, route: Route, request: Request) -> None:
        # A fault "after": the call was carried out; its answer is lost all the same.
        if route.method_id.startswith("aiplatform."):
            self.faults.check_call(route.method_id, after=True)

    def _after(self, route: Route, request: Request, body):
        if not route.method_id.startswith("aiplatform."):
            return body
        # proto3 JSON clients may ask for enums as numbers ($alt=json;enum-encoding=int).
        alt = request.query.get("$alt") or request.query.get("alt") or ""
        wanted = schema.response_schema(route.method_id)
        if "enum-encoding=int" in alt and wanted:
            body = schema.encode_enums(wanted, body)
        # Google's `fields` system parameter: a partial response.
        selector = request.query.get("fields") or request.query.get("$fields")
        if selector and isinstance(body, dict):
            body = masks.partial_response(body, selector)
        return body

    def _health(self, request: Request):
        # Whether serving has started to import TensorFlow (--warm-up or a model load did),
        # here and in the serving image's workers (--serving-runtime image).
        from ci.emulator import runtime

        return 200, {
            "ok": True,
            "tensorflow": "tensorflow" in sys.modules,
            "serving_workers": runtime.workers(),
        }

    def _faults_list(self, request: Request):
        return 200, {"faults": self.faults.listing()}

    def _faults_add(self, request: Request):
        if not isinstance(request.body, dict):
            raise ApiError(400, "expected a JSON object describing one fault")
        return 200, self.faults.add(request.body)

    def _release(self, request: Request):
        return 200, {"released": self.operations.release()}

    def _faults_clear(self, request: Request):
        self.faults.clear()
        return 200, {}


def _unserved(served: frozenset[str], http_method: str, path: str) -> ApiError | None:
    """The error for a path no route took: a location Vertex does not serve is refused
    first, as for a served method; then :func:`schema.not_emulated` says why."""
    method_id = schema.documented(http_method, path)
    if method_id is not None:
        try:
            locations.check(method_id, path)
        except ApiError as exc:
            return exc
    return schema.not_emulated(http_method, path, served)


def _import_serving() -> None:
    from ci import serving

    serving.import_tensorflow()
