"""Tabular MLP trainer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mlplat.contracts import StepContext
from mlplat.contracts.trainer import TrainedModel, TrainingData
from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.engine import fit


def build_mlp(architecture: Mapping[str, Any]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = int(architecture["in_features"])
    for hidden in architecture["hidden"]:
        layers += [nn.Linear(width, int(hidden)), nn.ReLU(), nn.Dropout(float(architecture["dropout"]))]
        width = int(hidden)
    layers.append(nn.Linear(width, int(architecture["n_classes"])))
    return nn.Sequential(*layers)


class MLPTrainer:
    def __init__(self, config: MLPConfig) -> None:
        self.config = config

    def build_network(self, architecture: Mapping[str, Any]) -> nn.Module:
        return build_mlp(architecture)

    def fit(self, data: TrainingData, context: StepContext) -> TrainedModel:
        architecture = {"type": "mlp", "in_features": data.info.n_features, "n_classes": data.info.n_classes,
                        "hidden": list(self.config.hidden), "dropout": self.config.dropout}
        from mlplat_plugins.torch_trainers.engine import seed_everything

        seed_everything(context.seed)
        network = build_mlp(architecture)
        result = fit(network, data.train, data.validation, self.config, context)
        return TrainedModel(network, architecture, result["history"], result["metrics"], extras={"device": result["device"]})
