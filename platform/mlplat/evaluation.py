"""Test-set metrics and the evaluation gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplat.spec import EvaluateGate


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

    y_pred = proba.argmax(axis=1)
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


def gate_failures(metrics: dict[str, Any], gate: EvaluateGate) -> list[str]:
    failures = []
    for field, key in (("min_accuracy", "accuracy"), ("min_f1", "f1"), ("min_roc_auc", "roc_auc")):
        bar, value = getattr(gate, field), metrics.get(key)
        if bar is not None and (value is None or value < bar):
            failures.append(f"test {key} {'missing' if value is None else f'{value:.4f}'} < {field} {bar}")
    return failures
