"""Drift-detector contract: compare a window of production rows with the training reference.

`fit` summarizes the reference once (cached statistics, JSON-able) so that `detect`
only computes what is exported. Scores follow the library's convention (Evidently's
per-column drift score); `drifted` is the detector's verdict after its own thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from mlplat.contracts.context import StepContext


@dataclass
class FeatureDrift:
    feature: str
    score: float
    drifted: bool
    test: str
    p_value: float | None = None
    effect_size: float | None = None


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    share: float  # share of drifted features
    dataset_drift: bool
    prediction: FeatureDrift | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class DriftDetector(Protocol):
    def fit(self, reference: pd.DataFrame, context: StepContext) -> dict[str, Any]:
        """Summarize the reference (features plus a `__prediction__` column if present)."""
        ...

    def detect(self, reference_state: dict[str, Any], current: pd.DataFrame) -> DriftResult: ...
