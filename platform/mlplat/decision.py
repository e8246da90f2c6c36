"""The decision rule: class probabilities -> the predicted class (`ModelManifest.decision`).

`decide` is the one place a classifier's probabilities become a class, in evaluation, serving,
explanation and monitoring; a model without a rule predicts the argmax. `choose_offsets` picks
per-class offsets on out-of-sample predictions (the trainer's out-of-fold ones) that maximize
balanced accuracy: on an imbalanced split a network's argmax favours the majority even when it
ranks the rows well, and moving the boundary recovers what the ranking knows.
"""

from __future__ import annotations

import numpy as np

from mlplat.manifest import Decision

_FLOOR = 1e-12  # log of a zero probability stays finite


def decide(probabilities: np.ndarray, decision: Decision | None) -> np.ndarray:
    """Predicted class indices [n]: argmax(log p + offsets), or the argmax without a rule."""
    if decision is None or decision.kind == "argmax" or not decision.offsets:
        return np.asarray(probabilities).argmax(axis=1)
    return (np.log(np.clip(probabilities, _FLOOR, None)) + np.asarray(decision.offsets)).argmax(axis=1)


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in y."""
    counts = np.bincount(y, minlength=n_classes)
    hits = np.bincount(y[predicted == y], minlength=n_classes)
    present = counts > 0
    return float((hits[present] / counts[present]).mean())


def choose_offsets(probabilities: np.ndarray, y: np.ndarray, selected_on: str) -> Decision:
    """The decision rule for out-of-sample (probabilities, y): `balanced_accuracy_offsets`, or argmax when
    no offset improves on it; with the balanced accuracy on those rows before and after."""
    probabilities, y = np.asarray(probabilities, np.float64), np.asarray(y, np.int64)
    n_classes = probabilities.shape[1]
    scores = np.log(np.clip(probabilities, _FLOOR, None))
    argmax_score = balanced_accuracy(y, scores.argmax(1), n_classes)
    offsets = balanced_accuracy_offsets(probabilities, y)
    best = balanced_accuracy(y, (scores + offsets).argmax(1), n_classes)
    if not offsets.any():
        return Decision(kind="argmax", selected_on=selected_on, rows=len(y), balanced_accuracy=best,
                        argmax_balanced_accuracy=argmax_score)
    threshold = float(1 / (1 + np.exp(offsets[1] - offsets[0]))) if n_classes == 2 else None
    return Decision(kind="offsets", offsets=offsets.tolist(), threshold=threshold, selected_on=selected_on, rows=len(y),
                    balanced_accuracy=best, argmax_balanced_accuracy=argmax_score)


def balanced_accuracy_offsets(probabilities: np.ndarray, y: np.ndarray, max_candidates: int = 256,
                              passes: int = 2) -> np.ndarray:
    """Per-class offsets maximizing balanced accuracy on (probabilities, y), by coordinate search.

    Class 0 keeps offset 0 (only differences matter). For class c every boundary position that
    changes a row's decision is a candidate; among the best ones the middle is kept (the widest
    margin a handful of minority rows allows), and an offset moves only when it strictly improves
    on the current rule, so data that argmax already serves keeps argmax."""
    probabilities, y = np.asarray(probabilities, np.float64), np.asarray(y, np.int64)
    n_classes = probabilities.shape[1]
    scores = np.log(np.clip(probabilities, _FLOOR, None))
    offsets = np.zeros(n_classes)
    best = balanced_accuracy(y, scores.argmax(1), n_classes)
    for _ in range(1 if n_classes == 2 else passes):
        for c in range(1, n_classes):
            flips = np.unique(np.delete(scores + offsets, c, axis=1).max(axis=1) - scores[:, c])
            if len(flips) > max_candidates:
                flips = np.unique(np.quantile(flips, np.linspace(0, 1, max_candidates)))
            candidates = np.concatenate([[flips[0] - 1], (flips[1:] + flips[:-1]) / 2, [flips[-1] + 1]])
            values = np.empty(len(candidates))
            for i, value in enumerate(candidates):
                trial = offsets.copy()
                trial[c] = value
                values[i] = balanced_accuracy(y, (scores + trial).argmax(1), n_classes)
            if values.max() > best + 1e-9:
                winners = candidates[values >= values.max() - 1e-9]
                offsets[c], best = float(winners[len(winners) // 2]), float(values.max())
    return offsets
