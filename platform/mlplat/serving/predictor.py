"""The KServe model: load → preprocess (validate) → predict (batched, off the loop) → postprocess.

One class serves both KServe roles. As the predictor it runs the network in-process. As the
explainer component (`predictor_url` set) it forwards predictions to the predictor over V1 HTTP,
and black-box explainers (KernelShap, anchors) query the predictor the same way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from mlplat.contracts.explainer import BoundExplainer
from mlplat.errors import Busy, InvalidInput, NotFound, Timeout, UpstreamError
from mlplat.modeldir import LoadedModel
from mlplat.monitoring.window import explainer_parameters, from_explainer, row_key
from mlplat.serving import metrics
from mlplat.serving.batching import AdaptiveBatcher
from mlplat.serving.explain_worker import ExplainWorker
from mlplat.serving.guard import PREVALIDATED, count_rejection
from mlplat.serving.image_requests import ImageForward, ImageSchema, encoded_inputs
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
    max_request_images: int = 64  # images per request of an image model (each is decoded on the event loop)


@dataclass
class Batch:
    rows: np.ndarray
    request_id: str
    protocol: str  # "v1" or "v2"
    monitored: bool = True  # False for the explainer's synthetic rows: answered, never recorded
    image_sizes: np.ndarray | None = None  # an image model's original (width, height) per image; rows are uint8 pixels


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
        images = self.is_image  # network inputs [n, C, H, W] travel as the PNGs the predictor takes
        rows = np.asarray(X, dtype=np.float32 if images else np.float64)
        parts = []
        for start in range(0, len(rows), self.batch_rows):
            chunk: list[Any] = ([{"image": {"b64": b64}} for b64 in encoded_inputs(rows[start:start + self.batch_rows],
                                                                                    self.image_preprocessing)]
                                if images else rows[start:start + self.batch_rows].tolist())
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


def serving_model(model_dir: Path, options: ServingOptions) -> LoadedModel:
    """The model as this server's role uses it: in-process, or (explainer role) asking the predictor."""
    loaded = LoadedModel.load(model_dir)
    if not options.predictor_url:
        return loaded
    return RemoteModel(loaded.directory, loaded.manifest, loaded.network, loaded.standardizer, loaded.target,
                       predictor_url=options.predictor_url.rstrip("/"), batch_rows=options.predictor_batch_rows,
                       monitoring_token=options.monitoring_token)


@dataclass(frozen=True)
class ModelExplainer:
    """Builds the model directory's fitted explainer in the explain worker's child process (picklable)."""

    model_dir: Path
    options: ServingOptions

    def __call__(self) -> BoundExplainer:
        from mlplat.serving.explainer_loader import load_explainer

        explainer = load_explainer(serving_model(self.model_dir, self.options))
        if explainer is None:
            raise NotFound(f"{self.model_dir} has no fitted explainer")
        return explainer


class MlplatModel(kserve.Model):
    def __init__(self, model_dir: Path, options: ServingOptions | None = None, recorder: Any = None) -> None:
        self.model_dir = Path(model_dir)
        self.options = options or ServingOptions()
        self.recorder = recorder  # monitoring window: .record(rows, predicted, row_ids[, probabilities])
        self.loaded = serving_model(self.model_dir, self.options)
        self._stopped = False
        super().__init__(self.loaded.name)

    def load(self) -> bool:
        from mlplat.manifest import ImagePreprocessing
        from mlplat.modeldir import encodings_of
        from mlplat.serving.explainer_loader import load_explainer

        self.images = isinstance(self.loaded.standardizer, ImagePreprocessing)
        self.probe: ImageForward | None = None
        if isinstance(self.loaded.standardizer, ImagePreprocessing):
            self.schema: FeatureSchema | ImageSchema = ImageSchema(
                self.loaded.standardizer, min(self.options.max_request_rows, self.options.max_request_images))
            if not self.options.predictor_url:  # the predictor records embeddings; an explainer role has no window
                self.probe = ImageForward(self.loaded.network, self.loaded.standardizer)
        else:
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
        self.batcher = AdaptiveBatcher(self._forward, self.name, self.options.max_batch_rows,
                                       self.options.max_wait_ms / 1000, self.options.batching, inline_max_s)
        # built here once so a broken explainer refuses to load (never ready-then-500); explanations run in the worker
        has_explainer = load_explainer(self.loaded) is not None
        explainer = self.loaded.manifest.explainer
        self.explain_method = explainer.plugin if explainer else ""
        self.explain_worker = ExplainWorker(ModelExplainer(self.model_dir, self.options), self.name) if has_explainer else None
        if self.explain_worker is not None and self.options.predictor_url:
            self.explain_worker.start()  # the explainer role is there to explain: load its worker now, not on demand
        self._explaining = False  # one explanation at a time
        self.ready = True
        return self.ready

    def _forward(self, rows: np.ndarray) -> np.ndarray:
        """One pass: the outputs, and for an image model its embeddings and image statistics beside them
        (ImageForward), so the batcher's row slicing hands each request all of them."""
        if self.probe is not None:
            return self.probe(rows)
        if isinstance(self.schema, ImageSchema):  # the explainer role: the predictor answers for the images
            return self.loaded.predict_outputs(self.schema.network_input(rows))
        return self.loaded.predict_outputs(rows)

    def answering(self) -> bool:
        """Loaded and able to answer: not stopped (an unload stops the model's worker threads)."""
        return bool(self.ready) and not self._stopped

    # ---- V2 metadata -------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        if isinstance(self.schema, ImageSchema):  # encoded images (PNG, JPEG, WebP, ...)
            return [{"name": self.schema.names[0], "datatype": "BYTES", "shape": [-1]}]
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
            if isinstance(self.schema, ImageSchema):
                v2 = isinstance(payload, InferRequest)
                rows, sizes = self.schema.v2_images(payload) if v2 else self.schema.v1_images(payload)
                return Batch(rows, (checked_request_id(payload.id, "id") if v2 else None) or request_id, "v2" if v2 else "v1",
                             v2 or not from_explainer(payload, self.options.monitoring_token), image_sizes=sizes)
            if isinstance(payload, InferRequest):
                batch = Batch(self.schema.v2_rows(payload), checked_request_id(payload.id, "id") or request_id, "v2")
            else:
                checked = PREVALIDATED.get()  # the guard's, from the same body
                batch = Batch(self.schema.v1_rows(payload) if checked is None else checked, request_id, "v1",
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
        embedding = looks = None
        if self.probe is not None:  # [probabilities | embedding | brightness, contrast] from _forward
            probabilities, embedding, looks = ImageForward.split(probabilities, len(self.classes))
        predicted = self.loaded.decide(probabilities)  # the model's decision rule (model.json `decision`)
        names = self.classes[predicted].tolist()
        for index, count in enumerate(np.bincount(predicted, minlength=len(self.classes))):
            if count:
                self._predicted[index].inc(int(count))
        n = len(predicted)
        row_ids = [row_key(batch.request_id, i, n) for i in range(n)]
        if self.recorder is not None and batch.monitored:
            if embedding is not None and looks is not None and batch.image_sizes is not None:  # drift features (mlplat.embeddings)
                features = np.concatenate([embedding, probabilities, looks, batch.image_sizes], axis=1)
                self.recorder.record(features, predicted, row_ids, probabilities)
            else:
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
        if self.explain_worker is None:
            count_rejection(self.name, "no_explainer")
            raise NotFound(f"model {self.name!r} was published without an explain step; add `explain:` "
                                     f"to its pipeline spec")
        if len(batch.rows) > self.options.max_explain_rows:
            count_rejection(self.name, "too_many_rows")
            raise InvalidInput(reason="too_many_rows", message=f"{len(batch.rows)} instances to explain; the limit per "
                                                               f"explain request is {self.options.max_explain_rows}")
        if self._explaining:
            # one explanation at a time, and nobody queues behind it: a queued request would wait for a 504
            raise Busy("the explainer is busy with another explanation; retry later")
        started = time.perf_counter()
        self._explaining = True
        try:
            rows = self.schema.network_input(batch.rows) if isinstance(self.schema, ImageSchema) else batch.rows
            explanations = await self.explain_worker.explain(rows, self.options.explain_timeout_s)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11; the worker was killed
            raise Timeout(f"explanation took longer than {self.options.explain_timeout_s:g} s "
                          f"({len(batch.rows)} rows, {self.explain_method}); it was stopped") from None
        finally:
            self._explaining = False
        metrics.EXPLAIN_SECONDS.labels(self.name, self.explain_method).observe(time.perf_counter() - started)
        return {"explanations": explanations, "method": self.explain_method, "request_id": batch.request_id}

    def stop(self) -> None:
        self._stopped, self.ready = True, False
        self.batcher.close()
        if self.explain_worker is not None:
            self.explain_worker.stop()
