"""Request counts and latency by model, handler and status code: the error-ratio alert's input.

A pure ASGI middleware, so any server (the predictor, the explainer, the monitor) wraps its
app in one line: `app.add_middleware(RequestMetricsMiddleware)`. The model comes from the
KServe-style path `/v1/models/<model>[:verb|/...]` or `/v2/models/<model>[/versions/<v>]/...`.

Labels come from a fixed set, whatever a client puts in the path: a model the server does not serve
is labelled UNKNOWN_MODEL and a verb no route has is "other", so made-up names cannot grow /metrics
(15,656 random names once grew it from 26 KB to 27.7 MB, issue 14).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from typing import Any

from prometheus_client import Counter, Histogram

REQUESTS = Counter("mlplat_http_requests", "HTTP requests by model, handler and status code", ["model", "handler", "code"])
LATENCY = Histogram("mlplat_http_request_duration_seconds", "HTTP request latency by model and handler", ["model", "handler"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
_PATH = re.compile(r"^/v[12]/models/([^/:]+)(?:/versions/[^/]+)?(?::(\w+)|/(\w+))?")  # KServe routes V2 with and without it
_V2_VERBS = {"infer": "predict"}
HANDLERS = frozenset({"predict", "explain", "feedback", "monitor", "metadata", "ready", "events", "other"})
UNKNOWN_MODEL = "_unknown"


def handler_of(path: str) -> tuple[str, str]:
    """(model, handler) for a request path; handler is predict, explain, feedback, monitor or other."""
    match = _PATH.match(path)
    if not match:
        return "", "events" if path in ("/", "/events") else "other"
    verb = match.group(2) or match.group(3) or "metadata"
    return match.group(1), _V2_VERBS.get(verb, verb)


class RequestMetricsMiddleware:
    """`models`: the model names this server answers for; any other name is labelled UNKNOWN_MODEL.
    None keeps every name (only for servers whose routes refuse unknown models before this runs)."""

    def __init__(self, app: Any, models: Collection[str] | None = None) -> None:
        self.app, self.models = app, models

    def labels(self, path: str) -> tuple[str, str]:
        model, handler = handler_of(path)
        if handler not in HANDLERS:
            handler = "other"
        if model and self.models is not None and model not in self.models:
            model = UNKNOWN_MODEL
        return model, handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        model, handler = self.labels(scope.get("path", ""))
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            REQUESTS.labels(model, handler, str(status["code"])).inc()
            LATENCY.labels(model, handler).observe(time.perf_counter() - started)
