"""Label-free performance estimation: temperature calibration and CBPE per monitoring window.

Labels arrive late, or never. If the model's probabilities are calibrated, a row predicted with
top probability 0.8 is right 80 % of the time, so the mean top probability of a window estimates its
accuracy, and the calibrated probabilities give an expected confusion matrix, hence an expected
macro-F1 (confidence-based performance estimation, CBPE). The estimate holds under covariate shift
(P(y|x) unchanged: production moved to other regions of the input space); under label shift or concept
drift it does not, because the model's confidences are then wrong in a way no label-free figure can see.

Calibration is one scalar, the temperature T: calibrated = softmax(log p / T), fitted at training time
on the validation split by minimizing the negative log-likelihood (`fit_temperature`) and saved in
`model.json` (`ModelManifest.calibration`), applied only when it lowers the validation NLL significantly
(`improves_significantly`; else T = 1). It never changes the argmax, so served classes are the
same; the server answers the network's own probabilities and the monitor calibrates them.

Regression: nothing is estimated. The network predicts a point value without a predictive distribution,
so no label-free quantity relates its error on a window to the training error (the README says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlplat.manifest import Decision

PROBABILITY_FLOOR = 1e-12  # float32 softmax underflows to 0: log(0) would be -inf
TEMPERATURE_BOUNDS = (0.05, 20.0)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """log p, floored, as float64: the logits up to a per-row constant (softmax is shift-invariant)."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) row by row: the calibrated probabilities."""
    z = log_probabilities(probabilities) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    calibrated = apply_temperature(probabilities, temperature)
    picked = calibrated[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(picked, PROBABILITY_FLOOR, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimizes the NLL of `labels` (class indices) under softmax(log p / T).
    One bounded scalar search over log T; T > 1 softens an overconfident network."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return 1.0
    result = minimize_scalar(lambda log_t: negative_log_likelihood(probabilities, labels, math.exp(log_t)),
                             bounds=tuple(math.log(b) for b in TEMPERATURE_BOUNDS), method="bounded",
                             options={"xatol": 1e-4})
    return float(math.exp(result.x))


def improves_significantly(probabilities: np.ndarray, labels: np.ndarray, temperature: float, z: float = 2.0) -> bool:
    """Whether `temperature` lowers the per-row NLL by more than `z` standard errors of the mean difference.
    On a small validation split the fitted T is mostly noise (a T off by 0.1 moves the accuracy estimate
    by ~0.02): only a significant improvement is worth applying, otherwise T = 1."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    before = -np.log(np.clip(apply_temperature(probabilities, 1.0)[rows, labels], PROBABILITY_FLOOR, 1.0))
    after = -np.log(np.clip(apply_temperature(probabilities, temperature)[rows, labels], PROBABILITY_FLOOR, 1.0))
    gain = before - after
    if len(gain) < 2:
        return False
    return bool(gain.mean() > z * gain.std(ddof=1) / math.sqrt(len(gain)))


@dataclass
class PerformanceEstimate:
    accuracy: float  # expected accuracy: mean top calibrated probability
    f1: float  # expected macro-F1 from the expected confusion matrix
    rows: int


def expected_confusion(calibrated: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
    """C[i, j] = expected number of rows of true class i predicted as j: row r adds its calibrated
    probabilities to the column of its predicted class (`predicted`, default the argmax)."""
    n_classes = calibrated.shape[1]
    confusion = np.zeros((n_classes, n_classes))
    np.add.at(confusion.T, calibrated.argmax(axis=1) if predicted is None else predicted, calibrated)
    return confusion


def macro_f1(confusion: np.ndarray) -> float:
    """Macro-F1 of a (possibly expected, fractional) confusion matrix; a class absent from both the truth
    and the predictions scores 0, as sklearn's `zero_division=0` does."""
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean())


def estimate(probabilities: np.ndarray, temperature: float = 1.0, decision: Decision | None = None) -> PerformanceEstimate | None:
    """CBPE of a window's rows [n, classes] (the served probabilities); None without rows. The served class
    is the model's decision rule's (`mlplat.decision.decide`; argmax without one): a row is right with the
    calibrated probability of that class."""
    from mlplat.decision import decide

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or not len(probabilities):
        return None
    calibrated = apply_temperature(probabilities, temperature)
    predicted = decide(probabilities, decision)
    return PerformanceEstimate(accuracy=float(calibrated[np.arange(len(calibrated)), predicted].mean()),
                               f1=macro_f1(expected_confusion(calibrated, predicted)), rows=len(calibrated))
