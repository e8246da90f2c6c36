"""Feature preprocessing fitted on training data and saved with the model as plain numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    """z = (x - mean) / scale; constant features get scale 1 so they pass through centered."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Standardizer:
        if data.get("kind") != "standardize":
            raise ValueError(f"unknown preprocessing kind {data.get('kind')!r}")
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64))
