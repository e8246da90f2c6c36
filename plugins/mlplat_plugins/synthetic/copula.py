"""Per-class gaussian copula: empirical marginals joined by a gaussian dependence structure.

Fit (per class): map each column to normal scores through its empirical CDF, estimate their
correlation. Sample: draw correlated normals, map them back through the empirical quantile
function. Marginals are reproduced by construction, rank correlations approximately.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlplat.contracts import StepContext
from mlplat.data import Table, require_numeric

from mlplat_plugins.synthetic import GaussianCopulaConfig
from mlplat_plugins.synthetic.fidelity import write_fidelity_report


def fit_sample_copula(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import norm, rankdata

    rows, cols = X.shape
    z = norm.ppf(rankdata(X, axis=0) / (rows + 1))
    corr = np.nan_to_num(np.corrcoef(z, rowvar=False).reshape(cols, cols))
    np.fill_diagonal(corr, 1.0)
    values, vectors = np.linalg.eigh(corr)  # clip to positive definite: few rows, many columns
    corr = (vectors * np.clip(values, 1e-6, None)) @ vectors.T
    u = norm.cdf(rng.multivariate_normal(np.zeros(cols), corr, size=n, method="cholesky"))
    return np.column_stack([np.quantile(X[:, j], u[:, j]) for j in range(cols)])


class GaussianCopulaGenerator:
    def __init__(self, config: GaussianCopulaConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        require_numeric(train.features)
        real = train.take(np.flatnonzero(~train.synthetic))
        X = real.features.to_numpy(np.float64)
        rng = np.random.default_rng(context.seed)
        parts, labels = [], []
        for c in np.unique(real.labels):
            members = X[real.labels == c]
            if len(members) < self.config.min_class_rows:
                continue
            n = int(round(self.config.ratio * len(members)))
            parts.append(fit_sample_copula(members, n, rng))
            labels.append(np.full(n, c))
        if not parts:
            return train
        synthetic = pd.DataFrame(np.vstack(parts), columns=real.features.columns)
        y = np.concatenate(labels)
        write_fidelity_report(real.features, real.labels, synthetic, y, context.info.classes,
                              context.work_dir, f"{context.step}.fidelity")
        context.log(f"gaussian_copula: added {len(y)} synthetic rows")
        return train.with_synthetic(synthetic, y)
