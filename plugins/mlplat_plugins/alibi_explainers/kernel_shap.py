"""alibi KernelShap rebuilt from stored k-means centroids + weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from mlplat.contracts.explainer import ExplainerState, ModelHandle
from mlplat.explainer_kit import BackgroundAttributionExplainer, attribution_records

from mlplat_plugins.alibi_explainers import KernelShapConfig


class BoundKernelShap:
    def __init__(self, model: ModelHandle, state: ExplainerState, config: KernelShapConfig) -> None:
        from alibi.explainers import KernelShap

        self.model, self.config = model, config
        self.explainer = KernelShap(model.predict_proba, link=config.link, feature_names=model.feature_names,
                                    seed=config.seed)
        self.explainer.fit(state.arrays["background"], weights=state.arrays["weights"])

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(attributions of the predicted class [n, F], predicted classes, base values)."""
        explanation = self.explainer.explain(np.asarray(X, dtype=np.float32), nsamples=self.config.nsamples,
                                             l1_reg=False, silent=True)
        shap_values = np.stack(explanation.shap_values)  # [classes, n, F]
        predicted = np.asarray(explanation.raw["prediction"]).reshape(len(X))
        rows = np.arange(len(X))
        base = np.asarray(explanation.expected_value)[predicted]
        return shap_values[predicted, rows], predicted, base

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        return attribution_records(self.model, *self.attributions(X), method="kernel_shap")


class AlibiKernelShap(BackgroundAttributionExplainer):
    bound = BoundKernelShap
