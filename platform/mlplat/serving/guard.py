"""A pure ASGI guard in front of KServe's handlers: wrong content type → 415, body over the
limit → 413, before a byte of JSON is parsed. Pure ASGI (not BaseHTTPMiddleware) so it costs
microseconds per request."""

from __future__ import annotations

from typing import Any

import orjson

from mlplat.monitoring.http_metrics import handler_of
from mlplat.serving import metrics

JSON_TYPES = {b"application/json", b"application/cloudevents+json", b"text/json"}
GUARDED = {"predict", "explain"}


class RequestGuard:
    def __init__(self, app: Any, max_body_bytes: int, model: str) -> None:
        self.app, self.max_body_bytes, self.model = app, max_body_bytes, model

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or handler_of(scope["path"])[1] not in GUARDED:
            await self.app(scope, receive, send)
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
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await self._reject(send, 413, "too_large", f"request body of {length.decode('latin-1')} bytes exceeds "
                                                           f"the {self.max_body_bytes}-byte limit")
                return
            await self.app(scope, receive, send)
            return
        # chunked upload: read it up to the limit, then replay it to the app
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._reject(send, 413, "too_large", f"request body exceeds the {self.max_body_bytes}-byte limit")
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, send: Any, status: int, reason: str, message: str) -> None:
        metrics.REJECTED.labels(self.model, reason).inc()
        body = orjson.dumps({"error": message})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
