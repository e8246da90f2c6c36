"""Serve a model with KServe: an app built per model directory, run by KServe's ModelServer on loopback.

`build_app` assembles a fresh FastAPI app from KServe's own pieces (a ModelRepository, a DataPlane
and the routes, handlers and middleware its RESTServer installs) plus mlplat's request guard,
request metrics, monitoring routes and one handler for every `MlplatError`. It touches no global:
not kserve's module-level app, not `sys.argv` (kserve parses it at import with `parse_known_args`,
which leaves `mlplat serve`'s options alone), so tests build servers in-process.

`serve` runs such an app with KServe's ModelServer and uvicorn config, bound where it is told (127.0.0.1
by default; KServe's own REST server always binds 0.0.0.0), and shuts it down as `shutdown` describes:
readiness off, drain, in-flight requests finished, exit 0.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from mlplat.heap import freeze_startup_heap
from mlplat.monitoring.http_metrics import RequestMetricsMiddleware
from mlplat.serving.guard import RequestGuard
from mlplat.serving.http_errors import add_error_handler, quiet_kserve_handlers
from mlplat.serving.image_requests import ImageSchema
from mlplat.serving.predictor import MlplatModel, ServingOptions

if TYPE_CHECKING:
    from mlplat.monitoring.monitor import MonitorSettings

MAX_HEAD_BYTES = 16 * 1024  # request line + headers: a 60 kB x-request-id on 5,000 rows once made a 300 MB answer
KEEP_ALIVE_S = 5  # idle keep-alive connections close after this

Hook = tuple[Callable[[], None], Callable[[], None]]  # (on startup, on shutdown)


class ReadTimeouts(NamedTuple):
    head_timeout_s: float = 10.0  # request line + headers, from the connection's start or the last response
    body_timeout_s: float = 30.0  # the whole body, from the end of the headers


class ServingApp(NamedTuple):
    app: FastAPI
    model: MlplatModel  # loaded and registered
    repository: ModelRepository  # what the app's KServe routes look models up in
    dataplane: ServingDataPlane  # what they answer with; `drain()` turns readiness off


class ServedRepository(ModelRepository):
    """The one model this server was built for. `load` (an admin route, off by default) rebuilds it
    after an unload; any other name is not loadable, since this server serves exactly one model directory."""

    def __init__(self, rebuild: Callable[[], MlplatModel]) -> None:
        super().__init__()
        self.rebuild = rebuild

    def load(self, name: str) -> bool:
        current = self.get_model(name)
        if current is not None:
            return bool(current.ready)
        model = self.rebuild()
        if model.name != name:
            model.stop()
            return False
        self.update(model)
        return bool(model.ready)


class ServingDataPlane(DataPlane):
    """KServe's data plane, but ready only while the served model is registered, loaded and answering.

    KServe's own `ready()` is always True without a predictor host, so an unloaded model left the
    readiness probe green while every predict answered 404 (issue 14)."""

    def __init__(self, model_registry: ModelRepository, model_name: str) -> None:
        super().__init__(model_registry=model_registry)
        self.model_name = model_name
        self.draining = False  # set on SIGTERM: not ready, while in-flight and last requests are still served

    def drain(self) -> None:
        self.draining = True

    def answering(self) -> bool:
        model = self._model_registry.get_model(self.model_name)
        return isinstance(model, MlplatModel) and model.answering()

    async def ready(self) -> bool:
        if self.draining or not self.answering():
            return False
        predictor_url = self._model_registry.get_model(self.model_name).options.predictor_url
        return await _predictor_ready(predictor_url) if predictor_url else True

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        if model_name == self.model_name:  # unloaded: not ready (503), not unknown (404)
            return self.answering()
        return await super().model_ready(model_name, disable_predictor_health_check)


class PrebuiltRESTServer(RESTServer):
    """KServe's REST server (uvicorn config, graceful shutdown) for an app built by `build_app`.

    `RESTServer.create_application` installs KServe's middleware, routes and exception handlers on
    kserve's module-level app; `install` puts the same ones on the app it is given instead."""

    def install(self, app: FastAPI, timings: bool = True) -> None:
        if timings:  # KServe's timing middleware: a kserve.trace line per request, and a match against every route
            self._add_middlewares(app)
        self._register_endpoints(app)
        self._add_exception_handlers(app)
        quiet_kserve_handlers(app)

    def create_application(self) -> None:
        """Nothing left to create: the app this server runs was installed by `build_app`."""


def build_app(model_dir: Path, options: ServingOptions, max_body_bytes: int = 4 << 20,
              monitor: MonitorSettings | None = None, enable_model_admin: bool = False,
              alias: str | None = None, timings: bool = False) -> ServingApp:
    """A new ASGI app serving the model in `model_dir`: V1/V2 predict, explain, metadata, health, /metrics,
    and with `monitor` the feedback and monitor routes. The app's lifespan starts and stops the monitor's
    background evaluation and the model's worker threads.

    KServe's model repository routes (/v2/repository/..., which let any client unload the model) exist
    only with `enable_model_admin`; without it the request guard answers them 404. `alias`: a second name the
    model answers to (KServe's --model_name, the InferenceService's name). `timings`: KServe's per-request timing
    lines (`--access-log`); without them its timing middleware is not installed, as its lines would be dropped."""
    attachment = _attach(model_dir, monitor) if monitor and not options.predictor_url else None

    def new_model() -> MlplatModel:
        built = MlplatModel(model_dir, options, attachment.recorder if attachment else None)
        built.load()
        return built

    model = new_model()
    repository = ServedRepository(new_model)
    repository.update(model)
    names = {model.name}
    if alias and alias != model.name:
        repository.update(model, name=alias)
        names.add(alias)

    def stop_served() -> None:
        served = repository.get_model(model.name)
        for each in {id(m): m for m in (model, served) if isinstance(m, MlplatModel)}.values():
            each.stop()

    hooks: list[Hook] = [(lambda: None, stop_served)]
    if attachment is not None:
        hooks.append(attachment.hooks)
    app = FastAPI(title="KServe ModelServer", version=metadata.version("kserve"), docs_url=None, redoc_url=None,
                  default_response_class=ORJSONResponse, lifespan=_lifespan(hooks))
    add_error_handler(app)
    for router in attachment.routers if attachment is not None else []:
        app.include_router(router)
    dataplane = ServingDataPlane(repository, model.name)
    PrebuiltRESTServer(app, dataplane, ModelRepositoryExtension(model_registry=repository), http_port=0).install(app, timings)

    def prevalidate(name: str, document: Any) -> np.ndarray | None:
        """The V1 rows, from the model serving `name` now; None where none answers (KServe's 404/503 then)."""
        served = repository.get_model(name) if name in names else None
        if not isinstance(served, MlplatModel) or not served.answering() or isinstance(served.schema, ImageSchema):
            return None  # images are decoded once, in preprocess
        return served.schema.v1_rows(document)

    # added last, so they run outside KServe's timing middleware, which matches every request against every route
    # (for trace lines that are off by default): a refused request never pays for that
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, model=model.name, admin_routes=enable_model_admin,
                       max_values=options.max_request_rows * model.schema.width, prevalidate=prevalidate,
                       inline_bytes=model.images)
    app.add_middleware(RequestMetricsMiddleware, models=frozenset(names))
    return ServingApp(app, model, repository, dataplane)


def serve(model_dir: Path, options: ServingOptions, host: str = "127.0.0.1", port: int = 8080,
          max_body_bytes: int = 4 << 20, monitor: MonitorSettings | None = None,
          access_log: bool = False, enable_model_admin: bool = False, alias: str | None = None,
          drain_s: float = 0.0, shutdown_timeout_s: int = 35, limits: ReadTimeouts = ReadTimeouts()) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (`shutdown.serve_gracefully`: `drain_s` seconds
    not ready but serving, then at most `shutdown_timeout_s` for in-flight requests). Blocks. `monitor` None: no
    drift monitoring. The explainer role first waits for its predictor (KServe starts both at once), so nothing
    listens, and the readiness probe fails, meanwhile."""
    import asyncio

    from kserve import ModelServer

    from mlplat.serving.http_protocol import protocol_class
    from mlplat.serving.shutdown import GracefulServer, serve_gracefully

    if options.predictor_url:
        wait_for_predictor(options.predictor_url)
    served = build_app(model_dir, options, max_body_bytes, monitor, enable_model_admin, alias, timings=access_log)

    class LoopbackModelServer(ModelServer):
        def start(self, models: list[Any]) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = PrebuiltRESTServer(served.app, self.dataplane, self.model_repository_extension,
                                                   self.http_port, workers=1, grace_period=self.grace_period,
                                                   event_loop=self.event_loop,
                                                   timeout_keep_alive=self.timeout_keep_alive)
            config = self._rest_server.config
            config.host = host
            # head size, head and body read timeouts: uvicorn has none of its own (http_protocol)
            config.http = protocol_class(limits.head_timeout_s, limits.body_timeout_s, MAX_HEAD_BYTES)
            config.h11_max_incomplete_event_size = MAX_HEAD_BYTES
            config.timeout_keep_alive = KEEP_ALIVE_S
            config.timeout_graceful_shutdown = shutdown_timeout_s
            # not KServe's signal handlers: they unload the model at once, failing the requests still in flight
            server = GracefulServer(config)
            self.setup_event_loop()
            asyncio.run(serve_gracefully([server], drain_s, served.dataplane.drain))

    server = LoopbackModelServer(http_port=port, registered_models=served.repository, enable_grpc=False, workers=1,
                                 enable_latency_logging=False)
    if not access_log:  # per-request log lines cost more than a small model's forward pass
        for name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    freeze_startup_heap()
    server.start([served.model])


async def _predictor_ready(base_url: str) -> bool:
    """The explainer role is ready only while its predictor is: every explanation asks it."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"{base_url.rstrip('/')}/v2/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_predictor(base_url: str, first_wait_s: float = 0.5, max_wait_s: float = 10.0,
                       give_up_s: float | None = None) -> bool:
    """Block until the predictor at `base_url` answers ready, retrying with exponential backoff; one log line
    per attempt, no traceback. False if `give_up_s` passed first."""
    import time

    import httpx

    log = logging.getLogger("mlplat.serve")
    url, wait, started = f"{base_url.rstrip('/')}/v2/health/ready", first_wait_s, time.monotonic()
    while True:
        try:
            status = httpx.get(url, timeout=2).status_code
            if status == 200:
                return True
            problem = f"answered HTTP {status}"
        except httpx.HTTPError as exc:
            problem = f"unreachable ({type(exc).__name__})"
        if give_up_s is not None and time.monotonic() - started + wait > give_up_s:
            return False
        log.warning("predictor %s not ready: %s; retrying in %.1f s", url, problem, wait)
        time.sleep(wait)
        wait = min(max_wait_s, wait * 2)


def _lifespan(hooks: list[Hook]) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Start hooks run when the server starts, stop hooks (reversed) when it shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for start, _ in hooks:
            start()
        try:
            yield
        finally:
            for _, stop in reversed(hooks):
                stop()

    return lifespan


def _attach(model_dir: Path, settings: MonitorSettings) -> Any:
    from mlplat.monitoring import attach

    return attach(model_dir, settings)
