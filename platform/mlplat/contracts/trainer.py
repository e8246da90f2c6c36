"""Trainer contract: fit a torch network on preprocessed arrays.

The runner standardizes features (statistics saved with the model), so `X` arrives as
float32 and serving applies the same preprocessing. A trainer that must keep an earlier
model's statistics (a warm start) also satisfies `InheritsPreprocessing`: its
`inherited_preprocessing(context) -> dict | None` returns them, and the runner reuses them. A trainer returns the network and an
`architecture` dict; `build_network(architecture)` must rebuild the same network from that
dict alone, which is how serving loads `weights.safetensors` without the run's code.
Trainer configs must be constructible with defaults (serving builds one to call
`build_network`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mlplat.contracts.augmenter import ImageAugmentation
from mlplat.contracts.context import StepContext
from mlplat.data import DatasetInfo
from mlplat.images import ImageFiles
from mlplat.manifest import Decision, ImagePreprocessing
from mlplat.preprocessing import TargetStandardizer

if TYPE_CHECKING:
    import torch


@dataclass
class ArrayData:
    X: np.ndarray  # float32 [n, n_features], preprocessed
    y: np.ndarray  # int64 [n] class indices; float32 [n] standardized target for a regression (TrainingData.target)
    weight: np.ndarray | None = None  # float32 [n] per-row loss weights
    synthetic: np.ndarray | None = None  # bool [n]: generated rows (augmenters); they may train, never be scored as held out


@dataclass
class ImageSet:
    """An image split: references, not pixels (`mlplat.images`); decoded lazily by `dataset()`."""

    locations: list[str]  # per row: a local path or fsspec URI
    y: np.ndarray  # int64 [n] class indices
    preprocessing: ImagePreprocessing  # fitted on the training split; the model saves it
    weight: np.ndarray | None = None
    synthetic: np.ndarray | None = None
    # the training split's on-the-fly augmentation (e.g. a transforms.v2 pipeline) on decoded [C, H, W] tensors; it
    # runs in the DataLoader's workers, so it must pickle. The validation split has none.
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.locations)

    def dataset(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ImageFiles:
        return ImageFiles(self.locations, self.y, self.preprocessing, transform)


@dataclass
class TrainingData:
    # ArrayData for tabular data (and pixel-column images: info.image_shape); ImageSet for image files
    train: ArrayData | ImageSet
    validation: ArrayData | ImageSet
    info: DatasetInfo  # info.task: "classification" | "regression"
    # a regression's target scaling: y arrives standardized; metrics in label units use target.scale
    target: TargetStandardizer | None = None
    # image files only: the training split's on-the-fly augmentation (mlplat.contracts.augmenter.ImageAugmenter)
    augmentation: ImageAugmentation | None = None


@dataclass
class TrainedModel:
    network: torch.nn.Module
    architecture: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    metrics: dict[str, float] = field(default_factory=dict)  # final train/validation metrics
    # Cross-validation band (None when CV is off). Monitoring reads it as the expected production
    # performance, so the shape is fixed: for m in (accuracy, loss, f1) (f1: macro), "val_m", "train_m" and
    # "gap_m" (train - val, per fold) are {"mean": float, "std": float}; "folds": K (int);
    # "per_fold": [{"fold", "train_*", "val_*", "n_train", "n_val", ...}]. Folds are stratified
    # over the real training rows (synthetic rows train in every fold, are never held out); each
    # fold early-stops on the validation split, so its held-out part stays unseen.
    cv: dict[str, Any] | None = None
    # e.g. "compute": {wall_s, device_seconds, peak_host_rss_mb, peak_device_memory_mb, energy_j, ...}
    extras: dict[str, Any] = field(default_factory=dict)
    # the decision rule the trainer chose (e.g. out-of-fold offsets); None: argmax. Saved as `model.json` `decision`.
    decision: Decision | None = None


@runtime_checkable
class Trainer(Protocol):
    def fit(self, data: TrainingData, context: StepContext) -> TrainedModel:
        """Train; call `context.on_epoch(epoch, metrics)` after each epoch (it may raise to stop)."""
        ...

    def build_network(self, architecture: Mapping[str, Any]) -> torch.nn.Module:
        """Rebuild an untrained network from `TrainedModel.architecture`."""
        ...


@runtime_checkable
class InheritsPreprocessing(Protocol):
    """The optional half of the trainer contract: a trainer that must reuse an earlier model's preprocessing."""

    def inherited_preprocessing(self, context: StepContext) -> dict[str, Any] | None:
        """The statistics to reuse instead of fitting new ones (e.g. a warm start's source model), or None."""
        ...
