"""Drift-detector contract: compare a window of production rows with the training reference.

`fit` summarizes the reference once (cached statistics, JSON-able) so that `detect`
only computes what is exported. Scores follow the library's convention (Evidently's
per-column drift score: a p-value or a distance, named by `test`).

Two verdicts per column: `library_drifted` is the library's own default verdict (what a
plain Evidently report would say); `drifted` is the detector's alerting verdict after its
noise control (minimum window, multiple-testing correction, effect size, importance).
`dataset_drift` is the alerting verdict for the whole window. Hysteresis across windows
belongs to the caller (the monitor), which sees the sequence of windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from mlplat.contracts.context import StepContext

PREDICTION_COLUMN = "__prediction__"
PROBABILITY_PREFIX = "__probability_"  # a classifier's class probabilities: __probability_0__, ... (outputs, not features)


def probability_columns(n_classes: int) -> list[str]:
    return [f"{PROBABILITY_PREFIX}{k}__" for k in range(n_classes)]


def is_feature_column(column: str) -> bool:
    """Columns a detector tests as input features: not the prediction, not the class probabilities."""
    return column != PREDICTION_COLUMN and not column.startswith(PROBABILITY_PREFIX)


@dataclass
class FeatureDrift:
    feature: str
    score: float
    drifted: bool
    test: str
    p_value: float | None = None
    effect_size: float | None = None
    library_drifted: bool | None = None
    importance: float | None = None  # normalized weight of the feature in the alerting verdict
    critical: bool = False  # a top-importance feature drifted (after noise control): the critical alert


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    share: float  # share of drifted features (alerting verdicts), unweighted
    dataset_drift: bool
    prediction: FeatureDrift | None = None
    details: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    weighted_share: float | None = None  # importance-weighted share of drifted features
    library_dataset_drift: bool | None = None  # the library's own dataset-level verdict
    probabilities: list[FeatureDrift] = field(default_factory=list)  # output drift: per class, its probability's test
    output_drift: bool = False  # the output distribution drifted (any class's probability, after noise control)

    @property
    def critical(self) -> bool:
        """The critical verdict: a top-importance feature or the model's output distribution drifted."""
        return self.output_drift or any(f.critical for f in self.features)


@runtime_checkable
class DriftDetector(Protocol):
    def fit(
        self, reference: pd.DataFrame, context: StepContext, importance: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        """Summarize the reference (features plus a `__prediction__` column if present).

        `importance` is the explain step's global importance (feature -> mean |attribution|);
        features the model ignores should not raise the alerting verdict.
        """
        ...

    def detect(self, reference_state: dict[str, Any], current: pd.DataFrame) -> DriftResult: ...

    def write_report(self, reference: pd.DataFrame, current: pd.DataFrame, path: Path) -> None:
        """Write the library's human-readable HTML report for this window (slow; off the request path)."""
        ...
