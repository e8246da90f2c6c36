"""Random affine transforms (rotation + shift) with bilinear resampling, plus pixel noise.
Features are flattened pixels; `DatasetInfo.image_shape` ([C, H, W]) says how to fold them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlplat.contracts import StepContext
from mlplat.data import Table, require_numeric
from mlplat.errors import UsageError

from mlplat_plugins.image_augment import ImageAugmentConfig

if TYPE_CHECKING:
    import torch


class ImageAugmenter:
    def __init__(self, config: ImageAugmentConfig) -> None:
        self.config = config

    def augment(self, train: Table, context: StepContext) -> Table:
        shape = context.info.image_shape
        if not shape:
            raise UsageError("steps.augment: image_augment needs an image dataset (DatasetInfo.image_shape), "
                             f"but {context.info.name!r} has none")
        require_numeric(train.features)
        real = train.take(np.flatnonzero(~train.synthetic))
        X = real.features.to_numpy(np.float32)
        images = np.tile(X, (self.config.copies, 1)).reshape(-1, *shape)
        out = transform(images, self.config, context.seed, float(X.min()), float(X.max())).reshape(len(images), -1)
        return train.with_synthetic(pd.DataFrame(out, columns=real.features.columns),
                                    np.tile(real.labels, self.config.copies), np.tile(real.weights, self.config.copies))


def transform(images: np.ndarray, config: ImageAugmentConfig, seed: int, lo: float, hi: float) -> np.ndarray:
    """Rotate by U(-r, r) degrees (bilinear), shift by whole pixels in [-s, s], add noise; [N, C, H, W]."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(images, dtype=torch.float32)
    n = x.shape[0]
    if config.max_rotation > 0:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(config.max_rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if config.max_shift > 0:
        shifts = torch.randint(-config.max_shift, config.max_shift + 1, (n, 2), generator=generator)
        x = shift_images(x, shifts)
    x = x + torch.randn(x.shape, generator=generator) * config.noise_std * hi
    return x.clamp(lo, hi).numpy()


def shift_images(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move image i by shifts[i] = (dx, dy) whole pixels; what leaves the frame is lost, new pixels are 0."""
    import torch.nn.functional as F

    s = int(shifts.abs().max())
    h, w = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s))
    out = x.new_zeros(x.shape)
    for dx, dy in {tuple(v) for v in shifts.tolist()}:
        rows = ((shifts[:, 0] == dx) & (shifts[:, 1] == dy)).nonzero().squeeze(1)
        out[rows] = padded[rows, :, s - dy: s - dy + h, s - dx: s - dx + w]
    return out
