"""Gaussian noise and mixup on real training rows; generated rows are tagged synthetic.

Mixup variant for hard labels: `Table.labels` are class indices, so a mix cannot carry a
soft label. For a pair (a, b) and lambda ~ Beta(alpha, alpha) folded to lambda >= 0.5,
x = lambda * x_a + (1 - lambda) * x_b takes a's label, and its loss weight is lambda:
the row counts as much as it belongs to that class. (With `same_class`, partners share the
label and the label is exact.) Expected over lambda, the weighted hard-label loss is the
dominant term of the soft-label mixup loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlplat.contracts import StepContext
from mlplat.data import Table, require_numeric

from mlplat_plugins.tabular_augment import GaussianNoiseConfig, MixupConfig


def _real(train: Table) -> Table:
    require_numeric(train.features)
    return train.take(np.flatnonzero(~train.synthetic))


class GaussianNoise:
    def __init__(self, config: GaussianNoiseConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        real = _real(train)
        X = real.features.to_numpy(np.float64)
        rng = np.random.default_rng(context.seed)
        std = np.nan_to_num(X.std(0))
        reps = np.tile(X, (self.config.copies, 1))
        noisy = reps + rng.normal(size=reps.shape) * std * self.config.scale
        if self.config.clip_to_range:
            noisy = np.clip(noisy, X.min(0), X.max(0))
        return train.with_synthetic(pd.DataFrame(noisy, columns=real.features.columns),
                                    np.tile(real.labels, self.config.copies), np.tile(real.weights, self.config.copies))


class Mixup:
    def __init__(self, config: MixupConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        real = _real(train)
        X, y = real.features.to_numpy(np.float64), real.labels
        rng = np.random.default_rng(context.seed)
        anchors = np.tile(np.arange(len(y)), self.config.copies)
        partners = self._partners(y, anchors, rng)
        lam = rng.beta(self.config.alpha, self.config.alpha, size=len(anchors))
        lam = np.maximum(lam, 1 - lam)  # the anchor dominates, so its label is the honest hard label
        mixed = lam[:, None] * X[anchors] + (1 - lam[:, None]) * X[partners]
        weights = real.weights[anchors] * (lam if self.config.weight_by_lambda else 1.0)
        return train.with_synthetic(pd.DataFrame(mixed, columns=real.features.columns), y[anchors], weights)

    def _partners(self, y: np.ndarray, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.config.same_class:
            return rng.integers(0, len(y), size=len(anchors))
        partners = np.empty_like(anchors)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            where = np.flatnonzero(y[anchors] == c)
            partners[where] = rng.choice(members, size=len(where))
        return partners
