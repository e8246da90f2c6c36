"""Act on `context.findings["validate"]["label_noise"]`: suspect row ids ranked by score."""

from __future__ import annotations

import numpy as np
from mlplat.contracts import StepContext
from mlplat.data import Table, as_row_ids
from mlplat.errors import UsageError

from mlplat_plugins.label_noise import NoiseHandlingConfig


class NoiseHandler:
    def __init__(self, config: NoiseHandlingConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        noise = context.findings.get("validate", {}).get("label_noise")
        if noise is None:
            raise UsageError("steps.augment: label_noise needs a validate step whose validator reports label-noise "
                             "suspects (tabular with label_noise.enabled: true)")
        ids, scores = as_row_ids(noise["row_ids"]), np.asarray(noise["scores"], float)
        keep = scores > self.config.min_score
        ids, scores = ids[keep], scores[keep]
        ids = ids[np.argsort(-scores, kind="stable")][: int(self.config.max_share * len(train))]
        flagged = np.isin(train.row_ids, ids) & ~train.synthetic
        context.log(f"label_noise: {self.config.action} {int(flagged.sum())} of {len(train)} training rows")
        if self.config.action == "drop":
            return train.take(np.flatnonzero(~flagged))
        out = train.take(np.arange(len(train)))
        out.weights = np.where(flagged, out.weights * self.config.weight, out.weights).astype(np.float32)
        return out
