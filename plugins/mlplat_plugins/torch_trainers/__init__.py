"""PyTorch trainers sharing one training engine."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplat.registry import PluginSpec, StageKind


class TrainingConfig(BaseModel):
    """Options of the shared training engine."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0)
    early_stopping_patience: int | None = Field(10, ge=1, description="epochs without val improvement before stopping")
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    device: str = Field("auto", description="'auto' (CUDA, else CPU), 'cpu', 'cuda', 'cuda:1', ...")


class MLPConfig(TrainingConfig):
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="hidden layer widths")
    dropout: float = Field(0.1, ge=0, lt=1)


MLP_SPEC = PluginSpec(
    name="mlp",
    kind=StageKind.TRAINER,
    config_model=MLPConfig,
    factory="mlplat_plugins.torch_trainers.mlp:MLPTrainer",
    summary="Tabular MLP (PyTorch): dropout, weight decay, early stopping; CUDA when present",
)
