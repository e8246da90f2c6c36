"""alibi AnchorTabular rebuilt from a stored sample of training rows (data, not a pickle)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from mlplat.contracts.context import StepContext
from mlplat.contracts.explainer import ExplainerState, ModelHandle
from mlplat.explainer_kit import sample_rows

from mlplat_plugins.alibi_explainers import AnchorsConfig


class BoundAnchors:
    def __init__(self, model: ModelHandle, state: ExplainerState, config: AnchorsConfig) -> None:
        from alibi.explainers import AnchorTabular

        self.model, self.config = model, config
        self.explainer = AnchorTabular(lambda X: model.decide(model.predict_proba(X)), model.feature_names,
                                       seed=config.seed)
        self.explainer.fit(state.arrays["train_sample"], disc_perc=tuple(config.disc_perc))

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for row in np.asarray(X, dtype=np.float32):
            explanation = self.explainer.explain(row, threshold=self.config.threshold,
                                                 coverage_samples=self.config.coverage_samples,
                                                 beam_size=self.config.beam_size)
            out.append({
                "method": "anchors",
                "class": self.model.class_names[int(explanation.raw["prediction"][0])],
                "anchor": list(explanation.anchor),
                "features": [self.model.feature_names[i] for i in explanation.raw["feature"]],
                "precision": float(np.asarray(explanation.precision).item()),
                "coverage": float(explanation.coverage),
            })
        return out


class AlibiAnchors:
    def __init__(self, config: AnchorsConfig) -> None:
        self.config = config

    def fit(self, model: ModelHandle, background: np.ndarray, context: StepContext) -> ExplainerState:
        train = sample_rows(np.asarray(background, dtype=np.float32), self.config.train_rows, context.seed)
        state = ExplainerState(config={"threshold": self.config.threshold}, arrays={"train_sample": train})
        anchors = self.load(model, state).explain(sample_rows(train, self.config.importance_rows, context.seed + 1))
        # global importance of a rule explainer: how often each feature appears in an anchor
        counts = Counter(name for a in anchors for name in a["features"])
        state.global_importance = {name: counts[name] / len(anchors) for name in model.feature_names}
        return state

    def load(self, model: ModelHandle, state: ExplainerState) -> BoundAnchors:
        return BoundAnchors(model, state, self.config)
