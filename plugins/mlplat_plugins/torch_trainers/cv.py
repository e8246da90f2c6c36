"""Stratified K-fold cross-validation inside the train step, and the band it reports.

Each fold trains on K-1 parts of the training split, early-stops on the step's validation
split (so the held-out fold stays unseen) and is scored on the held-out fold (`score_fold`:
loss, accuracy and macro F1). The band (shape documented in mlplat.contracts.trainer) is what
monitoring expects in production: its generalization gap is (live - CV mean) / CV std per metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from mlplat.errors import SpecError

if TYPE_CHECKING:
    import torch
    from mlplat.contracts.trainer import ArrayData, ImageSet
    from torch import nn

    from mlplat_plugins.torch_trainers import TrainingConfig

METRICS = ("accuracy", "loss", "f1")  # f1: macro F1, the monitor's `mlplat_generalization_gap{metric="f1"}`
REGRESSION_METRICS = ("rmse", "mae", "r2", "loss")  # rmse/mae in the label's units; loss on the standardized target


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, held-out positions) per fold; held-out parts are disjoint and cover every row."""
    from sklearn.model_selection import StratifiedKFold

    present = np.bincount(y)
    smallest = int(present[present > 0].min()) if len(y) else 0
    if smallest < k:  # sklearn would only warn; a fold without some class gives a misleading band
        raise SpecError([("cv_folds", f"{k} folds need at least {k} training rows per class; the smallest class has {smallest}")])
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    return [(train, held) for train, held in splitter.split(np.zeros(len(y)), y)]


def kfold(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold positions over n rows (a regression's folds: there are no classes to stratify)."""
    from sklearn.model_selection import KFold

    if n < 2 * k:
        raise SpecError([("cv_folds", f"{k} folds need at least {2 * k} real training rows; there are {n}")])
    return list(KFold(n_splits=k, shuffle=True, random_state=seed % 2**32).split(np.zeros(n)))


def score_regression_fold(network: nn.Module, part: ArrayData | ImageSet, prefix: str, config: TrainingConfig,
                          device: torch.device, objective: Any) -> dict[str, float]:
    """`{prefix}_loss`, `_rmse`, `_mae` and `_r2` of `network` on `part` (objectives.Regression.scores)."""
    from mlplat_plugins.torch_trainers import engine

    _, scores = engine.evaluate_scores(network, part, config, device, objective)
    return {f"{prefix}_{k}": v for k, v in scores.items()}


def score_fold(network: nn.Module, part: ArrayData | ImageSet, prefix: str, config: TrainingConfig, device: torch.device,
               n_classes: int) -> dict[str, float]:
    """`{prefix}_loss`, `{prefix}_accuracy` and `{prefix}_f1` (macro over all classes) of `network` on `part`."""
    from sklearn.metrics import f1_score

    from mlplat_plugins.torch_trainers import engine

    logits, loss, accuracy = engine.evaluate(network, part, config, device)
    predicted = logits.argmax(1).cpu().numpy() if len(part.y) else np.zeros(0, np.int64)
    f1 = f1_score(part.y, predicted, average="macro", labels=list(range(n_classes)), zero_division=0)
    return {f"{prefix}_loss": loss, f"{prefix}_accuracy": accuracy, f"{prefix}_f1": float(f1)}


def band(folds: list[dict[str, float]], metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
    """{"val_accuracy": {"mean", "std"}, "train_accuracy": .., "gap_accuracy": .., ..., "folds": K, "per_fold": [...]}.

    A metric enters the band only when every fold reports it (train and val)."""
    result: dict[str, Any] = {}
    for metric in metrics:
        if not all(f"train_{metric}" in f and f"val_{metric}" in f for f in folds):
            continue
        train = np.array([f[f"train_{metric}"] for f in folds], np.float64)
        val = np.array([f[f"val_{metric}"] for f in folds], np.float64)
        gap = train - val  # accuracy: positive = overfit; loss: negative = overfit
        for name, values in ((f"val_{metric}", val), (f"train_{metric}", train), (f"gap_{metric}", gap)):
            result[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    result["folds"] = len(folds)
    result["per_fold"] = folds
    return result
