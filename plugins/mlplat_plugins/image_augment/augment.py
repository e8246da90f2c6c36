"""Random affine transforms (rotation + shift) with bilinear resampling, plus pixel noise.
Features are flattened pixels; `DatasetInfo.image_shape` ([C, H, W]) says how to fold them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlplat.contracts import StepContext
from mlplat.data import Table, require_numeric
from mlplat.errors import UsageError
from mlplat_plugins.image_augment import ImageAugmentConfig


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
    """Rotate by U(-r, r) degrees and shift by U(-s, s) pixels, then add noise; [N, C, H, W] in and out."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(images, dtype=torch.float32)
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(config.max_rotation)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * config.max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2], theta[:, 1, 2] = shift[:, 0] * 2 / w, shift[:, 1] * 2 / h  # pixels -> normalized coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out + torch.randn(out.shape, generator=generator) * config.noise_std * hi
    return out.clamp(lo, hi).numpy()
