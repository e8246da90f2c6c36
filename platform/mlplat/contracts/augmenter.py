"""Augmenter contract: turn a training table into a better one.

Augmenters only ever see the training split: validation and test data must stay real.
Rows they add are marked `synthetic=True` and keep `row_id = -1` (`""` beside text ids: `Table.with_synthetic`); rows they drop vanish;
rows they down-weight change `weights`. `context.findings` carries what the validator
found (e.g. `findings["validate"]["label_noise"]["row_ids"]`).

Image-file datasets are not tables of pixels: their augmenters (`ImageAugmenter`) return transforms
that the training DataLoader applies on the fly, so each epoch sees new random views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mlplat.contracts.context import StepContext
from mlplat.data import Table
from mlplat.manifest import ImagePreprocessing

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Augmenter(Protocol):
    def augment(self, train: Table, context: StepContext) -> Table:
        """Return a new training table; never mutate `train`."""
        ...


@dataclass
class ImageAugmentation:
    """On-the-fly augmentation of an image-file training split (never validation or test data).

    `sample` runs per image in the DataLoader's workers, on the decoded, normalized input [C, H, W].
    `batch` runs per batch on the device: (inputs [B, C, H, W], class indices [B]) -> (inputs, soft
    targets [B, n_classes] summing to 1), e.g. mixup/cutmix; the trainer's loss takes soft targets.
    """

    sample: Callable[[torch.Tensor], torch.Tensor] | None = None
    batch: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


@runtime_checkable
class ImageAugmenter(Protocol):
    """An augmenter of image-file datasets: instead of a new table it gives the trainer transforms.

    The runner calls `image_augmentation` for an image-file dataset and passes the result in
    `TrainingData.augmentation`; the training DataLoader applies it, epoch after epoch."""

    def image_augmentation(self, preprocessing: ImagePreprocessing, n_classes: int,
                           context: StepContext) -> ImageAugmentation:
        ...
