"""What the engine optimizes and reports, per task.

`Classification`: cross-entropy (with label smoothing) on class indices; reports loss and accuracy.
`Regression`: MSE or Huber on the standardized target (one network output); reports loss in
standardized units and RMSE / MAE in the label's units (times the target scale) and R².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from mlplat.contracts.trainer import TrainingData

    from mlplat_plugins.torch_trainers import TrainingConfig


@dataclass(frozen=True)
class Classification:
    label_smoothing: float = 0.0
    target_dtype: torch.dtype = torch.long
    regression: bool = False

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(out, y, label_smoothing=self.label_smoothing, reduction=reduction)

    def plain_loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unsmoothed, unweighted: comparable across configs and with val_loss."""
        return F.cross_entropy(out, y, reduction="sum")

    def scores(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """{"loss", "accuracy"}: unweighted, unsmoothed cross-entropy and accuracy."""
        if len(y) == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        return {"loss": float(F.cross_entropy(out, y)), "accuracy": float((out.argmax(1) == y).float().mean())}


@dataclass(frozen=True)
class Regression:
    kind: str = "mse"  # "mse" | "huber"
    huber_delta: float = 1.0  # in standardized units (target std)
    target_scale: float = 1.0  # label units per standardized unit
    target_dtype: torch.dtype = torch.float32
    regression: bool = True

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.kind == "huber":
            return F.huber_loss(out[:, 0], y, reduction=reduction, delta=self.huber_delta)
        return F.mse_loss(out[:, 0], y, reduction=reduction)

    def plain_loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(out, y, reduction="sum")

    def scores(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """{"loss", "rmse", "mae", "r2"}: RMSE and MAE in the label's units."""
        if len(y) == 0:
            return dict.fromkeys(("loss", "rmse", "mae", "r2"), float("nan"))
        residual = out[:, 0].float() - y
        total = float(((y - y.mean()) ** 2).sum())
        return {"loss": float(self.loss(out, y)),
                "rmse": float(residual.pow(2).mean().sqrt()) * self.target_scale,
                "mae": float(residual.abs().mean()) * self.target_scale,
                "r2": 1.0 - float(residual.pow(2).sum()) / total if total > 0 else float("nan")}


Objective = Classification | Regression


def for_data(data: TrainingData, config: TrainingConfig) -> Objective:
    """The objective for the data's task and the config's `loss` ("auto": cross-entropy or MSE)."""
    if not data.info.regression:
        return Classification(config.label_smoothing)
    scale = data.target.scale if data.target is not None else 1.0
    return Regression("huber" if config.loss == "huber" else "mse", config.huber_delta, scale)
