"""Label-noise detection by confident learning (Northcutt et al., 2021), written here
(cleanlab is AGPL). Out-of-fold probabilities come from a configurable cross-validated model; the
default `ensemble` fits a random forest, a logistic regression and a k-nearest-neighbour vote, and
averages the members whose out-of-fold accuracy on the given labels is within `ENSEMBLE_TOLERANCE` of
the best one's (their errors differ, so a row several good models call mislabelled is more likely so;
a member far worse than the best, e.g. a linear model on bars in images or on multi-cluster classes,
only adds its own errors to the suspects: on those it halved precision).

Per class j the threshold t_j is the mean predicted probability of j over rows labelled j.
A row's confident true label is the most probable class whose probability clears its
threshold; rows whose confident label differs from the given one form the off-diagonal of
the confident joint and are the suspects, ranked by the margin p(confident) - p(given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ENSEMBLE = ("forest", "logistic", "knn")  # the `ensemble` model's candidate members
# a member is averaged in when its out-of-fold accuracy on the given labels is at most this much below the
# best member's; the given labels are noisy, but the noise is the same for every member, so they rank the members
ENSEMBLE_TOLERANCE = 0.05
KNN_NEIGHBOURS = 15


@dataclass
class NoiseResult:
    suspects: np.ndarray  # positions into the input rows, most suspicious first
    scores: np.ndarray  # margin p(suggested) - p(given), same order
    suggested: np.ndarray  # confident true label per suspect
    thresholds: np.ndarray  # per-class threshold t_j
    joint: np.ndarray  # confident joint [given, true] counts

    @property
    def noise_rates(self) -> np.ndarray:
        """Estimated P(true = j | given = i) per class pair, from the confident joint (rows sum to 1)."""
        return self.joint / np.maximum(self.joint.sum(1, keepdims=True), 1)

    def noise_rate_pairs(self, classes: list[str]) -> list[dict[str, Any]]:
        """The estimated noise rate per class pair (given -> true), largest first; pairs estimated at 0 are left out."""
        rates = self.noise_rates
        pairs = [{"given": classes[i], "true": classes[j], "rate": round(float(rates[i, j]), 4)}
                 for i in range(len(classes)) for j in range(len(classes)) if i != j and rates[i, j] > 0]
        return sorted(pairs, key=lambda pair: -pair["rate"])


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, n_classes: int, model: str, folds: int, seed: int,
                      mlp_epochs: int = 25) -> np.ndarray:
    """Each row's class probabilities from a model that never saw it."""
    return combine_members(out_of_fold_members(X, y, n_classes, model, folds, seed, mlp_epochs), y)[0]


def out_of_fold_members(X: np.ndarray, y: np.ndarray, n_classes: int, model: str, folds: int, seed: int,
                        mlp_epochs: int = 25) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities per model: the `ensemble`'s candidate members, or the one model named."""
    from sklearn.model_selection import StratifiedKFold

    members = ENSEMBLE if model == "ensemble" else (model,)
    proba = {member: np.zeros((len(y), n_classes)) for member in members}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, held_idx in splitter.split(X, y):
        for member in members:
            proba[member][held_idx] = _fit_predict(X[fit_idx], y[fit_idx], X[held_idx], n_classes, member, seed, mlp_epochs)
    return proba


def combine_members(proba: dict[str, np.ndarray], y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(mean probabilities of the members within `ENSEMBLE_TOLERANCE` of the best out-of-fold accuracy, their names)."""
    accuracy = {member: float((p.argmax(1) == y).mean()) for member, p in proba.items()}
    best = max(accuracy.values())
    kept = [member for member in proba if accuracy[member] >= best - ENSEMBLE_TOLERANCE]
    return np.mean([proba[member] for member in kept], axis=0), kept


def _fit_predict(X: np.ndarray, y: np.ndarray, X_new: np.ndarray, n_classes: int, model: str, seed: int,
                 mlp_epochs: int) -> np.ndarray:
    mean, std = X.mean(0), X.std(0)
    std[std == 0] = 1.0
    X, X_new = (X - mean) / std, (X_new - mean) / std
    if model == "mlp":
        return _torch_mlp(X, y, X_new, n_classes, seed, mlp_epochs)
    if model == "forest":
        from sklearn.ensemble import RandomForestClassifier

        clf: Any = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    elif model == "knn":  # local evidence: carries classes a forest's axis-aligned splits and a linear model miss (bars in images)
        from sklearn.neighbors import KNeighborsClassifier

        clf = KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBOURS, len(X)), weights="distance")
    else:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=1.0, max_iter=1000)
    clf.fit(X, y)
    out = np.zeros((len(X_new), n_classes))
    out[:, clf.classes_] = clf.predict_proba(X_new)  # a class absent from this fold keeps probability 0
    return out


def _torch_mlp(X: np.ndarray, y: np.ndarray, X_new: np.ndarray, n_classes: int, seed: int, epochs: int) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, n_classes))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    for _ in range(epochs):  # full batch: the folds are small tables
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        optimizer.step()
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(X_new, dtype=torch.float32)), 1).double().numpy()


def confident_learning(proba: np.ndarray, given: np.ndarray, method: str = "prune_by_noise_rate") -> NoiseResult:
    """Suspects from the confident joint.

    `confident_joint`: the rows in its off-diagonal cells. `prune_by_noise_rate` (cleanlab's
    default idea): calibrate the joint to the given class counts, estimate how many rows of
    given class i truly belong to j, and flag that many rows of class i with the largest
    margin p_j - p_i, which also catches flipped rows whose probability misses the threshold.
    """
    n, n_classes = proba.shape
    thresholds = np.array([proba[given == j, j].mean() if np.any(given == j) else 1.0 for j in range(n_classes)])
    above = proba >= thresholds - 1e-12
    confident = np.where(above, proba, -np.inf).argmax(1)
    has_confident = above.any(1)
    joint = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(joint, (given[has_confident], confident[has_confident]), 1)
    rows = np.arange(n)
    if method == "confident_joint":
        flagged = np.flatnonzero(has_confident & (confident != given))
        suggested_all = confident
    else:
        flagged, suggested_all = _prune_by_noise_rate(proba, given, joint)
    margin = proba[rows, suggested_all] - proba[rows, given]
    order = flagged[np.argsort(-margin[flagged], kind="stable")]
    return NoiseResult(order, margin[order], suggested_all[order], thresholds, joint)


def _prune_by_noise_rate(proba: np.ndarray, given: np.ndarray, joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, n_classes = proba.shape
    counts = np.bincount(given, minlength=n_classes)
    calibrated = joint / np.maximum(joint.sum(1, keepdims=True), 1) * counts[:, None]
    best_margin = np.full(n, -np.inf)
    suggested = given.copy()
    for i in range(n_classes):
        members = np.flatnonzero(given == i)
        for j in range(n_classes):
            k = int(round(calibrated[i, j]))
            if i == j or k == 0:
                continue
            margin = proba[members, j] - proba[members, i]
            top = members[np.argsort(-margin, kind="stable")[:k]]
            top_margin = proba[top, j] - proba[top, i]
            better = top_margin > best_margin[top]
            best_margin[top[better]], suggested[top[better]] = top_margin[better], j
    return np.flatnonzero(suggested != given), suggested
