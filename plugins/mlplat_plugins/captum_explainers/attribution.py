"""captum attribution methods on the model's torch network, from a k-means background baseline.

Standardization is per feature, so attributions on the preprocessed input belong one-to-one to
the raw features; they are in probability units of the predicted class, or for a regression in
the label's units of the predicted value (the network's output de-standardized).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlplat.contracts.explainer import ExplainerState, ModelHandle
from mlplat.explainer_kit import BackgroundAttributionExplainer, attribution_records

from mlplat_plugins.captum_explainers import IntegratedGradientsConfig, LimeConfig


class BoundAttribution:
    """A captum attribution method bound to a model and a baseline (the background's weighted mean)."""

    def __init__(self, model: ModelHandle, state: ExplainerState, method: str, options: dict[str, Any]) -> None:
        import torch

        self.model, self.method, self.options = model, method, options
        baseline_raw = (state.arrays["background"] * state.arrays["weights"][:, None]).sum(axis=0, keepdims=True)
        self.baseline = torch.from_numpy(model.preprocess(baseline_raw).astype(np.float32))
        network = model.network
        target = getattr(model, "target", None)  # a regression's target scaling (LoadedModel.target)
        self.regression = target is not None
        if target is not None:
            mean, scale = float(target.mean), float(target.scale)
            self.forward = lambda z: network(z).float()[:, :1] * scale + mean
        else:
            self.forward = lambda z: torch.softmax(network(z).float(), dim=1)
        if method == "integrated_gradients":
            from captum.attr import IntegratedGradients

            self.attributor: Any = IntegratedGradients(self.forward)
        else:
            from captum._utils.models.linear_model import SkLearnRidge
            from captum.attr import Lime

            self.attributor = Lime(self.forward, interpretable_model=SkLearnRidge(alpha=options["ridge_alpha"]))

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        inputs = torch.from_numpy(self.model.preprocess(np.asarray(X, dtype=np.float32)).astype(np.float32))
        with torch.no_grad():
            outputs = self.forward(inputs)
            # a regression's one output: target 0; a classifier's class by its decision rule
            predicted = outputs.argmax(dim=1) if self.regression else torch.as_tensor(self.model.decide(outputs.numpy()))
            base = self.forward(self.baseline)[0, predicted].numpy()
        baselines = self.baseline.expand_as(inputs)
        if self.method == "integrated_gradients":
            values = self.attributor.attribute(inputs, baselines=baselines, target=predicted,
                                               n_steps=self.options["n_steps"], internal_batch_size=4096)
        else:
            torch.manual_seed(self.options["seed"])
            values = torch.cat([
                self.attributor.attribute(inputs[i:i + 1], baselines=baselines[i:i + 1], target=int(predicted[i]),
                                          n_samples=self.options["n_samples"], perturbations_per_eval=self.options["n_samples"])
                for i in range(len(inputs))
            ])
        shown = outputs[:, 0].numpy() if self.regression else predicted.numpy()  # the value, or the class
        return values.detach().numpy(), shown, base

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        return attribution_records(self.model, *self.attributions(X), method=self.method)


class IntegratedGradientsExplainer(BackgroundAttributionExplainer):
    def bound(self, model: ModelHandle, state: ExplainerState, config: IntegratedGradientsConfig) -> BoundAttribution:
        return BoundAttribution(model, state, "integrated_gradients", config.model_dump())


class LimeExplainer(BackgroundAttributionExplainer):
    def bound(self, model: ModelHandle, state: ExplainerState, config: LimeConfig) -> BoundAttribution:
        return BoundAttribution(model, state, "lime", config.model_dump())
