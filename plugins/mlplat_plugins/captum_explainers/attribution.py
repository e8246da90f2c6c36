"""captum attribution methods on the model's torch network, from the k-means background.

Integrated gradients is averaged over paths from every centroid, weighted by the share of rows it
stands for (by default): a single mean baseline sits on the decision boundary of an interaction
(x0 * x1 at the origin) and lets features the model barely uses take a large share; over the
centroids the average approaches the interventional Shapley values of the same background.
LIME masks features to the background's weighted mean.

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
    """A captum attribution method bound to a model and its baselines: the background centroids and their
    weights, or their weighted mean as a single baseline."""

    def __init__(self, model: ModelHandle, state: ExplainerState, method: str, options: dict[str, Any]) -> None:
        import torch

        self.model, self.method, self.options = model, method, options
        centroids, weights = state.arrays["background"], state.arrays["weights"].astype(np.float64)
        if method == "lime" or options.get("baseline") == "mean":
            centroids, weights = (centroids * weights[:, None]).sum(axis=0, keepdims=True), np.ones(1)
        self.baselines = torch.from_numpy(model.preprocess(centroids).astype(np.float32))  # [K, F]
        self.weights = weights / weights.sum()
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
            from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge
            from captum.attr import Lime

            surrogate = SkLearnLasso if options["surrogate"] == "lasso" else SkLearnRidge
            self.attributor = Lime(self.forward, interpretable_model=surrogate(alpha=options["alpha"]))

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        inputs = torch.from_numpy(self.model.preprocess(np.asarray(X, dtype=np.float32)).astype(np.float32))
        with torch.no_grad():
            outputs = self.forward(inputs)
            # a regression's one output: target 0; a classifier's class by its decision rule
            predicted = outputs.argmax(dim=1) if self.regression else torch.as_tensor(self.model.decide(outputs.numpy()))
            base = (self.weights @ self.forward(self.baselines)[:, predicted].double().numpy())
        if self.method == "integrated_gradients":
            # every (centroid, row) path in one captum call, block k holding centroid k's paths; completeness
            # per path, so the weighted sum over centroids adds up to f(x) - base
            k, n = len(self.baselines), len(inputs)
            paths = self.attributor.attribute(inputs.repeat(k, 1), baselines=self.baselines.repeat_interleave(n, dim=0),
                                              target=predicted.repeat(k), n_steps=self.options["n_steps"],
                                              internal_batch_size=4096)
            values = np.einsum("k,knf->nf", self.weights, paths.detach().double().numpy().reshape(k, n, -1))
        else:
            torch.manual_seed(self.options["seed"])
            baselines = self.baselines.expand_as(inputs)
            values = torch.cat([
                self.attributor.attribute(inputs[i:i + 1], baselines=baselines[i:i + 1], target=int(predicted[i]),
                                          n_samples=self.options["n_samples"], perturbations_per_eval=self.options["n_samples"])
                for i in range(len(inputs))
            ]).detach().numpy()
        shown = outputs[:, 0].numpy() if self.regression else predicted.numpy()  # the value, or the class
        return np.asarray(values), shown, base

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        return attribution_records(self.model, *self.attributions(X), method=self.method)


class IntegratedGradientsExplainer(BackgroundAttributionExplainer):
    def bound(self, model: ModelHandle, state: ExplainerState, config: IntegratedGradientsConfig) -> BoundAttribution:
        return BoundAttribution(model, state, "integrated_gradients", config.model_dump())


class LimeExplainer(BackgroundAttributionExplainer):
    def bound(self, model: ModelHandle, state: ExplainerState, config: LimeConfig) -> BoundAttribution:
        return BoundAttribution(model, state, "lime", config.model_dump())
