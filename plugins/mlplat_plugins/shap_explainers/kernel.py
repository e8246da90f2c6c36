"""shap.KernelExplainer rebuilt from stored k-means centroids + weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from mlplat.contracts.explainer import ExplainerState, ModelHandle
from mlplat.explainer_kit import BackgroundAttributionExplainer, attribution_records

from mlplat_plugins.shap_explainers import ShapKernelConfig


class BoundShapKernel:
    def __init__(self, model: ModelHandle, state: ExplainerState, config: ShapKernelConfig) -> None:
        import shap
        from shap.utils._legacy import DenseData

        self.model, self.config = model, config
        # weighted centroids, as shap.kmeans would return them, rebuilt from plain arrays
        background = DenseData(state.arrays["background"].astype(np.float64), list(model.feature_names), None,
                               state.arrays["weights"].astype(np.float64))
        self.explainer = shap.KernelExplainer(model.predict_proba, background, link=config.link)

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(attributions of the predicted class [n, F], predicted classes, base values)."""
        X = np.asarray(X, dtype=np.float64)
        np.random.seed(self.config.seed)  # KernelExplainer samples coalitions from numpy's global state
        shap_values = np.stack(self.explainer.shap_values(X, nsamples=self.config.nsamples, l1_reg=False,
                                                          silent=True))  # [classes, n, F]
        predicted = self.model.decide(self.model.predict_proba(X.astype(np.float32)))
        base = np.asarray(self.explainer.expected_value)[predicted]
        return shap_values[predicted, np.arange(len(X))], predicted, base

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        return attribution_records(self.model, *self.attributions(X), method="shap_kernel")


class ShapKernel(BackgroundAttributionExplainer):
    bound = BoundShapKernel
