"""Tabular MLP trainer: width/depth (or explicit widths), dropout, batch or layer norm."""

from __future__ import annotations

from typing import Any

from mlplat.data import DatasetInfo

from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.networks import mlp_hidden
from mlplat_plugins.torch_trainers.trainer import TorchTrainer, network_outputs


class MLPTrainer(TorchTrainer):
    config_class = MLPConfig
    config: MLPConfig

    def architecture(self, info: DatasetInfo) -> dict[str, Any]:
        c = self.config
        return {"type": "mlp", "in_features": info.n_features, "n_classes": network_outputs(info),
                "hidden": mlp_hidden(c.width, c.depth, c.hidden), "dropout": c.dropout, "norm": c.norm,
                "activation": c.activation}
