"""Helpers for explainer plugins: the k-means background summary, global importance, JSON-ready
attribution records, and `BackgroundAttributionExplainer`, the fit/load every attribution explainer
shares. Plugin code imports these; the core's serving side never needs them."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplat.contracts.explainer import ExplainerState


def summarize_background(rows: np.ndarray, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means centroids of the background rows and the share of rows each one stands for.

    Explanation cost grows linearly with background size, so a weighted handful of centroids
    replaces hundreds of raw rows at almost the same expected value.
    """
    from sklearn.cluster import KMeans

    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) <= clusters:
        return rows.astype(np.float32), np.full(len(rows), 1.0 / len(rows), dtype=np.float32)
    kmeans = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(rows)
    weights = np.bincount(kmeans.labels_, minlength=clusters).astype(np.float64)
    return kmeans.cluster_centers_.astype(np.float32), (weights / weights.sum()).astype(np.float32)


def sample_rows(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(rows) <= size:
        return rows
    return rows[np.random.default_rng(seed).choice(len(rows), size, replace=False)]


def mean_abs_importance(attributions: np.ndarray, feature_names: list[str]) -> dict[str, float]:
    """Global importance: mean |attribution| per feature over the explained rows."""
    values = np.abs(np.asarray(attributions, dtype=np.float64)).mean(axis=0)
    return {name: float(v) for name, v in zip(feature_names, values, strict=True)}


def attribution_records(model: Any, attributions: np.ndarray, predicted: np.ndarray, base_values: np.ndarray,
                        method: str) -> list[dict[str, Any]]:
    """One JSON-ready explanation per row: attributions keyed by feature name for the predicted class,
    or for a regression (`predicted` holds values) of the predicted value."""
    regression = getattr(model, "task", "classification") == "regression"
    return [
        {
            "method": method,
            **({"prediction": float(cls)} if regression else {"class": model.class_names[int(cls)]}),
            "base_value": float(base),
            "attributions": {name: float(v) for name, v in zip(model.feature_names, row, strict=True)},
        }
        for row, cls, base in zip(attributions, predicted, base_values, strict=True)
    ]


class BackgroundAttributionExplainer:
    """Fit and load shared by the attribution explainers: the background becomes weighted k-means
    centroids, and global importance is the mean |attribution| over a sample of training rows.

    Subclasses set `bound`, a class built as `bound(model, state, config)` with
    `attributions(X) -> (values [n, F], predicted [n], base values [n])` and `explain(X)`.
    The config needs `background_clusters` and `importance_rows`.
    """

    bound: Any

    def __init__(self, config: Any) -> None:
        self.config = config

    def fit(self, model: Any, background: np.ndarray, context: Any) -> ExplainerState:
        centroids, weights = summarize_background(background, self.config.background_clusters, context.seed)
        state = ExplainerState(config=self.config.model_dump(), arrays={"background": centroids, "weights": weights})
        values, _, _ = self.load(model, state).attributions(sample_rows(background, self.config.importance_rows, context.seed))
        state.global_importance = mean_abs_importance(values, model.feature_names)
        return state

    def load(self, model: Any, state: ExplainerState) -> Any:
        return self.bound(model, state, self.config)
