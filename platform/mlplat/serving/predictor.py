"""The KServe model: load → preprocess (validate) → predict (batched, off the loop) → postprocess.

One class serves both KServe roles. As the predictor it runs the network in-process. As the
explainer component (`predictor_url` set) it forwards predictions to the predictor over V1 HTTP,
and black-box explainers (KernelShap, anchors) query the predictor the same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from mlplat.errors import Busy, InvalidInput, NotFound, Timeout, UpstreamError
from mlplat.modeldir import LoadedModel
from mlplat.monitoring.window import explainer_parameters, from_explainer, row_key
from mlplat.serving import metrics
from mlplat.serving.batching import AdaptiveBatcher
from mlplat.serving.guard import count_rejection
from mlplat.serving.validation import FeatureSchema, checked_request_id


@dataclass(frozen=True)
class ServingOptions:
    max_batch_rows: int = 64  # rows per merged forward pass
    max_wait_ms: float = 0.0  # extra wait to collect a batch; 0 = batch only what queued during the last pass
    batching: bool = True
    max_request_rows: int = 10_000
    explain_timeout_s: float = 30.0
    predictor_url: str | None = None  # explainer role: where the predictor listens
    predictor_batch_rows: int = 256  # explainer role: most rows per request to the predictor
    inline_forward_ms: float = 0.5  # passes measured cheaper than this run on the event loop (batching.py)
    monitoring_token: str | None = None  # --token-file: the explainer proves its marker with it, the predictor checks it
    max_explain_rows: int = 100  # rows per :explain request: one 10,000-row explanation held the explainer for minutes


@dataclass
class Batch:
    rows: np.ndarray
    request_id: str
    protocol: str  # "v1" or "v2"
    monitored: bool = True  # False for the explainer's synthetic rows: answered, never recorded


@dataclass
class Prediction:
    batch: Batch
    probabilities: np.ndarray


@dataclass
class RemoteModel(LoadedModel):
    """A LoadedModel whose predictions come from the predictor over HTTP (the explainer role)."""

    predictor_url: str = ""
    batch_rows: int = 256  # rows per request: KernelShap's coalitions must fit the predictor's body/row limits
    monitoring_token: str | None = None  # proves the explainer marker (window.explainer_parameters)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._remote(X, "probabilities")

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        """A regression's values from the predictor (its V1 `predictions` are numbers)."""
        return self._remote(X, "predictions").astype(np.float64)

    def _remote(self, X: np.ndarray, key: str) -> np.ndarray:
        import httpx

        if not hasattr(self, "_client"):  # one pooled, thread-safe client: no TCP handshake per chunk
            self._client = httpx.Client(base_url=self.predictor_url, timeout=60)
        rows = np.asarray(X, dtype=np.float64)
        parts = []
        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start:start + self.batch_rows].tolist()
            try:
                # marked, so neither the predictor's monitor nor the payload-logger sink records them
                response = self._client.post(f"/v1/models/{self.name}:predict",
                                             json={"instances": chunk, "parameters": explainer_parameters(self.monitoring_token)})
            except httpx.HTTPError as exc:
                raise UpstreamError(f"predictor at {self.predictor_url} unreachable: {exc}") from None
            if response.status_code != 200:
                raise UpstreamError(f"predictor at {self.predictor_url} answered HTTP {response.status_code}: "
                                     f"{response.text[:300]}")
            parts.append(np.asarray(response.json()[key], dtype=np.float32))
        return np.concatenate(parts)


class MlplatModel(kserve.Model):
    def __init__(self, model_dir: Path, options: ServingOptions | None = None, recorder: Any = None) -> None:
        self.model_dir = Path(model_dir)
        self.options = options or ServingOptions()
        self.recorder = recorder  # monitoring window: .record(rows, predicted, row_ids[, probabilities])
        loaded = LoadedModel.load(self.model_dir)
        if self.options.predictor_url:
            loaded = RemoteModel(loaded.directory, loaded.manifest, loaded.network, loaded.standardizer, loaded.target,
                                 predictor_url=self.options.predictor_url.rstrip("/"),
                                 batch_rows=self.options.predictor_batch_rows,
                                 monitoring_token=self.options.monitoring_token)
        self.loaded = loaded
        self._stopped = False
        super().__init__(loaded.name)

    def load(self) -> bool:
        from mlplat.modeldir import encodings_of
        from mlplat.serving.explainer_loader import load_explainer

        self.schema = FeatureSchema(self.loaded.feature_names, self.options.max_request_rows,
                                    encodings_of(self.loaded.manifest.features),
                                    impute=hasattr(self.loaded.standardizer, "fill"))
        self._imputed = [metrics.IMPUTED.labels(self.name, f) for f in self.loaded.feature_names]
        self._unknown = {j: metrics.UNKNOWN_CATEGORIES.labels(self.name, self.loaded.feature_names[j])
                         for j in self.schema.categorical}
        self.classes = np.array(self.loaded.class_names, dtype=object)  # empty for a regression
        self.regression = self.loaded.task == "regression"
        # labelled children looked up once, not per request (a dict lookup + lock each time otherwise)
        self._predicted = [metrics.PREDICTIONS.labels(self.name, c) for c in self.loaded.class_names]
        # the explainer role's "forward" is an HTTP call to the predictor: blocking I/O never runs on the loop
        inline_max_s = 0.0 if self.options.predictor_url else self.options.inline_forward_ms / 1000
        # forward: class probabilities [n, classes], or a regression's values [n, 1] (LoadedModel.predict_outputs)
        self.batcher = AdaptiveBatcher(self.loaded.predict_outputs, self.name, self.options.max_batch_rows,
                                       self.options.max_wait_ms / 1000, self.options.batching, inline_max_s)
        self.explainer = load_explainer(self.loaded)
        explainer = self.loaded.manifest.explainer
        self.explain_method = explainer.plugin if explainer else ""
        self._explain_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlplat-explain")
        self._timed_out: Future[Any] | None = None  # the last timed-out explanation; a thread can't be stopped
        self._explaining: Future[Any] | None = None  # the explanation running now, if any
        self.ready = True
        return self.ready

    def answering(self) -> bool:
        """Loaded and able to answer: not stopped (an unload stops the model's worker threads)."""
        return bool(self.ready) and not self._stopped

    # ---- V2 metadata -------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        if not self.schema.all_numeric:  # one input per feature: categories travel as strings
            return [{"name": e.name, "datatype": "BYTES" if e.kind == "categorical" else "FP32", "shape": [-1]}
                    for e in self.schema.encodings]
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.schema.width]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self.regression:
            return [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]
        return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.classes)]},
                {"name": "predicted_class", "datatype": "BYTES", "shape": [-1]}]

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Batch:
        try:
            request_id = checked_request_id((headers or {}).get("x-request-id"), "header x-request-id") or uuid.uuid4().hex
            if isinstance(payload, InferRequest):
                batch = Batch(self.schema.v2_rows(payload), checked_request_id(payload.id, "id") or request_id, "v2")
            else:
                batch = Batch(self.schema.v1_rows(payload), request_id, "v1",
                              not from_explainer(payload, self.options.monitoring_token))
        except InvalidInput as exc:
            count_rejection(self.name, exc.reason)
            raise
        self._count_inputs(batch.rows)
        return batch

    def _count_inputs(self, rows: np.ndarray) -> None:
        """Nulls the model imputes, and categories it never saw (the unknown bucket), per feature."""
        missing = np.isnan(rows)
        if missing.any():
            for j, count in enumerate(missing.sum(axis=0)):
                if count:
                    self._imputed[j].inc(int(count))
        for j, counter in self._unknown.items():
            unknown = int((rows[:, j] == 0).sum())
            if unknown:
                counter.inc(unknown)

    async def predict(self, batch: Batch, headers: dict[str, str] | None = None) -> Prediction:
        return Prediction(batch, await self.batcher(batch.rows))

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        if not isinstance(result, Prediction):
            return result  # an explanation, already JSON-ready
        batch, probabilities = result.batch, result.probabilities
        if self.regression:
            return self._postprocess_values(batch, probabilities[:, 0])
        predicted = probabilities.argmax(axis=1)
        names = self.classes[predicted].tolist()
        for index, count in enumerate(np.bincount(predicted, minlength=len(self.classes))):
            if count:
                self._predicted[index].inc(int(count))
        n = len(predicted)
        row_ids = [row_key(batch.request_id, i, n) for i in range(n)]
        if self.recorder is not None and batch.monitored:
            self.recorder.record(batch.rows, predicted, row_ids, probabilities)
        if batch.protocol == "v1":
            return {"predictions": names, "probabilities": probabilities.tolist(), "request_ids": row_ids}
        outputs = [InferOutput("probabilities", list(probabilities.shape), "FP32", probabilities.tolist()),
                   InferOutput("predicted_class", [n], "BYTES", names)]
        return InferResponse(batch.request_id, self.name, outputs)

    def _postprocess_values(self, batch: Batch, values: np.ndarray) -> Any:
        """A regression's answer: V1 `predictions` as numbers, V2 one FP32 `predictions` tensor [n]."""
        n = len(values)
        row_ids = [row_key(batch.request_id, i, n) for i in range(n)]
        if self.recorder is not None and batch.monitored:
            self.recorder.record(batch.rows, values, row_ids)
        if batch.protocol == "v1":
            return {"predictions": [float(v) for v in values], "request_ids": row_ids}
        return InferResponse(batch.request_id, self.name,
                             [InferOutput("predictions", [n], "FP32", values.astype(np.float32).tolist())])

    async def explain(self, batch: Batch, headers: dict[str, str] | None = None) -> dict[str, Any]:
        if self.explainer is None:
            count_rejection(self.name, "no_explainer")
            raise NotFound(f"model {self.name!r} was published without an explain step; add `explain:` "
                                     f"to its pipeline spec")
        if len(batch.rows) > self.options.max_explain_rows:
            count_rejection(self.name, "too_many_rows")
            raise InvalidInput(reason="too_many_rows", message=f"{len(batch.rows)} instances to explain; the limit per "
                                                               f"explain request is {self.options.max_explain_rows}")
        if self._timed_out is not None and not self._timed_out.done():
            raise Busy(f"the explainer is busy finishing a timed-out explanation (longer than "
                              f"{self.options.explain_timeout_s:g} s); retry later or send fewer rows")
        if self._explaining is not None and not self._explaining.done():
            # one explanation at a time, and nobody queues behind it: a queued request would wait for a 504
            raise Busy("the explainer is busy with another explanation; retry later")
        started = time.perf_counter()
        work = self._explain_executor.submit(self.explainer.explain, batch.rows)
        self._explaining = work
        try:
            # on timeout wait_for cancels the wrapper: a queued explanation is dropped, a running one runs on
            explanations = await asyncio.wait_for(asyncio.wrap_future(work), self.options.explain_timeout_s)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            self._timed_out = work
            raise Timeout(f"explanation took longer than {self.options.explain_timeout_s:g} s "
                                 f"({len(batch.rows)} rows, {self.explain_method})") from None
        metrics.EXPLAIN_SECONDS.labels(self.name, self.explain_method).observe(time.perf_counter() - started)
        return {"explanations": explanations, "method": self.explain_method, "request_id": batch.request_id}

    def stop(self) -> None:
        self._stopped, self.ready = True, False
        self.batcher.close()
        self._explain_executor.shutdown(wait=False, cancel_futures=True)
