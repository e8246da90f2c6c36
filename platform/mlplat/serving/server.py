"""Run a model with KServe's ModelServer: loopback binding, request guard, monitoring, metrics.

KServe's REST server always binds 0.0.0.0; `LoopbackModelServer` binds where it is told
(127.0.0.1 by default). Everything else is KServe's own app, extended through FastAPI's
public hooks: middleware, routers, exception handlers and startup/shutdown events.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.heap import freeze_startup_heap
from mlplat.serving.guard import RequestGuard
from mlplat.serving.predictor import (ExplainBusy, ExplainTimeout, ExplainUnavailable, MlplatModel, PredictorError,
                                      ServingOptions)

if TYPE_CHECKING:
    from mlplat.monitoring.monitor import MonitorSettings


def serve(model_dir: Path, options: ServingOptions, host: str = "127.0.0.1", port: int = 8080,
          max_body_bytes: int = 4 << 20, monitor: MonitorSettings | None = None,
          access_log: bool = False) -> None:
    """Serve until SIGTERM/SIGINT. Blocks. `monitor` None: no drift monitoring."""
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import; our CLI options are not its flags
    import asyncio

    from fastapi.responses import ORJSONResponse
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    from mlplat.monitoring.http_metrics import RequestMetricsMiddleware

    attachment = _attach(model_dir, monitor) if monitor and not options.predictor_url else None
    model = MlplatModel(model_dir, options, attachment.recorder if attachment else None)
    model.load()

    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, model=model.name)
    app.add_middleware(RequestMetricsMiddleware)
    app.add_exception_handler(ExplainUnavailable, _error_handler(404, ORJSONResponse))
    app.add_exception_handler(ExplainTimeout, _error_handler(504, ORJSONResponse))
    app.add_exception_handler(ExplainBusy, _error_handler(503, ORJSONResponse))
    app.add_exception_handler(PredictorError, _error_handler(502, ORJSONResponse))
    hooks: list[tuple[Callable[[], None], Callable[[], None]]] = [(lambda: None, model.stop)]
    if attachment is not None:
        for router in attachment.routers:
            app.include_router(router)
        hooks.append(attachment.hooks)
    _run_with_lifespan(app, hooks)

    class LoopbackModelServer(ModelServer):
        def start(self, models: list[Any]) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                           self.http_port, workers=1, grace_period=self.grace_period,
                                           event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
            self._rest_server.config.host = host
            self.servers.append(self._rest_server.start())
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

        def stop(self, sig: int) -> None:
            if self._rest_server is not None:
                self._rest_server._server.should_exit = True  # uvicorn's graceful exit, runs shutdown events
            super().stop(sig)

    server = LoopbackModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    if not access_log:  # per-request log lines cost more than a small model's forward pass
        for name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    freeze_startup_heap()
    server.start([model])


def _run_with_lifespan(app: Any, hooks: list[tuple[Callable[[], None], Callable[[], None]]]) -> None:
    """Start hooks run when the server starts, stop hooks (reversed) when it shuts down."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        for start, _ in hooks:
            start()
        try:
            async with inner(application) as state:
                yield state
        finally:
            for _, stop in reversed(hooks):
                stop()

    app.router.lifespan_context = lifespan


def _attach(model_dir: Path, settings: MonitorSettings) -> Any:
    from mlplat.monitoring import attach

    return attach(model_dir, settings)


def _error_handler(status: int, response_class: Any) -> Any:
    async def handler(request: Any, exc: Exception) -> Any:
        return response_class(status_code=status, content={"error": str(exc)})

    return handler
