"""Explainer contract: fit on background data at train time, explain at serve time.

`fit` returns an `ExplainerState` (JSON config + named arrays) that is saved in the model
directory as JSON + safetensors. It is never a pickled explainer: `load` rebuilds the
library object from the state, in whatever library version serving has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mlplat.contracts.context import StepContext

if TYPE_CHECKING:
    import torch


@runtime_checkable
class ModelHandle(Protocol):
    """A loaded model as explainers see it. `predict_proba` takes raw (unpreprocessed) rows.

    A regression model (`mlplat.modeldir.LoadedModel` with `task == "regression"`) has no classes:
    explainers that support it read `task`, attribute `predict_outputs(X)` ([n, 1] values in the
    label's units) or the network's output through `target` (mean, scale), and report `prediction`."""

    feature_names: list[str]
    class_names: list[str]
    network: torch.nn.Module  # takes preprocessed float32 input

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """The predicted classes of probabilities by the model's decision rule: what an explanation explains."""
        ...

    def preprocess(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class ExplainerState:
    config: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    global_importance: dict[str, float] = field(default_factory=dict)  # feature -> mean |attribution|


@runtime_checkable
class BoundExplainer(Protocol):
    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        """One explanation per row: {"attributions": {feature: value}, ...} or anchors."""
        ...


@runtime_checkable
class Explainer(Protocol):
    def fit(self, model: ModelHandle, background: np.ndarray, context: StepContext) -> ExplainerState: ...

    def load(self, model: ModelHandle, state: ExplainerState) -> BoundExplainer: ...
