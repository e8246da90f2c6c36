"""Image augmentation on torchvision.transforms.v2.

On image files (an `ImageSet` dataset) it runs on the fly in the training DataLoader (the
`ImageAugmenter` contract): random resized crop, flips, affine shifts/rotations, colour jitter,
RandAugment or TrivialAugment, pixel noise per image, and mixup/cutmix per batch with soft targets.
On pixel-column datasets (DatasetInfo.image_shape, e.g. sklearn:digits) the same per-image
pipeline makes `copies` augmented copies of each real training row (tagged synthetic).
"""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class ImageAugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    copies: int = Field(2, ge=1, le=50, description="pixel-column datasets: augmented copies of each real training image")
    max_shift: int = Field(1, ge=0, description="largest shift in whole pixels, per axis")
    max_rotation: float = Field(10.0, ge=0, le=180, description="largest rotation in degrees (bilinear)")
    noise_std: float = Field(0.03, ge=0, description="gaussian pixel noise, as a fraction of the pixel range")
    crop_scale: float | None = Field(None, gt=0, le=1, description="random resized crop: smallest area fraction kept "
                                     "(the crop is resized back to the input size); null = off")
    hflip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of a vertical flip")
    color_jitter: float = Field(0.0, ge=0, le=1, description="brightness, contrast and saturation jitter (hue: a quarter)")
    policy: Literal["none", "randaugment", "trivialaugment"] = "none"
    randaugment_ops: int = Field(2, ge=1, le=10)
    randaugment_magnitude: int = Field(9, ge=0, le=30)
    mixup_alpha: float = Field(0.0, ge=0, description="mixup Beta(alpha, alpha) per batch (soft targets); 0 = off")
    cutmix_alpha: float = Field(0.0, ge=0, description="cutmix Beta(alpha, alpha) per batch; with mixup, one of the two per batch")


SPEC = PluginSpec(
    name="image_augment",
    kind=StageKind.AUGMENTER,
    extra="vision",
    config_model=ImageAugmentConfig,
    factory="mlplat_plugins.image_augment.augment:ImageAugmenter",
    needs=frozenset({"image"}),
    handles_images=True,
    summary="torchvision v2 image augmentation: crops, flips, jitter, RandAugment/TrivialAugment, mixup/cutmix "
            "(soft targets), on the fly in the training DataLoader",
)
