"""HTTP face of the monitor: feedback, KServe payload-logger CloudEvents, summary, report.

`router(monitors, policy)` is mounted both by `mlplat serve` (through `attach`) and by the standalone
`mlplat monitor` service (`create_app`), so both take the same feedback payloads and the same token.
Every input route checks, in this order: the bearer token (401/403), the content type (415), the
body size (413), strict JSON (400), then the body's meaning (422 feedback, 400 events).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplat.decision import decide
from mlplat.errors import BadEvent, NotFound
from mlplat.manifest import Decision
from mlplat.monitoring.feedback import MAX_ID_CHARS, parse_feedback
from mlplat.monitoring.http_metrics import RequestMetricsMiddleware
from mlplat.monitoring.inputs import EVENT_CONTENT_TYPES, JSON_CONTENT_TYPES, InputPolicy, is_finite_number, parse_json
from mlplat.monitoring.monitor import Monitor
from mlplat.monitoring.window import from_explainer
from mlplat.serving.http_errors import add_error_handler

REQUEST_EVENT, RESPONSE_EVENT = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
MAX_PENDING = 10_000  # logged requests waiting for their response event (and vice versa)
MAX_PENDING_BYTES = 64 << 20  # ... and the most body bytes they may hold together


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def router(monitors: Mapping[str, Monitor], policy: InputPolicy) -> APIRouter:
    """Feedback and monitor routes; feedback and evaluate need `policy`'s token. They raise mlplat
    errors: mount them on an app with `mlplat.serving.http_errors.add_error_handler` (both servers do)."""
    api = APIRouter()

    def get(name: str) -> Monitor:
        if name not in monitors:
            raise NotFound(f"unknown model {name[:100]!r}; monitored: {sorted(monitors)}")
        return monitors[name]

    @api.post("/v1/models/{name}/feedback")
    async def feedback(name: str, request: Request) -> dict[str, Any]:
        body = await policy.read_body(request, JSON_CONTENT_TYPES)
        monitor = get(name)
        # class indices for a classifier, finite numbers for a regression (None: no classes)
        keys, labels = parse_feedback(parse_json(body), None if monitor.regression else monitor.classes)
        result = monitor.feedback(keys, labels)
        return {"accepted": result.accepted, "unknown_ids": result.unknown}

    @api.get("/v1/models/{name}/monitor")
    def summary(name: str) -> dict[str, Any]:
        return _json_safe(get(name).last)

    @api.post("/v1/models/{name}/monitor/evaluate")
    async def evaluate(name: str, request: Request) -> dict[str, Any]:
        await policy.read_body(request, JSON_CONTENT_TYPES)  # no body expected; the token and limits still apply
        monitor = get(name)
        # a client's evaluation never advances the hysteresis: only the background loop does, once per interval
        return _json_safe(await run_in_threadpool(monitor.evaluate, False))

    @api.get("/v1/models/{name}/monitor/report")
    def report(name: str) -> Response:
        path = get(name).report_path
        if path is None or not path.is_file():
            raise NotFound("no drift report yet (written by the background evaluation)")
        return FileResponse(path, media_type="text/html")

    return api


class PayloadLogSink:
    """Pairs KServe payload-logger request and response events by CloudEvent id and records them.

    The logger's CloudEvent id is its own (the Ce-Id header, or a fresh uuid), not the id the
    client got back, so rows are keyed by the ids in the logged response: V1 `request_ids`, V2
    `id`, and only without either by the event id. Rows the explainer sent (marked with the proof of
    `explainer_secret`) are not recorded. A malformed event is a BadEvent (400), never a 500.
    """

    def __init__(self, monitors: Mapping[str, Monitor], explainer_secret: str | None = None) -> None:
        self.monitors = monitors
        self.explainer_secret = explainer_secret
        self._pending: OrderedDict[tuple[str, str], tuple[str, Any, int]] = OrderedDict()
        self._pending_bytes = 0
        self._lock = threading.Lock()

    def accept(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        try:
            return self._accept(headers, body)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # a shape of event no check above foresaw: still the sender's fault, so a 400 that says what broke
            raise BadEvent(f"malformed event: {type(exc).__name__}: {str(exc)[:200]}") from None

    def _accept(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        event_type, event_id, data, model = self._parse(headers, body)
        if event_type not in (REQUEST_EVENT, RESPONSE_EVENT):
            raise BadEvent(f"ce-type: expected {REQUEST_EVENT} or {RESPONSE_EVENT}, got {event_type[:100]!r}")
        if not event_id or len(event_id) > MAX_ID_CHARS:
            raise BadEvent(f"ce-id: expected a non-empty event id of at most {MAX_ID_CHARS} characters")
        monitor = self._monitor(model)
        key = (monitor.name, event_id)
        kind = "request" if event_type == REQUEST_EVENT else "response"
        with self._lock:
            other = self._pending.pop(key, None)
            if other is not None:
                self._pending_bytes -= other[2]
            if other is None or other[0] == kind:
                self._pending[key] = (kind, data, len(body))
                self._pending_bytes += len(body)
                while len(self._pending) > MAX_PENDING or self._pending_bytes > MAX_PENDING_BYTES:
                    self._pending_bytes -= self._pending.popitem(last=False)[1][2]
                return {"recorded": 0, "waiting_for": "response" if kind == "request" else "request"}
        request, response = (data, other[1]) if kind == "request" else (other[1], data)
        if from_explainer(request, self.explainer_secret):
            return {"recorded": 0, "skipped": "explainer"}
        rows = request_rows(request, monitor.feature_names)
        predictions = response_values(response) if monitor.regression \
            else response_classes(response, monitor.classes, monitor.manifest.decision)
        if len(predictions) != len(rows):
            raise BadEvent(f"response has {len(predictions)} predictions for {len(rows)} request rows")
        probabilities = None if monitor.regression else response_probabilities(response, len(monitor.classes), len(rows))
        monitor.window.record(rows, predictions, response_ids(response, len(rows)) or [event_id], probabilities)
        return {"recorded": len(rows)}

    def _parse(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str, Any, str | None]:
        payload = parse_json(body)
        if headers.get("content-type", "").startswith("application/cloudevents+json"):  # structured mode
            if not isinstance(payload, dict):
                raise BadEvent("body: a structured CloudEvent must be a JSON object")
            for attribute in ("type", "id"):
                if not isinstance(payload.get(attribute), str):
                    raise BadEvent(f"{attribute}: a structured CloudEvent needs a string {attribute!r}")
            if "data" not in payload:
                raise BadEvent("data: the structured CloudEvent carries no data")
            data = payload["data"]
            if isinstance(data, str):
                data = parse_json(data.encode(), "data")
            model = payload.get("inferenceservicename") or payload.get("source")
            return payload["type"], payload["id"], data, model if isinstance(model, str) else None
        if "ce-id" not in headers or "ce-type" not in headers:  # binary mode (what the KServe logger sends)
            raise BadEvent("headers: ce-id and ce-type are required (KServe payload-logger CloudEvent)")
        return headers["ce-type"], headers["ce-id"], payload, headers.get("ce-inferenceservicename")

    def _monitor(self, model: str | None) -> Monitor:
        if model is not None and model in self.monitors:
            return self.monitors[model]
        if len(self.monitors) == 1:  # the InferenceService name need not equal the model name
            return next(iter(self.monitors.values()))
        shown = model[:100] if isinstance(model, str) else model
        raise NotFound(f"ce-inferenceservicename {shown!r} is not monitored here: {sorted(self.monitors)}")


def request_rows(payload: Any, feature_names: list[str]) -> np.ndarray:
    """Rows of a v1 (`instances`) or v2 (`inputs`) inference request as finite float32 [n, n_features]."""
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadEvent("instances: expected a non-empty list of rows")
        if any(isinstance(row, dict) for row in instances):
            if not all(isinstance(row, dict) for row in instances):
                raise BadEvent("instances: rows are either all objects keyed by feature name or all lists")
            try:
                instances = [[row[f] for f in feature_names] for row in instances]
            except KeyError as exc:
                raise BadEvent(f"instances[].{exc.args[0]}: missing feature") from None
        rows = _float_rows(instances, "instances")
    elif isinstance(payload, dict) and isinstance(payload.get("inputs"), list) and payload["inputs"] \
            and isinstance(payload["inputs"][0], dict):
        tensor = payload["inputs"][0]
        rows = _float_rows(tensor.get("data"), "inputs[0].data")
        shape = tensor.get("shape")
        if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                                       for d in shape)):
            raise BadEvent(f"inputs[0].shape: expected a list of integers, got {str(shape)[:100]}")
        try:
            rows = rows.reshape(shape or (-1, len(feature_names)))
        except (ValueError, TypeError) as exc:
            raise BadEvent(f"inputs[0]: data does not match shape {str(shape)[:100]}: {exc}") from None
    else:
        raise BadEvent("body: expected an inference request with 'instances' (v1) or 'inputs' (v2)")
    if rows.ndim != 2 or rows.shape[1] != len(feature_names) or not len(rows):
        raise BadEvent(f"instances: expected rows of {len(feature_names)} features, got shape {list(rows.shape)}")
    if not np.isfinite(rows).all():  # float32 overflow of a huge number lands here too
        bad = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise BadEvent(f"instances[{bad}]: NaN or infinite value; the monitor records finite rows only")
    return rows


def _float_rows(values: Any, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise BadEvent(f"{where}: expected a list of numbers")
    try:
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged rows, strings, nulls
        raise BadEvent(f"{where}: expected numbers: {str(exc)[:200]}") from None


def response_values(payload: Any) -> np.ndarray:
    """A regression's predicted values from a v1 (`predictions`) or v2 (the `predictions` output) response."""
    if isinstance(payload, dict) and "predictions" in payload:
        values = payload["predictions"]
    elif isinstance(payload, dict) and payload.get("outputs"):
        outputs = payload["outputs"]
        values = next((o for o in outputs if o.get("name") == "predictions"), outputs[0]).get("data", [])
    else:
        raise BadEvent("body: expected an inference response with 'predictions' (v1) or 'outputs' (v2)")
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise BadEvent("predictions: a regression's predictions are a list of numbers")
    return np.asarray(values, dtype=np.float64)


def response_classes(payload: Any, classes: list[str], decision: Decision | None = None) -> np.ndarray:
    """Predicted class indices from a v1 (`predictions`) or v2 (`outputs`) response; a row of class
    probabilities is decided by the model's rule (`decision`, argmax without one)."""
    if isinstance(payload, dict) and "predictions" in payload:
        values = payload["predictions"]
    elif isinstance(payload, dict) and isinstance(payload.get("outputs"), list) and payload["outputs"]:
        outputs = payload["outputs"]  # mlplat's own V2 answer carries `predicted_class` beside the probabilities
        if not all(isinstance(o, dict) for o in outputs):
            raise BadEvent("outputs: expected a list of V2 output tensors (objects)")
        values = next((o for o in outputs if o.get("name") == "predicted_class"), outputs[0]).get("data", [])
    else:
        raise BadEvent("body: expected an inference response with 'predictions' (v1) or 'outputs' (v2)")
    if not isinstance(values, list):
        raise BadEvent("predictions: expected a list, one prediction per row")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, dict):  # e.g. {"class": ..., "probabilities": ...}
            value = value.get("class", value.get("label", value.get("prediction")))
        if isinstance(value, list):  # class probabilities
            if len(value) != len(classes) or not all(is_finite_number(p) for p in value):
                raise BadEvent(f"predictions[{i}]: expected {len(classes)} finite class probabilities")
            out.append(int(decide(np.asarray([value], np.float64), decision)[0]))
        elif isinstance(value, str) and value in classes:
            out.append(classes.index(value))
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            out.append(value)  # a class index, as servers other than mlplat's answer
        else:
            raise BadEvent(f"predictions[{i}]: {str(value)[:100]!r} is not a class of this model")
    return np.asarray(out, dtype=np.int64)


def response_probabilities(payload: Any, n_classes: int, rows: int) -> np.ndarray | None:
    """The class probabilities [rows, classes] of an mlplat response (V1 `probabilities`, the V2 output
    `probabilities`); None when the response has none (another server), so the estimate skips those rows."""
    if not isinstance(payload, dict):
        return None
    if "probabilities" in payload:
        values: Any = payload["probabilities"]
    else:
        outputs = payload.get("outputs")
        tensor = next((o for o in outputs if isinstance(o, dict) and o.get("name") == "probabilities"), None) \
            if isinstance(outputs, list) else None
        if tensor is None:
            return None
        values = tensor.get("data")
    try:
        with np.errstate(over="ignore"):
            array = np.asarray(values, dtype=np.float32).reshape(rows, n_classes)
    except (ValueError, TypeError, OverflowError):
        raise BadEvent(f"probabilities: expected {rows} rows of {n_classes} class probabilities") from None
    if not (np.isfinite(array).all() and (array >= 0).all() and (array <= 1).all()):
        raise BadEvent("probabilities: expected finite class probabilities in [0, 1]")
    return array


def response_ids(payload: Any, rows: int) -> list[str] | None:
    """The ids the client got back: the per-row V1 `request_ids`, or the V2 response `id`."""
    if not isinstance(payload, dict):
        return None
    if "request_ids" in payload:
        ids = payload["request_ids"]
        if not (isinstance(ids, list) and len(ids) == rows
                and all(isinstance(i, str) and i and len(i) <= MAX_ID_CHARS for i in ids)):
            raise BadEvent(f"request_ids: expected {rows} non-empty string ids, one per row, got {str(ids)[:100]}")
        return ids
    if isinstance(payload.get("id"), str) and payload["id"] and len(payload["id"]) <= MAX_ID_CHARS and "outputs" in payload:
        return [payload["id"]]
    return None


def create_app(monitors: Mapping[str, Monitor], policy: InputPolicy) -> FastAPI:
    """The standalone `mlplat monitor` service: CloudEvents sink + feedback + /metrics. The sink and
    feedback need `policy`'s token; /healthz answers 503 while a monitor cannot save its state."""
    from contextlib import asynccontextmanager

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    sink = PayloadLogSink(monitors, policy.token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        for monitor in monitors.values():
            monitor.start()
        yield
        for monitor in monitors.values():
            monitor.stop()

    app = FastAPI(title="mlplat monitor", lifespan=lifespan)
    app.state.sink = sink
    app.add_middleware(RequestMetricsMiddleware, models=frozenset(monitors))  # unknown names: one label value
    add_error_handler(app)
    app.include_router(router(monitors, policy))
    app.include_router(_sink_routes(sink, policy))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.state.draining = False  # set on SIGTERM (mlplat.serving.shutdown): not ready while the last requests finish

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        if app.state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        errors = {name: m.state_error for name, m in monitors.items() if m.state_error}
        if errors:
            return JSONResponse({"status": "failing", "errors": errors}, status_code=503)
        return JSONResponse({"status": "ok", "models": sorted(monitors)})

    return app


def create_events_app(sink: PayloadLogSink, max_body_bytes: int) -> FastAPI:
    """The sink alone, without a token, for `mlplat monitor --events-port`: KServe's payload logger
    sends no Authorization header, so this port is for a NetworkPolicy to keep to the predictor pods.
    Content types and body limits still apply; the explainer marker still needs its proof."""
    app = FastAPI(title="mlplat monitor events")
    app.add_middleware(RequestMetricsMiddleware, models=frozenset(sink.monitors))
    add_error_handler(app)
    app.include_router(_sink_routes(sink, InputPolicy(insecure=True, max_body_bytes=max_body_bytes)))
    return app


def _sink_routes(sink: PayloadLogSink, policy: InputPolicy) -> APIRouter:
    api = APIRouter()

    @api.post("/")
    @api.post("/events")
    async def events(request: Request) -> JSONResponse:
        body = await policy.read_body(request, EVENT_CONTENT_TYPES)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return JSONResponse(await run_in_threadpool(sink.accept, headers, body))

    return api
