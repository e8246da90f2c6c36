"""Drift of an image model's requests, on the features `mlplat.embeddings` records per image.

- embedding: the squared MMD between reference and window embeddings with an RBF kernel whose bandwidth is
  the median pairwise distance of the reference (median heuristic), and a permutation p-value. The window's
  data drift verdict (`dataset_drift`, the data drift gauge and alert).
- outputs: a two-sample KS test per class on the softmax probabilities, Bonferroni-corrected: the
  `prediction` verdict (the prediction drift gauge and alert). Output drift is what tracks lost accuracy:
  a shift the network is invariant to moves the embeddings a little and the outputs not at all.
- statistics (brightness, contrast, width, height): KS per statistic, Bonferroni-corrected; reported per
  feature, never alone a drifted window.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts.context import StepContext
from mlplat.contracts.drift_detector import PREDICTION_COLUMN, DriftResult, FeatureDrift
from mlplat.embeddings import EMBEDDING_PREFIX, PROBABILITY_PREFIX
from mlplat.errors import UsageError
from scipy import stats

from mlplat_plugins.image_drift import ImageDriftConfig

STATE_VERSION = 1
EMBEDDING = "embedding"


def _columns(frame: pd.DataFrame | list[str]) -> tuple[list[str], list[str], list[str]]:
    names = [c for c in (frame.columns if isinstance(frame, pd.DataFrame) else frame) if c != PREDICTION_COLUMN]
    embedding = [c for c in names if c.startswith(EMBEDDING_PREFIX)]
    outputs = [c for c in names if c.startswith(PROBABILITY_PREFIX)]
    return embedding, outputs, [c for c in names if c not in embedding and c not in outputs]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def mmd_permutation(reference: np.ndarray, window: np.ndarray, bandwidth: float, permutations: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """(squared MMD, permutation p-value) of two samples under the RBF kernel exp(-d² / (2 bandwidth²))."""
    pooled = np.concatenate([reference, window])
    kernel = np.exp(-squared_distances(pooled, pooled) / (2 * bandwidth**2))
    m, n = len(reference), len(window)
    # MMD² of a split = sᵀ K s with s = +1/m on the first sample and -1/n on the second: all permutations at once
    signs = np.empty((len(pooled), permutations + 1))
    base = np.concatenate([np.full(m, 1 / m), np.full(n, -1 / n)])
    signs[:, 0] = base
    for k in range(1, permutations + 1):
        signs[:, k] = rng.permutation(base)
    values = np.einsum("ik,ik->k", kernel @ signs, signs)
    observed = float(values[0])
    return observed, float((1 + np.count_nonzero(values[1:] >= observed)) / (permutations + 1))


class ImageDriftDetector:
    def __init__(self, config: ImageDriftConfig) -> None:
        self.config = config

    def fit(self, reference: pd.DataFrame, context: StepContext | None = None,
            importance: Mapping[str, float] | None = None) -> dict[str, Any]:
        embedding, outputs, statistics = _columns(reference)
        if not embedding or not outputs:
            raise UsageError(f"image_drift needs an image model's reference ({EMBEDDING_PREFIX}* and {PROBABILITY_PREFIX}* "
                             f"columns, mlplat.embeddings); got columns {list(reference.columns)[:5]}")
        rng = np.random.default_rng(self.config.seed)
        rows = rng.choice(len(reference), size=min(self.config.reference_rows, len(reference)), replace=False)
        sample = reference.iloc[np.sort(rows)]
        vectors = sample[embedding].to_numpy(np.float64)
        distances = squared_distances(vectors, vectors)[np.triu_indices(len(vectors), 1)]
        bandwidth = float(np.sqrt(np.median(distances) / 2)) if len(distances) else 1.0
        return {"version": STATE_VERSION, "embedding_columns": embedding, "bandwidth": max(bandwidth, 1e-6),
                "embedding": vectors.tolist(),
                "columns": {c: np.sort(sample[c].to_numpy(np.float64)).tolist() for c in [*outputs, *statistics]},
                "outputs": outputs, "statistics": statistics}

    def detect(self, reference_state: dict[str, Any], current: pd.DataFrame) -> DriftResult:
        if reference_state.get("version") != STATE_VERSION:
            raise UsageError(f"image_drift state version {reference_state.get('version')!r}; refit the drift step")
        config = self.config
        window = current.tail(config.window_rows) if len(current) > config.window_rows else current
        enough = len(window) >= config.min_window
        rng = np.random.default_rng(config.seed)
        mmd, p_embedding = mmd_permutation(np.asarray(reference_state["embedding"]),
                                           window[reference_state["embedding_columns"]].to_numpy(np.float64),
                                           reference_state["bandwidth"], config.permutations, rng)
        embedding = FeatureDrift(EMBEDDING, p_embedding, enough and p_embedding < config.embedding_alpha, "mmd_rbf_permutation",
                                 p_value=p_embedding, effect_size=mmd, library_drifted=p_embedding < 0.05)
        outputs = self._ks(reference_state, window, reference_state["outputs"], config.output_alpha, enough)
        statistics = self._ks(reference_state, window, reference_state["statistics"], config.statistics_alpha, enough)
        p_output = min(1.0, min(1.0 if f.p_value is None else f.p_value for f in outputs) * len(outputs))  # p may be 0.0
        prediction = FeatureDrift(PREDICTION_COLUMN, p_output, any(f.drifted for f in outputs), "ks_per_class_bonferroni",
                                  p_value=p_output, effect_size=max(f.effect_size or 0.0 for f in outputs),
                                  library_drifted=p_output < 0.05)
        features = [embedding, *outputs, *statistics]
        share = sum(f.drifted for f in features) / len(features)
        return DriftResult(features=features, share=share, dataset_drift=embedding.drifted, prediction=prediction,
                           rows=len(window), weighted_share=share, library_dataset_drift=embedding.library_drifted,
                           details={"mmd2": mmd, "bandwidth": reference_state["bandwidth"]})

    @staticmethod
    def _ks(state: dict[str, Any], window: pd.DataFrame, columns: list[str], alpha: float, enough: bool) -> list[FeatureDrift]:
        out = []
        for column in columns:
            result = stats.ks_2samp(np.asarray(state["columns"][column]), window[column].to_numpy(np.float64))
            p = float(result.pvalue)
            out.append(FeatureDrift(column, p, enough and p * len(columns) < alpha, "ks_bonferroni", p_value=p,
                                    effect_size=float(result.statistic), library_drifted=p < 0.05))
        return out

    def write_report(self, reference: pd.DataFrame, current: pd.DataFrame, path: Path) -> None:
        """A small HTML table of the window's tests (Evidently's report knows no embeddings' MMD)."""
        result = self.detect(self.fit(reference), current)
        rows = "".join(f"<tr><td>{escape(f.feature)}</td><td>{f.test}</td><td>{f.score:.4g}</td>"
                       f"<td>{(f.effect_size or 0):.4g}</td><td>{'drifted' if f.drifted else ''}</td></tr>"
                       for f in [*result.features, *([result.prediction] if result.prediction else [])])
        path.write_text(f"<html><body><h1>Image drift ({result.rows} rows)</h1><table border=1><tr><th>feature</th>"
                        f"<th>test</th><th>p-value</th><th>effect</th><th></th></tr>{rows}</table></body></html>")
