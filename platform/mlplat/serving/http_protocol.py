"""uvicorn's httptools HTTP/1.1 protocol with the limits uvicorn lacks: a request head (request line +
headers) must arrive within `head_timeout_s` and fit in `max_head_bytes`, its body within `body_timeout_s`.

uvicorn has no header or body read timeout: a client sending its headers one byte a second (slowloris)
or stalling mid-body held a connection, and the request's task, for as long as it liked. Its
`h11_max_incomplete_event_size` bounds the head only under the h11 protocol, not under httptools, which
uvicorn picks whenever httptools is installed (it is: `uvicorn[standard]`). Refusals: 431 for a head
over the limit, 408 for a head or body not received in time (a connection that sent nothing is just
closed, as an idle keep-alive one is), each followed by closing the connection. They happen before any
app code runs, so they are counted here, in `mlplat_connection_refusals_total{reason}`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlplat.serving import metrics


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_head_bytes: int = 16 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    # ---- the head: from the connection's start (or the last response) to the end of the headers ------------
    def _await_head(self) -> None:
        self._head_bytes, self._head_started = 0, False
        self._start_timer(self.head_timeout_s, self._head_timed_out)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refuse(431, "head_too_large", f"request line and headers exceed {self.max_head_bytes} bytes")
            raise ValueError("head too large")  # stops the parser; uvicorn's 400 after it is dropped (_refused)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._start_timer(self.body_timeout_s, self._body_timed_out)  # the body (if any) is due next

    def _head_timed_out(self) -> None:
        self._timer = None
        if not self._head_started:  # nothing sent: an idle connection, closed without an answer
            metrics.CONNECTION_REFUSALS.labels("idle").inc()
            self.transport.close()
            return
        self._refuse(408, "head_timeout", f"request headers not received within {self.head_timeout_s:g} s")

    # ---- the body --------------------------------------------------------------------------------------
    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body:
            return
        if cycle.response_started:  # the app answered already (a 413, say): the rest of the body is not wanted
            self.transport.close()
            return
        self._refuse(408, "body_timeout", f"request body not received within {self.body_timeout_s:g} s")
        cycle.disconnected = True  # the app's receive() returns http.disconnect; nothing more is sent
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_head()  # the next request's head, on this keep-alive connection

    # ---- helpers -----------------------------------------------------------------------------------------
    def _start_timer(self, seconds: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()  # type: ignore[union-attr]
            self._timer = None

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        metrics.CONNECTION_REFUSALS.labels(reason).inc()
        body = b'{"error": "' + message.encode() + b'"}'
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)


def protocol_class(head_timeout_s: float, body_timeout_s: float, max_head_bytes: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol with these limits, for uvicorn.Config(http=...)."""
    return type("ConfiguredHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"head_timeout_s": head_timeout_s, "body_timeout_s": body_timeout_s, "max_head_bytes": max_head_bytes})
