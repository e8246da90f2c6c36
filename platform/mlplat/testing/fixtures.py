"""Tiny data, a step context and a numpy model double: what a plugin's test needs, in milliseconds.

Everything here is numpy and pandas only; nothing imports torch unless a caller asks for a network.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplat.contracts import StepContext
from mlplat.data import DatasetInfo, Splits, Table
from mlplat.decision import decide
from mlplat.manifest import Decision

IMAGE_SHAPE = [1, 8, 8]  # the shape of sklearn:digits, which the `cnn` trainer and `image_augment` take


def _split(features: pd.DataFrame, labels: np.ndarray, name: str, classes: list[str],
           image_shape: list[int] | None, seed: int) -> Splits:
    """Stratified 50/25/25 split by class, row ids = positions (as mlplat.data.split_frame numbers them)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for cls in range(len(classes)):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        half, three_quarters = len(rows) // 2, (3 * len(rows)) // 4
        parts["train"] += rows[:half].tolist()
        parts["validation"] += rows[half:three_quarters].tolist()
        parts["test"] += rows[three_quarters:].tolist()
    table = Table(features, labels, np.arange(len(features)))
    info = DatasetInfo(name, "label", [str(c) for c in features.columns], classes, image_shape)
    return Splits(info, *(table.take(np.sort(parts[s])) for s in ("train", "validation", "test")))


def tiny_splits(rows: int = 60, n_classes: int = 3, n_features: int = 4, seed: int = 0) -> Splits:
    """Gaussian class blobs (separable, with overlap), float features `f0..`, classes `c0..`: a few dozen
    rows, split 50/25/25 per class, so each class has rows in every split."""
    if rows < 4 * n_classes:
        raise ValueError(f"tiny_splits needs at least 4 rows per class, got rows={rows} for {n_classes} classes")
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_classes
    centers = rng.normal(scale=2.0, size=(n_classes, n_features))
    X = centers[labels] + rng.normal(size=(rows, n_features))
    features = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)])
    return _split(features, labels, "tiny", [f"c{i}" for i in range(n_classes)], None, seed)


def tiny_image_splits(rows: int = 60, n_classes: int = 3, seed: int = 0) -> Splits:
    """8x8 one-channel images as flat pixel columns `pixel_0..63` with `DatasetInfo.image_shape` [1, 8, 8]
    and pixel values 0..16, like sklearn:digits: class k is a bright horizontal bar at row 2k, plus noise."""
    if rows < 4 * n_classes or n_classes > 4:
        raise ValueError(f"tiny_image_splits takes 2-4 classes and 4+ rows per class, got rows={rows}, n_classes={n_classes}")
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_classes
    images = rng.uniform(0, 4, size=(rows, *IMAGE_SHAPE))
    for i, cls in enumerate(labels):
        images[i, 0, 2 * cls] += 12.0
    features = pd.DataFrame(images.reshape(rows, -1), columns=[f"pixel_{i}" for i in range(int(np.prod(IMAGE_SHAPE)))])
    return _split(features, labels, "tiny_images", [f"c{i}" for i in range(n_classes)], list(IMAGE_SHAPE), seed)


def tiny_image_file_splits(directory: Path, per_class: int = 8, classes: tuple[str, ...] = ("circle", "square", "ring"),
                           seed: int = 0) -> Splits:
    """An image-file dataset (dataset.image, 32x32 RGB PNGs of `mlplat.datasets.shapes` written under `directory`):
    split tables of image locations, `DatasetInfo.image` set, as ingest writes them."""
    from mlplat.datasets.shapes import write_shapes
    from mlplat.images import IMAGE_COLUMN

    files = write_shapes(directory, per_class=per_class, seed=seed, classes=classes)
    names = sorted(classes)
    labels = np.array([names.index(f.parent.name) for f in files])
    splits = _split(pd.DataFrame({IMAGE_COLUMN: [str(f) for f in files]}), labels, "tiny_image_files", names, [3, 32, 32], seed)
    info = replace(splits.info, column_types={IMAGE_COLUMN: "image"},
                   image={"size": [32, 32], "channels": 3, "max_pixels": 40_000_000})
    return replace(splits, info=info)


def step_context(work_dir: Path, splits: Splits | DatasetInfo | None = None, step: str = "test", **fields: Any) -> StepContext:
    """A StepContext for one plugin call: its work dir, the data's info (tiny_splits() by default), seed 0.

    `fields` sets any other StepContext field, e.g. `on_epoch=`, `findings=`, `log=`."""
    if splits is None:
        splits = tiny_splits()
    info = splits.info if isinstance(splits, Splits) else splits
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    return StepContext(step=step, work_dir=Path(work_dir), info=info, **{"seed": 0, **fields})


class LinearModelDouble:
    """A `ModelHandle` (mlplat.contracts.explainer) with no trained network: a fixed linear softmax.

    Features are standardized with the training rows' mean and std (`preprocess`), and the logits are
    `z @ weights + bias` with one weight column per class: the class's standardized centroid (a
    nearest-centroid rule), so predictions are sensible on tiny_splits() and deterministic.

    Black-box explainers (kernel_shap, anchors, shap_kernel) use only `predict_proba`, `preprocess`
    and the names. Gradient explainers (integrated_gradients, lime: captum) use `network`, a
    `torch.nn.Linear` holding the same weights, built on first access when torch is importable
    (None otherwise).
    """

    def __init__(self, feature_names: list[str], class_names: list[str], mean: np.ndarray, scale: np.ndarray,
                 weights: np.ndarray, bias: np.ndarray) -> None:
        self.feature_names, self.class_names = list(feature_names), list(class_names)
        self.mean, self.scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
        self.weights, self.bias = np.asarray(weights, np.float32), np.asarray(bias, np.float32)
        if self.weights.shape != (len(self.feature_names), len(self.class_names)):
            raise ValueError(f"weights must be [features, classes] = {[len(self.feature_names), len(self.class_names)]}, "
                             f"got {list(self.weights.shape)}")
        self._network: Any = None
        self.decision: Decision | None = None  # a decision rule to apply (model.json `decision`); argmax without

    @classmethod
    def from_splits(cls, splits: Splits) -> LinearModelDouble:
        X = splits.train.features.to_numpy(np.float64)
        mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
        z = (X - mean) / scale
        centroids = np.stack([z[splits.train.labels == k].mean(axis=0) for k in range(splits.info.n_classes)], axis=1)
        return cls(splits.info.feature_names, splits.info.classes, mean, scale, centroids, -0.5 * (centroids**2).sum(axis=0))

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean) / self.scale).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.preprocess(X) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return decide(probabilities, self.decision)

    @property
    def network(self) -> Any:
        """torch.nn.Linear with the double's weights (takes preprocessed input), or None without torch."""
        if self._network is None:
            try:
                import torch
            except ImportError:
                return None
            linear = torch.nn.Linear(len(self.feature_names), len(self.class_names))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(self.weights.T.copy()))
                linear.bias.copy_(torch.from_numpy(self.bias))
            self._network = linear.eval()
        return self._network


def model_double(splits: Splits | None = None) -> LinearModelDouble:
    """A numpy ModelHandle fitted in closed form to `splits` (tiny_splits() by default)."""
    return LinearModelDouble.from_splits(splits if splits is not None else tiny_splits())


class ImageModelDouble:
    """What image explainers use of a `LoadedModel`: a small seeded torch CNN (untrained: explainers must
    not depend on accuracy), its `ImagePreprocessing`, class and feature names."""

    def __init__(self, splits: Splits, seed: int = 0) -> None:
        import torch
        from torch import nn

        from mlplat.manifest import ImagePreprocessing

        image = splits.info.image or {}
        size, channels = list(image.get("size", [32, 32])), int(image.get("channels", 3))
        torch.manual_seed(seed)
        self.network = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(4, len(splits.info.classes))).eval()
        self.image_preprocessing = ImagePreprocessing(size=size, channels=channels,
                                                      mean=[0.5] * channels, std=[0.25] * channels)
        self.class_names = list(splits.info.classes)
        self.feature_names = ["image"]
        self.name = "image-double"
        self.is_image = True
        self.decision: Decision | None = None

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return decide(probabilities, self.decision)


def image_model_double(splits: Splits) -> ImageModelDouble:
    """An image ModelHandle double for `tiny_image_file_splits()`."""
    return ImageModelDouble(splits)
