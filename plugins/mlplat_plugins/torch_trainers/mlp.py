"""Tabular MLP trainer: width/depth (or explicit widths), dropout, batch or layer norm."""

from __future__ import annotations

from typing import Any

from mlplat.data import DatasetInfo

from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.encoders import encoder_spec
from mlplat_plugins.torch_trainers.networks import mlp_hidden
from mlplat_plugins.torch_trainers.trainer import TorchTrainer, network_outputs


class MLPTrainer(TorchTrainer):
    config_class = MLPConfig
    config: MLPConfig

    def architecture(self, info: DatasetInfo) -> dict[str, Any]:
        c = self.config
        layout = info.input_layout  # dense columns (with missing indicators) and categorical codes (mlplat.columns)
        architecture = {"type": "mlp", "in_features": layout["dense"] + len(layout["cardinalities"]) if layout else info.n_features,
                        "n_classes": network_outputs(info), "hidden": mlp_hidden(c.width, c.depth, c.hidden), "dropout": c.dropout,
                        "norm": c.norm, "activation": c.activation}
        encoder = encoder_spec(layout, c.onehot_max_categories, c.embedding_dim)
        if encoder:
            architecture["encoder"] = encoder
        return architecture
