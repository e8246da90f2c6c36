"""The default label-noise detector: an ensemble's out-of-fold probabilities with confident learning, and
the per class-pair noise-rate estimate the report shows."""

from __future__ import annotations

import numpy as np
from mlplat_plugins.tabular_validation import LabelNoiseConfig
from mlplat_plugins.tabular_validation.label_noise import confident_learning, out_of_fold_proba
from sklearn.datasets import make_classification


def _data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(600, 8, n_informative=5, n_classes=3, n_clusters_per_class=1, class_sep=2.0, random_state=0)


def test_default_ensemble_finds_flipped_rows() -> None:
    config = LabelNoiseConfig()
    assert config.model == "ensemble"
    X, y = _data()
    rng = np.random.default_rng(0)
    flipped = rng.random(len(y)) < 0.15
    noisy = np.where(flipped, (y + rng.integers(1, 3, len(y))) % 3, y)
    found = confident_learning(out_of_fold_proba(X, noisy, 3, config.model, config.folds, 0), noisy, config.method)
    hits = flipped[found.suspects].sum()
    assert hits / len(found.suspects) >= 0.8 and hits / flipped.sum() >= 0.8


def test_noise_rate_per_class_pair_names_the_flipped_pair() -> None:
    config = LabelNoiseConfig()
    X, y = _data()
    flipped = (y == 0) & (np.random.default_rng(1).random(len(y)) < 0.25)  # a quarter of class 0 relabelled as 1
    noisy = np.where(flipped, 1, y)
    found = confident_learning(out_of_fold_proba(X, noisy, 3, config.model, config.folds, 0), noisy, config.method)
    pairs = found.noise_rate_pairs(["a", "b", "c"])
    true_rate = flipped.sum() / (noisy == 1).sum()  # of the rows labelled "b", the share that is "a"
    assert (pairs[0]["given"], pairs[0]["true"]) == ("b", "a") and 0.5 * true_rate <= pairs[0]["rate"] <= 1.5 * true_rate
    assert np.allclose(found.noise_rates.sum(1), 1.0)


def test_ensemble_averages_only_the_members_close_to_the_best() -> None:
    from mlplat_plugins.tabular_validation.label_noise import ENSEMBLE_TOLERANCE, combine_members

    y = np.arange(100) % 2
    right = np.eye(2)[y] * 0.8 + 0.1

    def wrong_on(rows: int) -> np.ndarray:  # right except on the first `rows` rows
        out = right.copy()
        out[:rows] = out[:rows, ::-1]
        return out

    close, far = wrong_on(int(100 * ENSEMBLE_TOLERANCE) - 1), wrong_on(40)
    proba, kept = combine_members({"forest": right, "logistic": far, "knn": close}, y)
    assert kept == ["forest", "knn"]
    np.testing.assert_allclose(proba, (right + close) / 2)
