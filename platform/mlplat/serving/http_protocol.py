"""uvicorn's httptools HTTP/1.1 protocol with the limits uvicorn lacks: a request head (request line +
headers) must arrive within `head_timeout_s` and fit in `max_head_bytes`, its body within `body_timeout_s`.

uvicorn has no header or body read timeout: a client sending its headers one byte a second (slowloris)
or stalling mid-body held a connection, and the request's task, for as long as it liked. Its
`h11_max_incomplete_event_size` bounds the head only under the h11 protocol, not under httptools, which
uvicorn picks whenever httptools is installed (it is: `uvicorn[standard]`). Refusals: 431 for a head
over the limit, 408 for a head or body not received in time (a connection that sent nothing is just
closed, as an idle keep-alive one is), each followed by closing the connection. They happen before any
app code runs, so they are counted here, in `mlplat_connection_refusals_total{reason}`.

httptools hands over a header only once it is complete and buffers it until then, so the head's raw bytes
are counted as they arrive too: one endless header line is refused at the limit, not held in memory.
With pipelining (requests sent before the previous answer), the next head is timed from the previous
response, as on an idle keep-alive connection, and never while a request is still being answered; a queued
request's body is timed from when its turn comes, so that its 408 (and the close after it) never goes out
ahead of the earlier answer and cuts it off.

Each response goes out in one write: uvicorn writes the status line and headers as soon as the app
starts the response and the body in a second write, two syscalls and two TCP segments for a small
answer (a 400, a one-row predict) where one will do (issue 14: cheap rejections).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlplat.serving import metrics

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # the only thing uvicorn's cycle writes before a response's head


class HeadWithBodyTransport:
    """One response's view of the connection's transport: the head (the cycle's first write, a 100 Continue
    apart) is held and written together with the body's first write, in one send."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._head_written = False

    def write(self, data: bytes) -> None:
        if self._head_written:
            self._transport.write(data)
        elif self._head is not None:  # the body's first write: the head goes with it
            self._head_written = True
            self._transport.writelines((self._head, data))
        elif data == CONTINUE:
            self._transport.write(data)
        else:
            self._head = bytes(data)

    def close(self) -> None:  # uvicorn closes after a failed or `connection: close` response: what it wrote goes first
        if self._head is not None and not self._head_written:
            self._head_written = True
            self._transport.write(self._head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's own
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_head_bytes: int = 16 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = False  # between a message's first byte and the end of its headers
        self._head_bytes = self._head_raw_bytes = 0
        self._start_timer(self.head_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head:  # the head is still not complete: all of `data` is head, buffered by httptools
            self._head_raw_bytes += len(data)
            if self._head_raw_bytes > self.max_head_bytes:
                self._refuse(431, "head_too_large", f"request line and headers exceed {self.max_head_bytes} bytes")

    # ---- the head: from the connection's start (or the last response) to the end of the headers ------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = self._head_raw_bytes = 0
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
        self._in_head = False
        previous = self.cycle
        super().on_headers_complete()
        # a new request (not a websocket upgrade); a HEAD response has no body write for the head to go with
        if self.cycle is not previous and self.cycle is not None and self.scope["method"] != "HEAD":
            self.cycle.transport = HeadWithBodyTransport(self.transport)  # type: ignore[assignment]
        self._start_timer(self.body_timeout_s, self._body_timed_out)  # the body (if any) is due next

    def _head_timed_out(self) -> None:
        self._timer = None
        if not self._in_head:  # nothing sent: an idle connection, closed without an answer
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
        if any(queued is cycle for queued, _ in self.pipeline):  # an earlier answer is pending: a 408 now would cut it off
            return  # on_response_complete starts this body's timer when the request's turn comes
        if cycle.response_started:  # the app answered already (a 413, say): the rest of the body is not wanted
            self.transport.close()
            return
        self._refuse(408, "body_timeout", f"request body not received within {self.body_timeout_s:g} s")
        cycle.disconnected = True  # the app's receive() returns http.disconnect; nothing more is sent
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts a pipelined request, if one is waiting, and resumes reading
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # nothing is being answered: the next head (perhaps begun already, pipelined) is due from now
            self._start_timer(self.head_timeout_s, self._head_timed_out)
        elif self.cycle.more_body:  # a pipelined request whose body waited behind this answer
            self._start_timer(self.body_timeout_s, self._body_timed_out)

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
