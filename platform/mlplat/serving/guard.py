"""A pure ASGI guard in front of KServe's handlers: wrong content type → 415, body over the
limit → 413, before a byte of JSON is parsed. Every 4xx the predict/explain handlers answer is
counted once in mlplat_rejected_requests_total: with the reason of whoever refused it
(`count_rejection`), else by status code (KServe's decode errors, unknown models, FastAPI's 422s).
A V1 body is checked against the model's schema here too, so a bad one never reaches FastAPI's
routing or KServe (a third of a valid request's cost, not more than one: issue 14's cheap rejections).
Pure ASGI (not BaseHTTPMiddleware) so it costs microseconds per request."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import numpy as np
import orjson

from mlplat.errors import InvalidInput
from mlplat.monitoring.http_metrics import handler_of
from mlplat.serving import metrics
from mlplat.serving.v2_decoding import check_v2_body, inline_binary_bytes, v1_document
from mlplat.serving.validation import checked_request_id

JSON_TYPES = {b"application/json", b"application/cloudevents+json", b"text/json"}
GUARDED = {"predict", "explain"}
ADMIN_PREFIX = "/v2/repository/"  # KServe's model repository routes (index, load, unload): unauthenticated
STATUS_REASONS = {400: "malformed", 404: "not_found", 405: "method_not_allowed", 422: "malformed"}
# the reasons counted during the current guarded request: a mutable list, so code that runs in a copied context
# (a task, a thread) still marks the request as counted
_COUNTED: ContextVar[list[str] | None] = ContextVar("mlplat_counted_rejections", default=None)
# the rows of the current V1 request, validated by the guard: preprocess takes them instead of validating again
PREVALIDATED: ContextVar[np.ndarray | None] = ContextVar("mlplat_prevalidated_rows", default=None)


class RejectionLog:
    """One WARNING line per refused request, no traceback, at most `per_second` lines a second; the
    rest are counted in mlplat_rejection_log_suppressed_total (every refusal is in mlplat_rejected_requests_total)."""

    def __init__(self, per_second: float = 10.0) -> None:
        self.per_second = per_second
        self.logger = logging.getLogger("mlplat.serving.rejected")
        self._lock = threading.Lock()
        self._tokens, self._last = per_second, time.monotonic()

    def __call__(self, model: str, reason: str) -> bool:
        """Log the refusal if the rate allows; True when a line was written."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            allowed = self._tokens >= 1
            if allowed:
                self._tokens -= 1
        if not allowed:
            metrics.REJECTION_LOG_SUPPRESSED.inc()
            return False
        self.logger.warning("request refused: model=%s reason=%s", model, reason)
        return True


REJECTION_LOG = RejectionLog()


@functools.lru_cache(maxsize=1024)  # bounded label values: served model names x reasons
def _rejected(model: str, reason: str) -> Any:
    return metrics.REJECTED.labels(model, reason)


def count_rejection(model: str, reason: str) -> None:
    """Count one refused request and log it (rate-limited); the guard then leaves its 4xx alone."""
    _rejected(model, reason).inc()
    REJECTION_LOG(model, reason)
    counted = _COUNTED.get()
    if counted is not None:
        counted.append(reason)


class RequestGuard:
    """`prevalidate(model name, V1 document)`: the served model's rows for a V1 body (InvalidInput if it
    breaks the schema), or None where the model is not there to answer (KServe then answers 404/503)."""

    def __init__(self, app: Any, max_body_bytes: int, model: str, admin_routes: bool = False,
                 max_values: int = 10_000 * 1024, prevalidate: Callable[[str, Any], np.ndarray | None] | None = None,
                 inline_bytes: bool = False) -> None:
        self.app, self.max_body_bytes, self.model = app, max_body_bytes, model
        self.admin_routes = admin_routes
        self.max_values = max_values  # rows x features of one V2 request, checked before KServe allocates
        self.prevalidate = prevalidate
        self.inline_bytes = inline_bytes  # an image model: binary BYTES tensors become base64 JSON (inline_binary_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.admin_routes and scope["path"].startswith(ADMIN_PREFIX):
            # any client could unload the model: these routes exist only with --enable-model-admin
            await self._reject(send, 404, "admin_disabled", "the model repository routes are disabled "
                                                           "(start the server with --enable-model-admin)")
            return
        model_name, handler = handler_of(scope["path"]) if scope["type"] == "http" else ("", "")
        if handler not in GUARDED:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self._forward(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        binary_v2 = b"inference-header-content-length" in headers and content_type in (b"", b"application/octet-stream")
        if not content_type and not binary_v2:
            # no content type is read as JSON (tritonclient sends none); FastAPI would hand KServe raw bytes
            scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        elif content_type not in JSON_TYPES and not binary_v2:
            shown = content_type.decode("latin-1")
            await self._reject(send, 415, "content_type",
                               f"content type {shown!r} is not supported: send application/json")
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._reject(send, 413, "too_large", f"request body of {length.decode('latin-1')} bytes exceeds "
                                                       f"the {self.max_body_bytes}-byte limit")
            return
        # read the body up to the limit (a chunked upload announces no length), check it strictly, replay it to the app
        parts: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                await self._reject(send, 413, "too_large", f"request body exceeds the {self.max_body_bytes}-byte limit")
                return
        body = b"".join(parts)
        rows = None
        try:
            if scope["path"].endswith("/infer"):
                check_v2_body(body, headers.get(b"inference-header-content-length") if binary_v2 else None,
                              self.max_values)
            else:
                # a V1 body is refused here, before FastAPI's routing and KServe's decoding, which cost a bad
                # request more than a valid one's (batched) forward pass; valid rows go on to preprocess as they are
                document = v1_document(body)
                request_id = headers.get(b"x-request-id")
                if request_id is not None:
                    checked_request_id(request_id.decode("latin-1"), "header x-request-id")
                if self.prevalidate is not None:
                    rows = self.prevalidate(model_name, document)
        except InvalidInput as exc:
            await self._reject(send, 400, exc.reason, str(exc))
            return
        if binary_v2 and self.inline_bytes and scope["path"].endswith("/infer"):
            body, header_length = inline_binary_bytes(body, int(headers[b"inference-header-content-length"]))
            kept = [(k, v) for k, v in scope["headers"]
                    if k not in (b"inference-header-content-length", b"content-length", b"content-type")]
            if header_length is None:
                kept.append((b"content-type", b"application/json"))
            else:
                kept += [(b"inference-header-content-length", str(header_length).encode()),
                         (b"content-type", b"application/octet-stream")]
            scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        token = PREVALIDATED.set(rows)
        try:
            await self._forward(scope, replay, send)
        finally:
            PREVALIDATED.reset(token)

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the app; count a 4xx it answers that nobody counted."""
        counted: list[str] = []
        token = _COUNTED.set(counted)

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500 and not counted:
                count_rejection(self.model, STATUS_REASONS.get(message["status"], f"http_{message['status']}"))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            _COUNTED.reset(token)

    async def _reject(self, send: Any, status: int, reason: str, message: str) -> None:
        count_rejection(self.model, reason)
        body = orjson.dumps({"error": message})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
