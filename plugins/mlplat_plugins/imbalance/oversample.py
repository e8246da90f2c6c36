"""imbalanced-learn samplers as augmenters. imbalanced-learn returns the original rows first,
then the new ones; only the new ones are appended, tagged synthetic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts import StepContext
from mlplat.data import Table, require_numeric

from mlplat_plugins.imbalance import RandomOversampleConfig, SmoteConfig


def _oversample(train: Table, sampler: Any, context: StepContext) -> Table:
    require_numeric(train.features)
    X_new, y_new = sampler.fit_resample(train.features.to_numpy(), train.labels)
    extra = pd.DataFrame(X_new[len(train):], columns=train.features.columns)
    counts = np.bincount(y_new, minlength=context.info.n_classes).tolist()
    context.log(f"{type(sampler).__name__}: added {len(extra)} rows; class counts now {counts}")
    return train.with_synthetic(extra, y_new[len(train):])


class RandomOversampler:
    def __init__(self, config: RandomOversampleConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        from imblearn.over_sampling import RandomOverSampler

        sampler = RandomOverSampler(sampling_strategy=self.config.sampling_strategy, shrinkage=self.config.shrinkage,
                                    random_state=context.seed)
        return _oversample(train, sampler, context)


class SmoteOversampler:
    def __init__(self, config: SmoteConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        from imblearn.over_sampling import SMOTE

        smallest = int(np.bincount(train.labels)[np.bincount(train.labels) > 0].min())
        if smallest < 2:
            from mlplat.errors import UsageError

            raise UsageError("steps.augment: smote needs at least 2 rows in every class")
        sampler = SMOTE(sampling_strategy=self.config.sampling_strategy, k_neighbors=min(self.config.k_neighbors, smallest - 1),
                        random_state=context.seed)
        return _oversample(train, sampler, context)
