"""Image augmentation as torch tensor ops: small shifts, rotations and pixel noise."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class ImageAugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copies: int = Field(2, ge=1, le=50, description="augmented copies of each real training image")
    max_shift: int = Field(1, ge=0, description="largest shift in whole pixels, per axis (no interpolation blur)")
    max_rotation: float = Field(10.0, ge=0, le=180, description="largest rotation in degrees")
    noise_std: float = Field(0.03, ge=0, description="gaussian pixel noise, as a fraction of the largest training pixel value")


SPEC = PluginSpec(
    name="image_augment",
    kind=StageKind.AUGMENTER,
    extra="torch",
    config_model=ImageAugmentConfig,
    factory="mlplat_plugins.image_augment.augment:ImageAugmenter",
    needs=frozenset({"image"}),  # only datasets with DatasetInfo.image_shape (e.g. sklearn:digits)
    summary="Random shifts, rotations and noise for image datasets (torch affine_grid/grid_sample)",
)
