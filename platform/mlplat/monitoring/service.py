"""HTTP face of the monitor: feedback, KServe payload-logger CloudEvents, summary, report.

`router(monitors)` is mounted both by `mlplat serve` (through `attach`) and by the standalone
`mlplat monitor` service (`create_app`), so both take the same feedback payloads.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlplat.errors import BadEvent, NotFound
from mlplat.monitoring.http_metrics import RequestMetricsMiddleware
from mlplat.monitoring.monitor import Monitor
from mlplat.monitoring.window import from_explainer, row_key
from mlplat.serving.http_errors import add_error_handler

REQUEST_EVENT, RESPONSE_EVENT = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
MAX_PENDING = 10_000  # logged requests waiting for their response event (and vice versa)


class Feedback(BaseModel):
    """Delayed ground truth: `request_id` with one label per row of that request, or `ids` + `labels`."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = None
    ids: list[str] | None = None
    labels: list[int | str] | int | str = Field(description="class indices or class names")

    @model_validator(mode="after")
    def _one_key(self) -> Feedback:
        if (self.request_id is None) == (self.ids is None):
            raise ValueError("give exactly one of request_id or ids")
        if self.ids is not None and (not isinstance(self.labels, list) or len(self.labels) != len(self.ids)):
            raise ValueError("labels must be a list as long as ids")
        return self

    def pairs(self) -> tuple[list[str], list[Any]]:
        labels = self.labels if isinstance(self.labels, list) else [self.labels]
        if self.ids is not None:
            return list(self.ids), labels
        assert self.request_id is not None
        return [row_key(self.request_id, i, len(labels)) for i in range(len(labels))], labels


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def router(monitors: Mapping[str, Monitor]) -> APIRouter:
    """Feedback and monitor routes. They raise mlplat errors: mount them on an app with
    `mlplat.serving.http_errors.add_error_handler` (both servers do)."""
    api = APIRouter()

    def get(name: str) -> Monitor:
        if name not in monitors:
            raise NotFound(f"unknown model {name!r}; monitored: {sorted(monitors)}")
        return monitors[name]

    @api.post("/v1/models/{name}/feedback")
    def feedback(name: str, body: Feedback) -> dict[str, Any]:
        monitor = get(name)
        keys, labels = body.pairs()
        result = monitor.feedback(keys, labels)  # BadFeedback for a label that is no class of the model
        return {"accepted": result.accepted, "unknown_ids": result.unknown}

    @api.get("/v1/models/{name}/monitor")
    def summary(name: str) -> dict[str, Any]:
        return _json_safe(get(name).last)

    @api.post("/v1/models/{name}/monitor/evaluate")
    def evaluate(name: str) -> dict[str, Any]:
        return _json_safe(get(name).evaluate())

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
    `id`, and only without either by the event id. Rows the explainer sent are not recorded.
    """

    def __init__(self, monitors: Mapping[str, Monitor]) -> None:
        self.monitors = monitors
        self._pending: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def accept(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        event_type, event_id, data, model = self._parse(headers, body)
        if event_type not in (REQUEST_EVENT, RESPONSE_EVENT):
            raise BadEvent(f"ce-type: expected {REQUEST_EVENT} or {RESPONSE_EVENT}, got {event_type!r}")
        monitor = self._monitor(model)
        key = (monitor.name, event_id)
        kind = "request" if event_type == REQUEST_EVENT else "response"
        with self._lock:
            other = self._pending.pop(key, None)
            if other is None or other[0] == kind:
                self._pending[key] = (kind, data)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
                return {"recorded": 0, "waiting_for": "response" if kind == "request" else "request"}
        request, response = (data, other[1]) if kind == "request" else (other[1], data)
        if from_explainer(request):
            return {"recorded": 0, "skipped": "explainer"}
        rows = request_rows(request, monitor.feature_names)
        predictions = response_values(response) if monitor.regression else response_classes(response, monitor.classes)
        if len(predictions) != len(rows):
            raise BadEvent(f"response has {len(predictions)} predictions for {len(rows)} request rows")
        monitor.window.record(rows, predictions, response_ids(response, len(rows)) or [event_id])
        return {"recorded": len(rows)}

    def _parse(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str, Any, str | None]:
        try:
            payload = json.loads(body or b"null")
        except json.JSONDecodeError as exc:
            raise BadEvent(f"body: invalid JSON ({exc.msg})") from None
        if headers.get("content-type", "").startswith("application/cloudevents+json"):  # structured mode
            if not isinstance(payload, dict):
                raise BadEvent("body: a structured CloudEvent must be a JSON object")
            data = payload.get("data")
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise BadEvent(f"data: invalid JSON ({exc.msg})") from None
            return (str(payload.get("type")), str(payload.get("id")), data,
                    payload.get("inferenceservicename") or payload.get("source"))
        if "ce-id" not in headers or "ce-type" not in headers:  # binary mode (what the KServe logger sends)
            raise BadEvent("headers: ce-id and ce-type are required (KServe payload-logger CloudEvent)")
        return headers["ce-type"], headers["ce-id"], payload, headers.get("ce-inferenceservicename")

    def _monitor(self, model: str | None) -> Monitor:
        if model is not None and model in self.monitors:
            return self.monitors[model]
        if len(self.monitors) == 1:  # the InferenceService name need not equal the model name
            return next(iter(self.monitors.values()))
        raise NotFound(f"ce-inferenceservicename {model!r} is not monitored here: {sorted(self.monitors)}")


def request_rows(payload: Any, feature_names: list[str]) -> np.ndarray:
    """Rows of a v1 (`instances`) or v2 (`inputs`) inference request as float32 [n, n_features]."""
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if instances and isinstance(instances[0], dict):
            try:
                instances = [[row[f] for f in feature_names] for row in instances]
            except KeyError as exc:
                raise BadEvent(f"instances[].{exc.args[0]}: missing feature") from None
        rows = _float_rows(instances, "instances")
    elif isinstance(payload, dict) and isinstance(payload.get("inputs"), list) and payload["inputs"] \
            and isinstance(payload["inputs"][0], dict):
        tensor = payload["inputs"][0]
        rows = _float_rows(tensor.get("data"), "inputs[0].data")
        try:
            rows = rows.reshape(tensor.get("shape") or (-1, len(feature_names)))
        except (ValueError, TypeError) as exc:
            raise BadEvent(f"inputs[0]: data does not match shape {tensor.get('shape')}: {exc}") from None
    else:
        raise BadEvent("body: expected an inference request with 'instances' (v1) or 'inputs' (v2)")
    if rows.ndim != 2 or rows.shape[1] != len(feature_names):
        raise BadEvent(f"instances: expected rows of {len(feature_names)} features, got shape {list(rows.shape)}")
    return rows


def _float_rows(values: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:  # ragged rows, strings, nulls
        raise BadEvent(f"{where}: expected numbers: {exc}") from None


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


def response_classes(payload: Any, classes: list[str]) -> np.ndarray:
    """Predicted class indices from a v1 (`predictions`) or v2 (`outputs`) response."""
    if isinstance(payload, dict) and "predictions" in payload:
        values = payload["predictions"]
    elif isinstance(payload, dict) and payload.get("outputs"):
        outputs = payload["outputs"]  # mlplat's own V2 answer carries `predicted_class` beside the probabilities
        values = next((o for o in outputs if o.get("name") == "predicted_class"), outputs[0]).get("data", [])
    else:
        raise BadEvent("body: expected an inference response with 'predictions' (v1) or 'outputs' (v2)")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, dict):  # e.g. {"class": ..., "probabilities": ...}
            value = value.get("class", value.get("label", value.get("prediction")))
        if isinstance(value, list):  # class probabilities
            out.append(int(np.argmax(value)))
        elif isinstance(value, str) and value in classes:
            out.append(classes.index(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= int(value) < len(classes):
            out.append(int(value))
        else:
            raise BadEvent(f"predictions[{i}]: {value!r} is not a class of this model")
    return np.asarray(out, dtype=np.int64)


def response_ids(payload: Any, rows: int) -> list[str] | None:
    """The ids the client got back: the per-row V1 `request_ids`, or the V2 response `id`."""
    if not isinstance(payload, dict):
        return None
    if "request_ids" in payload:
        ids = payload["request_ids"]
        if not (isinstance(ids, list) and len(ids) == rows and all(isinstance(i, str) and i for i in ids)):
            raise BadEvent(f"request_ids: expected {rows} non-empty string ids, one per row, got {str(ids)[:100]}")
        return ids
    if isinstance(payload.get("id"), str) and payload["id"] and "outputs" in payload:
        return [payload["id"]]
    return None


def create_app(monitors: Mapping[str, Monitor]) -> FastAPI:
    """The standalone `mlplat monitor` service: CloudEvents sink + feedback + /metrics."""
    from contextlib import asynccontextmanager

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    sink = PayloadLogSink(monitors)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        for monitor in monitors.values():
            monitor.start()
        yield
        for monitor in monitors.values():
            monitor.stop()

    app = FastAPI(title="mlplat monitor", lifespan=lifespan)
    app.add_middleware(RequestMetricsMiddleware)
    add_error_handler(app)
    app.include_router(router(monitors))

    @app.post("/")
    @app.post("/events")
    async def events(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(sink.accept({k.lower(): v for k, v in request.headers.items()}, body))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(monitors)}

    return app
