"""Test-set metrics and the evaluation gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplat.spec import EvaluateGate
from mlplat.tasks import GATE_METRICS


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str],
                           y_pred: np.ndarray | None = None) -> dict[str, Any]:
    """`y_pred`: the predicted classes by the model's decision rule (`LoadedModel.decide`); default the argmax."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

    y_pred = proba.argmax(axis=1) if y_pred is None else y_pred
    labels = list(range(len(classes)))
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "n": int(len(y_true)),
        "confusion_matrix": {"labels": classes, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }
    present = np.unique(y_true)
    if len(classes) == 2 and len(present) == 2:
        metrics["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        fpr, tpr, thresholds = roc_curve(y_true, proba[:, 1])
        metrics["roc_curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.nan_to_num(thresholds, posinf=1.0).tolist()}
    elif len(present) == len(classes):
        metrics["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
    return metrics


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """RMSE and MAE in the label's units, R² (1 - SSE / SST of the test rows), and the residuals' spread."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    residual = y_pred - y_true
    total = float(((y_true - y_true.mean()) ** 2).sum()) if len(y_true) else 0.0
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))) if len(y_true) else float("nan"),
        "mae": float(np.mean(np.abs(residual))) if len(y_true) else float("nan"),
        "r2": 1.0 - float((residual**2).sum()) / total if total > 0 else float("nan"),
        "mean_residual": float(residual.mean()) if len(y_true) else float("nan"),
        "n": int(len(y_true)),
    }


def gate_failures(metrics: dict[str, Any], gate: EvaluateGate) -> list[str]:
    """Each bar the metrics miss; a `min_` bar is a floor, a `max_` bar a ceiling (mlplat.tasks.GATE_METRICS)."""
    failures = []
    for field, (key, _) in GATE_METRICS.items():
        bar, value = getattr(gate, field), metrics.get(key)
        if bar is None:
            continue
        ceiling = field.startswith("max_")
        if value is None or not np.isfinite(value) or (value > bar if ceiling else value < bar):
            shown = "missing" if value is None else f"{value:.4f}"
            failures.append(f"test {key} {shown} {'>' if ceiling else '<'} {field} {bar}")
    return failures
