"""Stratified K-fold cross-validation inside the train step, and the band it reports.

Each fold trains on K-1 parts of the training split, early-stops on the step's validation
split (so the held-out fold stays unseen) and is scored on the held-out fold. The band
(shape documented in mlplat.contracts.trainer) is what monitoring expects in production.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplat.errors import UsageError

METRICS = ("accuracy", "loss")


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, held-out positions) per fold; held-out parts are disjoint and cover every row."""
    from sklearn.model_selection import StratifiedKFold

    present = np.bincount(y)
    smallest = int(present[present > 0].min()) if len(y) else 0
    if smallest < k:  # sklearn would only warn; a fold without some class gives a misleading band
        raise UsageError(f"steps.train.params.cv_folds: {k} folds need at least {k} training rows per class; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    return [(train, held) for train, held in splitter.split(np.zeros(len(y)), y)]


def band(folds: list[dict[str, float]]) -> dict[str, Any]:
    """{"val_accuracy": {"mean", "std"}, "train_accuracy": .., "gap_accuracy": .., ..., "folds": K, "per_fold": [...]}."""
    result: dict[str, Any] = {}
    for metric in METRICS:
        train = np.array([f[f"train_{metric}"] for f in folds], np.float64)
        val = np.array([f[f"val_{metric}"] for f in folds], np.float64)
        gap = train - val  # accuracy: positive = overfit; loss: negative = overfit
        for name, values in ((f"val_{metric}", val), (f"train_{metric}", train), (f"gap_{metric}", gap)):
            result[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    result["folds"] = len(folds)
    result["per_fold"] = folds
    return result
