"""What every explainer plugin shares: the k-means background summary, global importance, and
rebuilding a model's fitted explainer from its directory (JSON + safetensors, never a pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplat import modeldir
from mlplat.contracts.explainer import BoundExplainer, ExplainerState
from mlplat.errors import ModelDirError
from mlplat.registry import StageKind

if TYPE_CHECKING:
    from mlplat.modeldir import LoadedModel


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
    """One JSON-ready explanation per row: attributions keyed by feature name for the predicted class."""
    return [
        {
            "method": method,
            "class": model.class_names[int(cls)],
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


def load_state(directory: Path | modeldir.ModelDir) -> ExplainerState | None:
    """The fitted explainer's state from a model directory; None if no explain step ran."""
    model_dir = directory if isinstance(directory, modeldir.ModelDir) else modeldir.ModelDir(directory)
    manifest = model_dir.read()
    entry = manifest.explainer
    if entry is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    if entry.arrays:
        from safetensors.numpy import load_file

        if not model_dir.explainer_arrays.is_file():
            raise ModelDirError(f"{model_dir.path}: the explainer's arrays {entry.arrays} are recorded "
                                f"but {modeldir.EXPLAINER_ARRAYS} is missing")
        arrays = load_file(str(model_dir.explainer_arrays))
    return ExplainerState(entry.config, arrays, manifest.global_importance or {})


def load_explainer(loaded: LoadedModel) -> BoundExplainer | None:
    """The model's fitted explainer, rebuilt by its plugin from the stored state; None if none was fitted."""
    from mlplat import registry

    state = load_state(loaded.directory)
    if state is None:
        return None
    entry = loaded.manifest.explainer
    assert entry is not None  # load_state found it
    plugin = registry.get(StageKind.EXPLAINER, entry.plugin).create(entry.params)
    return plugin.load(loaded, state)


def importance_html(model_name: str, plugin: str, importance: dict[str, float]) -> str:
    """The explain step's global-importance report: features ranked, with proportional bars."""
    from mlplat.reports import html_page, html_table

    ranked = sorted(importance.items(), key=lambda kv: -kv[1])
    top = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
    rows = [(i + 1, name, f"{value:.4g}", "█" * max(1, round(30 * value / top)) if value > 0 else "")
            for i, (name, value) in enumerate(ranked)]
    table = html_table(["rank", "feature", "importance", ""], rows)
    return html_page(f"{model_name}: global feature importance ({plugin})",
                     [("Mean |attribution| over sampled training rows", table)])
