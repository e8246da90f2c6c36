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


@dataclass(frozen=True)
class TargetStandardizer:
    """A regression target as the network learns it: z = (y - mean) / scale, fitted on training rows.
    Scaling the target keeps the loss and the learning rate's meaning independent of the label's units."""

    mean: float
    scale: float

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetStandardizer:
        y = np.asarray(y, dtype=np.float64)
        std = float(y.std())
        return cls(float(y.mean()), std if std > 1e-12 else 1.0)

    def transform(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.scale + self.mean

    def to_json(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetStandardizer:
        if data.get("kind") != "standardize":
            raise ValueError(f"unknown target scaling kind {data.get('kind')!r}")
        return cls(float(data["mean"]), float(data["scale"]))
