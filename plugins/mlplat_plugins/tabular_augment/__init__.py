"""Tabular augmentation: gaussian feature noise scaled per column, and mixup for hard labels."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class GaussianNoiseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copies: int = Field(1, ge=1, le=50, description="noisy copies of each real training row")
    scale: float = Field(0.05, gt=0, description="noise std as a fraction of each column's training std")
    clip_to_range: bool = Field(True, description="clip noisy values to the column's training range")


class MixupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copies: int = Field(1, ge=1, le=50, description="mixed rows per real training row")
    alpha: float = Field(0.4, gt=0, description="Beta(alpha, alpha) mixing coefficient")
    same_class: bool = Field(False, description="mix only rows of the same class (labels stay exact)")
    weight_by_lambda: bool = Field(True, description="weight a mixed row by its mixing coefficient (>= 0.5)")


NOISE_SPEC = PluginSpec(
    name="gaussian_noise",
    kind=StageKind.AUGMENTER,
    config_model=GaussianNoiseConfig,
    factory="mlplat_plugins.tabular_augment.augment:GaussianNoise",
    summary="Noisy copies of training rows; noise std scaled per column",
)
MIXUP_SPEC = PluginSpec(
    name="mixup",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.AUGMENTER,
    config_model=MixupConfig,
    factory="mlplat_plugins.tabular_augment.augment:Mixup",
    summary="Mixup for hard labels: the mix takes the dominant row's label, weighted by its share",
)
