"""alibi KernelShap rebuilt from stored k-means centroids + weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from mlplat.contracts.explainer import ExplainerState, ModelHandle
from mlplat.errors import UsageError
from mlplat.explainer_kit import BackgroundAttributionExplainer, attribution_records

from mlplat_plugins.alibi_explainers import KernelShapConfig


class BoundKernelShap:
    def __init__(self, model: ModelHandle, state: ExplainerState, config: KernelShapConfig) -> None:
        from alibi.explainers import KernelShap

        self.model, self.config = model, config
        self.regression = getattr(model, "task", "classification") == "regression"
        if self.regression and config.link != "identity":
            raise UsageError("steps.explain.params.link: a regression's value has no log-odds; use link: identity")
        # [n, 1] values for a regression (LoadedModel.predict_outputs), class probabilities otherwise
        predict = getattr(model, "predict_outputs") if self.regression else model.predict_proba  # noqa: B009
        self.explainer = KernelShap(predict, link=config.link, feature_names=model.feature_names, seed=config.seed,
                                    task="regression" if self.regression else "classification")
        self.explainer.fit(state.arrays["background"], weights=state.arrays["weights"])

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(attributions of the predicted class [n, F], predicted classes, base values); for a regression
        the attributions of the predicted value and the values themselves."""
        explanation = self.explainer.explain(np.asarray(X, dtype=np.float32), nsamples=self.config.nsamples,
                                             l1_reg=False, silent=True)
        shap_values = np.stack(explanation.shap_values)  # [classes, n, F] ([1, n, F] for a regression)
        if self.regression:
            values = np.asarray(explanation.raw["raw_prediction"], np.float64).reshape(len(X))
            return shap_values[0], values, np.full(len(X), float(np.ravel(explanation.expected_value)[0]))
        predicted = self.model.decide(self.model.predict_proba(np.asarray(X, dtype=np.float32)))  # alibi's is the argmax
        rows = np.arange(len(X))
        base = np.asarray(explanation.expected_value)[predicted]
        return shap_values[predicted, rows], predicted, base

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        return attribution_records(self.model, *self.attributions(X), method="kernel_shap")


class AlibiKernelShap(BackgroundAttributionExplainer):
    bound = BoundKernelShap
