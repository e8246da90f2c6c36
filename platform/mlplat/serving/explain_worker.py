"""Explanations in a child process that can be stopped.

A thread cannot be stopped: a timed-out explanation used to answer 504 and then keep a core busy
(and the process alive past SIGTERM) until it finished on its own. Here the fitted explainer lives
in one spawned child process, loaded once; a timed-out explanation is ended by killing that child,
and a fresh one is started at once (it loads in the background; the next explanation waits for it,
outside its own timeout). The child gets rows over a pipe and sends back JSON-ready explanations
(multiprocessing pickles what goes over the pipe: our own child, never a file); errors come back as
(type name, message), so a serving error keeps its HTTP status.

Spawned, not forked: the server has threads (the forward thread, torch's pools), and a forked child
of a threaded process can deadlock.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from mlplat import errors
from mlplat.contracts.explainer import BoundExplainer

ExplainerFactory = Callable[[], BoundExplainer]  # must pickle: it is called in the child
LOAD_TIMEOUT_S = 300.0  # a child that has not loaded its explainer by then is broken
log = logging.getLogger("mlplat.serving.explain")


def _child(factory: ExplainerFactory, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which then stops this child
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        explainer = factory()
    except Exception as exc:
        conn.send(("failed", type(exc).__name__, str(exc)))
        return
    conn.send(("ready", "", ""))
    while True:
        try:
            rows = conn.recv()
        except EOFError:  # the server is gone
            return
        try:
            conn.send(("done", explainer.explain(rows), ""))
        except Exception as exc:
            conn.send(("failed", type(exc).__name__, str(exc)))


def _raise(kind: str, name: str, message: str) -> None:
    error = getattr(errors, name, None)
    if isinstance(error, type) and issubclass(error, errors.ServingError):  # one message argument, an HTTP status
        raise error(message)
    raise RuntimeError(f"the explanation failed: {name}: {message}")


class ExplainWorker:
    """One child process with the explainer; `explain` runs one explanation at a time in it (the caller
    serialises: MlplatModel answers 503 to a second one)."""

    def __init__(self, factory: ExplainerFactory, name: str) -> None:
        self.factory, self.name = factory, name
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Spawn the child; it loads the explainer in the background. Returns at once."""
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_child, args=(self.factory, child), daemon=True,
                                              name=f"mlplat-explain-{self.name}")
        self._process.start()
        child.close()
        self._conn, self._ready = parent, False

    def stop(self) -> None:
        """Kill the child (an explanation in it ends there) and reap it."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if process is not None:
            process.kill()
            process.join(5)
        if conn is not None:
            conn.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_ready(self, conn: Connection) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not conn.poll(1.0):  # in slices: a stopped worker's pipe is closed, and this thread ends with it
            if conn.closed or time.monotonic() > deadline:
                raise RuntimeError(f"the explain worker did not load its explainer in {LOAD_TIMEOUT_S:g} s")
        kind, name, message = conn.recv()
        if kind != "ready":
            _raise(kind, name, message)

    @staticmethod
    def _call(conn: Connection, rows: np.ndarray) -> list[dict[str, Any]]:
        conn.send(rows)
        kind, result, message = conn.recv()
        if kind != "done":
            _raise(kind, result, message)
        return list(result)

    async def explain(self, rows: np.ndarray, timeout_s: float) -> list[dict[str, Any]]:
        """The explanations of `rows`; past `timeout_s` the child is killed (and a new one started) and
        asyncio.TimeoutError raised. A child that died meanwhile is replaced, and the call fails once.

        A call cancelled while it waits (the server shutting down, say) stops the child too: the thread
        that waits on the pipe cannot be cancelled, and it would take the next call's answer (or the
        child's "ready") off the pipe."""
        if self._process is None or not self._process.is_alive():
            self.restart()
        conn = self._conn
        assert conn is not None
        if not self._ready:  # loading is not the explanation's time
            try:
                await asyncio.to_thread(self._wait_ready, conn)
            except BaseException:  # failed, not loaded in time, or cancelled: the next call starts a fresh child
                self.stop()
                raise
            self._ready = True
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._call, conn, rows), timeout_s)
        except asyncio.TimeoutError:
            log.warning("explanation of %d rows timed out after %g s: explain worker %s killed and restarted",
                        len(rows), timeout_s, self.pid)
            self.restart()
            raise
        except (EOFError, OSError):  # the child died (out of memory, killed from outside)
            self.restart()
            raise RuntimeError("the explain worker died during the explanation; a new one is starting") from None
        except asyncio.CancelledError:
            self.stop()
            raise
