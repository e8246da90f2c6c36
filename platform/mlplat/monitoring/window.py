"""The bounded window of recorded requests and their delayed labels.

`record` is on the request path: a lock, a slice copy into preallocated arrays and a dict
update, no allocation beyond the id keys, no I/O. Everything else (snapshots, persistence,
label matching) happens off the request path. Persistence is one parquet file written
atomically, so a restart resumes with the same rows, predictions and labels.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplat.contracts.drift_detector import PREDICTION_COLUMN, probability_columns
from mlplat.errors import LabelConflict, UsageError

LABEL_COLUMN, ID_COLUMN, TIME_COLUMN = "__label__", "__request_id__", "__time__"
NO_LABEL = -1


# V1 `parameters` the explainer role sends with its synthetic rows (KernelShap coalitions, anchors
# samples): the predictor answers them, but they are not production traffic and never enter a window.
# The marker carries a proof derived from the shared monitoring token, so a client cannot hide its
# own traffic from the monitor by copying the marker; the proof, not the token, is what the payload
# logger writes into its events.
SOURCE_PARAMETER, EXPLAINER_SOURCE, PROOF_PARAMETER = "mlplat_source", "explainer", "mlplat_explainer_proof"


def row_key(request_id: str, index: int, rows: int) -> str:
    """The id a single row is known by: the request id, or `<id>/<row>` for multi-row requests."""
    return request_id if rows == 1 else f"{request_id}/{index}"


def _proof(secret: str) -> str:
    return hmac.new(secret.encode(), b"mlplat explainer rows", hashlib.sha256).hexdigest()


def explainer_parameters(secret: str | None) -> dict[str, str]:
    """The `parameters` the explainer marks its rows with; without a secret the marker is only a hint
    that no monitor honours."""
    marker = {SOURCE_PARAMETER: EXPLAINER_SOURCE}
    return {**marker, PROOF_PARAMETER: _proof(secret)} if secret else marker


def from_explainer(payload: Any, secret: str | None) -> bool:
    """True for a V1 request body the explainer sent: marked, with the proof of `secret`. Without a
    secret configured nothing is trusted, so every request is recorded."""
    parameters = payload.get("parameters") if isinstance(payload, dict) else None
    if not secret or not isinstance(parameters, dict) or parameters.get(SOURCE_PARAMETER) != EXPLAINER_SOURCE:
        return False
    proof = parameters.get(PROOF_PARAMETER)
    return isinstance(proof, str) and hmac.compare_digest(proof.encode(), _proof(secret).encode())


@dataclass
class FeedbackResult:
    accepted: int
    unknown: list[str]


class Window:
    """Ring buffer of the last `capacity` rows (raw float32 features, predicted class, labels and, with
    `n_classes`, the served class probabilities: the label-free performance estimate reads them).
    A regression's window holds predicted and true values (float64); a missing label is NaN there."""

    def __init__(self, feature_names: Sequence[str], capacity: int = 5000, regression: bool = False,
                 n_classes: int = 0) -> None:
        if capacity < 1:
            raise UsageError("window capacity must be >= 1")
        self.feature_names = list(feature_names)
        self.capacity = capacity
        self.dtype = np.float64 if regression else np.int64
        self.no_label = np.nan if regression else NO_LABEL
        self.features = np.zeros((capacity, len(self.feature_names)), dtype=np.float32)
        self.predictions = np.zeros(capacity, dtype=self.dtype)
        self.labels = np.full(capacity, self.no_label, dtype=self.dtype)
        self.probabilities = np.full((capacity, n_classes), np.nan, dtype=np.float32)
        self.times = np.zeros(capacity, dtype=np.float64)
        self.keys: list[str | None] = [None] * capacity
        self._slots: dict[str, int] = {}
        self.total = 0  # rows ever recorded (monotonic, survives restarts)
        self._offset = 0  # ring position of row `total` is (total + offset) % capacity
        self.labels_received = 0
        self._lock = threading.Lock()

    # ---- request path ----------------------------------------------------------------------
    def record(self, rows: np.ndarray, predictions: np.ndarray, request_ids: Sequence[str],
               probabilities: np.ndarray | None = None) -> None:
        """Append validated rows [n, n_features] with their predicted classes and request ids, and the
        class probabilities [n, classes] when the server answered them (NaN otherwise)."""
        n = len(rows)
        if probabilities is None or probabilities.shape != (n, self.probabilities.shape[1]):
            probabilities = np.full((n, self.probabilities.shape[1]), np.nan, dtype=np.float32)
        now = time.time()
        with self._lock:
            start = (self.total + self._offset) % self.capacity
            if start + n <= self.capacity:
                self.features[start:start + n] = rows
                self.predictions[start:start + n] = predictions
                self.labels[start:start + n] = self.no_label
                self.probabilities[start:start + n] = probabilities
                self.times[start:start + n] = now
                slots: Any = range(start, start + n)
            else:  # wraps around (or a request larger than the window)
                slots = [(start + i) % self.capacity for i in range(n)]
                for i, slot in enumerate(slots):
                    self.features[slot] = rows[i]
                    self.predictions[slot] = predictions[i]
                    self.labels[slot] = self.no_label
                    self.probabilities[slot] = probabilities[i]
                    self.times[slot] = now
            single = len(request_ids) == n
            for i, slot in enumerate(slots):
                old = self.keys[slot]
                if old is not None and self._slots.get(old) == slot:  # a reused id may point at a newer row
                    del self._slots[old]
                key = request_ids[i] if single else row_key(request_ids[0], i, n)
                self.keys[slot] = key
                self._slots[key] = slot
            self.total += n

    # ---- off the request path --------------------------------------------------------------
    def add_labels(self, keys: Sequence[str], labels: Sequence[float]) -> FeedbackResult:
        """Label recorded rows (class indices, or a regression's values). Each row takes one label:
        repeating it is accepted and counted once, a different one is a LabelConflict and the whole
        call changes nothing."""
        unknown: list[str] = []
        conflicts: list[str] = []
        with self._lock:
            wanted: dict[int, float] = {}
            for key, label in zip(keys, labels, strict=True):
                slot = self._slots.get(key)
                if slot is None:
                    unknown.append(key)
                    continue
                current = wanted.get(slot, self.labels[slot].item())
                if not self._unlabeled(current) and current != label:
                    conflicts.append(key)
                    continue
                wanted[slot] = label
            if conflicts:
                raise LabelConflict(f"ids {conflicts[:5]}{' ...' if len(conflicts) > 5 else ''} already have a different "
                                    f"label; each request id takes one label (nothing was recorded)")
            fresh = [slot for slot in wanted if self._unlabeled(self.labels[slot].item())]
            for slot, label in wanted.items():
                self.labels[slot] = label
            self.labels_received += len(fresh)
        return FeedbackResult(len(keys) - len(unknown), unknown)

    def _unlabeled(self, value: float) -> bool:
        """A slot's label value means "no label yet": NO_LABEL for classes, NaN for a regression."""
        return bool(np.isnan(value)) if self.dtype == np.float64 else value == NO_LABEL

    @property
    def size(self) -> int:
        return min(self.total, self.capacity)

    @property
    def progress(self) -> tuple[int, int]:
        """(rows recorded, labels received): changes whenever there is something new to persist."""
        return self.total, self.labels_received

    @property
    def probability_columns(self) -> list[str]:
        return probability_columns(self.probabilities.shape[1])

    def frame(self) -> pd.DataFrame:
        """The window in arrival order: features, `__prediction__`, `__label__`, ids, times and the
        probability columns."""
        with self._lock:  # only the copies hold the lock (record waits on it); the frame is built after
            n, start = self.size, (self.total + self._offset) % self.capacity
            order = np.arange(start - n, start) % self.capacity if n else np.arange(0)
            features, predictions, labels = self.features[order], self.predictions[order], self.labels[order]
            probabilities = self.probabilities[order]
            keys, times = [self.keys[i] for i in order], self.times[order]
        frame = pd.DataFrame(features.astype(np.float64), columns=self.feature_names)
        frame[PREDICTION_COLUMN] = predictions
        frame[LABEL_COLUMN] = labels
        frame[ID_COLUMN] = keys
        frame[TIME_COLUMN] = times
        for k, column in enumerate(self.probability_columns):
            frame[column] = probabilities[:, k].astype(np.float64)
        return frame

    def save(self, path: Path) -> None:
        """Atomically write the window (parquet) and its counters (parquet metadata)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.frame()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {b"mlplat.window": json.dumps({"total": self.total, "labels_received": self.labels_received}).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Restore a window saved by `save` (a missing file means a fresh start)."""
        import pyarrow.parquet as pq

        if not path.is_file():
            return
        table = pq.read_table(path)
        counters = json.loads((table.schema.metadata or {}).get(b"mlplat.window", b"{}"))
        frame = table.to_pandas()
        missing = [c for c in self.feature_names if c not in frame]
        if missing:
            raise UsageError(f"{path}: saved window lacks features {missing[:5]}; delete it or use the matching model")
        frame = frame.tail(self.capacity)
        with self._lock:
            n = len(frame)
            self.features[:n] = frame[self.feature_names].to_numpy(np.float32)
            self.predictions[:n] = frame[PREDICTION_COLUMN].to_numpy(self.dtype)
            self.labels[:n] = frame[LABEL_COLUMN].to_numpy(self.dtype)
            self.times[:n] = frame[TIME_COLUMN].to_numpy(np.float64)
            for k, column in enumerate(self.probability_columns):  # a window saved before probabilities: NaN
                self.probabilities[:n, k] = frame[column].to_numpy(np.float32) if column in frame else np.nan
            self.keys[:n] = list(frame[ID_COLUMN])
            self._slots = {k: i for i, k in enumerate(self.keys[:n]) if k is not None}
            self.total = max(int(counters.get("total", n)), n)
            self._offset = (n - self.total) % self.capacity  # the next row goes to slot n (mod capacity)
            self.labels_received = int(counters.get("labels_received", 0))
