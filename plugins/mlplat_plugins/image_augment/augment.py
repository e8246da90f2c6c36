"""The v2 pipelines. Per-image transforms work on [0, 1] pixels (uint8 for the photometric policies);
a normalized network input is mapped back to pixels first and normalized again after."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlplat import vision
from mlplat.contracts import StepContext
from mlplat.contracts.augmenter import ImageAugmentation
from mlplat.data import Table, require_numeric
from mlplat.errors import UsageError
from mlplat.manifest import ImagePreprocessing
from torch import nn

from mlplat_plugins.image_augment import ImageAugmentConfig


def pixel_pipeline(config: ImageAugmentConfig, size: Sequence[int], channels: int) -> nn.Module:
    """[C, H, W] float pixels in [0, 1] -> augmented pixels in [0, 1]."""
    vision.load()
    from torchvision.transforms import InterpolationMode, v2

    height, width = int(size[0]), int(size[1])
    steps: list[nn.Module] = []
    if config.crop_scale is not None:
        steps.append(v2.RandomResizedCrop((height, width), scale=(config.crop_scale, 1.0), antialias=True))
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip(config.hflip))
    if config.vflip:
        steps.append(v2.RandomVerticalFlip(config.vflip))
    if config.max_rotation or config.max_shift:  # v2 rounds the translation to whole pixels
        steps.append(v2.RandomAffine(config.max_rotation, translate=(config.max_shift / width, config.max_shift / height),
                                     interpolation=InterpolationMode.BILINEAR))
    if config.color_jitter:
        j = config.color_jitter
        steps.append(v2.ColorJitter(j, j, j, j / 4) if channels == 3 else v2.ColorJitter(j, j))
    if config.policy != "none":  # the policies' photometric ops (posterize, equalize, ...) are defined on uint8
        policy = (v2.RandAugment(config.randaugment_ops, config.randaugment_magnitude) if config.policy == "randaugment"
                  else v2.TrivialAugmentWide())
        steps += [v2.ToDtype(torch.uint8, scale=True), policy, v2.ToDtype(torch.float32, scale=True)]
    if config.noise_std:
        steps.append(v2.GaussianNoise(sigma=config.noise_std, clip=True))
    return v2.Compose(steps)


class Normalized(nn.Module):
    """A pixel pipeline applied to a normalized input: denormalize, augment, normalize."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, pipeline: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32)[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x * self.std + self.mean).clamp(0, 1)
        return (self.pipeline(pixels) - self.mean) / self.std


Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def batch_mix(config: ImageAugmentConfig, n_classes: int) -> Mix | None:
    """Mixup and/or cutmix on a batch: (inputs, class indices) -> (mixed inputs, soft targets [B, n_classes])."""
    vision.load()
    from torchvision.transforms import v2

    mixes: list[Any] = []
    if config.mixup_alpha:
        mixes.append(v2.MixUp(alpha=config.mixup_alpha, num_classes=n_classes))
    if config.cutmix_alpha:
        mixes.append(v2.CutMix(alpha=config.cutmix_alpha, num_classes=n_classes))
    if not mixes:
        return None
    mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def apply(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed, soft = mix(x, y)
        return mixed, soft

    return apply


class ImageAugmenter:
    def __init__(self, config: ImageAugmentConfig) -> None:
        self.config = config

    def image_augmentation(self, preprocessing: ImagePreprocessing, n_classes: int, context: StepContext) -> ImageAugmentation:
        pipeline = pixel_pipeline(self.config, preprocessing.size, preprocessing.channels)
        return ImageAugmentation(Normalized(pipeline, preprocessing.mean, preprocessing.std), batch_mix(self.config, n_classes))

    def augment(self, train: Table, context: StepContext) -> Table:
        """Pixel-column datasets: `copies` augmented copies of each real training row."""
        shape = context.info.image_shape
        if not shape:
            raise UsageError("steps.augment: image_augment needs an image dataset (DatasetInfo.image_shape), "
                             f"but {context.info.name!r} has none")
        if self.config.mixup_alpha or self.config.cutmix_alpha:
            raise UsageError("steps.augment: mixup_alpha / cutmix_alpha mix batches while training; "
                             "they need an image-file dataset, not pixel columns")
        require_numeric(train.features)
        real = train.take(np.flatnonzero(~train.synthetic))
        X = real.features.to_numpy(np.float32)
        images = np.tile(X, (self.config.copies, 1)).reshape(-1, *shape)
        out = transform(images, self.config, context.seed, float(X.min()), float(X.max())).reshape(len(images), -1)
        return train.with_synthetic(pd.DataFrame(out, columns=real.features.columns),
                                    np.tile(real.labels, self.config.copies), np.tile(real.weights, self.config.copies))


def transform(images: np.ndarray, config: ImageAugmentConfig, seed: int, lo: float, hi: float) -> np.ndarray:
    """The per-image pipeline on [N, C, H, W] pixel values in [lo, hi] (scaled to [0, 1] and back), seeded."""
    torch.manual_seed(seed)  # v2 draws from torch's global generator
    c, h, w = images.shape[1:]
    pipeline = pixel_pipeline(config, (h, w), c)
    scale = hi - lo if hi > lo else 1.0
    x = torch.as_tensor((images - lo) / scale, dtype=torch.float32).clamp(0, 1)
    out = torch.stack([pipeline(image) for image in x])
    return (out.numpy() * scale + lo).astype(np.float32)
