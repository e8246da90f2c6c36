"""Graceful shutdown for `mlplat serve` and `mlplat monitor` within a pod's grace period.

On SIGTERM (or SIGINT): readiness turns false at once (`on_drain`), the servers keep serving for
`drain_s` seconds, so the endpoints controller takes the pod out of its Service before anything is
refused (the in-process equivalent of a `preStop: sleep`), then uvicorn's own graceful shutdown:
the listeners close (new connections are refused), idle keep-alive connections close, in-flight
requests finish (at most `timeout_graceful_shutdown` seconds), and the lifespan shutdown runs (the
monitor saves its state, the model's workers stop). The process then exits 0.

uvicorn's `Server.serve` installs its own handlers and, after shutting down, re-raises the signal to
whatever handler was there before: the default one for a plain process (death by SIGTERM, exit 143),
and with two servers in one process (the monitor's events port) only the last one started ever saw
the signal. Here one handler stops every server, and nothing is re-raised. A second signal skips
what is left of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Generator, Sequence

import uvicorn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("mlplat.shutdown")


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose signals `serve_gracefully` handles."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_gracefully(servers: Sequence[GracefulServer], drain_s: float = 0.0,
                           on_drain: Callable[[], None] = lambda: None) -> None:
    """Run `servers` until SIGTERM/SIGINT, then drain and shut them down as described above."""
    loop = asyncio.get_running_loop()
    draining = False

    def stop_servers() -> None:
        for server in servers:
            server.should_exit = True

    def on_signal(sig: signal.Signals) -> None:
        nonlocal draining
        if draining:  # a second signal: no more waiting for the drain
            stop_servers()
            return
        draining = True
        on_drain()
        log.warning("%s: not ready; serving %.1f s more, then finishing in-flight requests", sig.name, drain_s)
        loop.call_later(drain_s, stop_servers)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


def server_config(app: object, host: str, port: int, shutdown_timeout_s: int, head_timeout_s: float = 10.0,
                  body_timeout_s: float = 30.0, **options: object) -> uvicorn.Config:
    """A uvicorn config for a plain mlplat service (the monitor): warnings only, bounded graceful shutdown,
    head size and read timeouts (`http_protocol`), idle keep-alive connections closed after 5 s."""
    from mlplat.serving.http_protocol import protocol_class
    from mlplat.serving.server import KEEP_ALIVE_S, MAX_HEAD_BYTES

    return uvicorn.Config(app, host=host, port=port, log_level="warning",  # type: ignore[arg-type]
                          timeout_graceful_shutdown=shutdown_timeout_s, timeout_keep_alive=KEEP_ALIVE_S,
                          http=protocol_class(head_timeout_s, body_timeout_s, MAX_HEAD_BYTES),
                          **options)  # type: ignore[arg-type]
