"""Generated image tasks for tests and benchmarks: shapes and textures drawn with numpy, saved as PNG.

Two related tasks share their low-level features (edges, strokes, stripes) but not their classes:
`source` = filled shapes and textures (10 classes), `target` = other shapes, drawn as outlines on
another palette (6 classes). Pretraining on the first is meant to help the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

Variant = Literal["source", "target"]


def _masks(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    """A boolean [H, W] mask of a shape or texture (coordinates in pixels)."""
    dy, dx = yy - cy, xx - cx
    ry, rx = dy * np.cos(angle) - dx * np.sin(angle), dy * np.sin(angle) + dx * np.cos(angle)
    d = np.hypot(dy, dx)
    inside = d < r * 1.1
    return {
        "disc": d < r,
        "square": (np.abs(ry) < r * 0.8) & (np.abs(rx) < r * 0.8),
        "triangle": (ry < r * 0.6) & (ry > -r * 0.9 + 1.6 * np.abs(rx)),
        "cross": ((np.abs(ry) < r * 0.25) | (np.abs(rx) < r * 0.25)) & (np.abs(ry) < r) & (np.abs(rx) < r),
        "ring": (d < r) & (d > r * 0.55),
        "hstripes": inside & ((ry // 3) % 2 == 0),
        "vstripes": inside & ((rx // 3) % 2 == 0),
        "checker": inside & (((ry // 3) + (rx // 3)) % 2 == 0),
        "dots": inside & ((ry % 5 < 2) & (rx % 5 < 2)),
        "diamond": (np.abs(ry) + np.abs(rx)) < r,
        "bar": (np.abs(ry) < r * 0.3) & (np.abs(rx) < r),
        "ellipse": (ry / r) ** 2 + (rx / (0.5 * r)) ** 2 < 1,
        "plus_ring": ((d < r) & (d > r * 0.6)) | ((np.abs(ry) < r * 0.2) & (d < r)),
        "corner": (ry > 0) & (rx > 0) & (ry < r) & (rx < r),
        "zigzag": inside & ((ry + 3 * np.abs(((rx // 1) % 6) - 3)) // 3 % 2 == 0),
        "grid": inside & ((ry % 5 < 1) | (rx % 5 < 1)),
    }[kind]


CLASSES: dict[Variant, list[str]] = {
    "source": ["disc", "square", "triangle", "cross", "ring", "hstripes", "vstripes", "checker", "dots", "bar"],
    "target": ["diamond", "ellipse", "plus_ring", "corner", "zigzag", "grid"],
}


def render(variant: Variant, n: int, *, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, size, size, 3] and int64 labels [n] (balanced, shuffled)."""
    rng = np.random.default_rng(seed)
    classes = CLASSES[variant]
    labels = rng.permutation(np.arange(n) % len(classes))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        r = size * rng.uniform(0.25, 0.4)
        cy, cx = rng.uniform(r * 0.8, size - r * 0.8, 2)
        mask = _masks(classes[label], yy, xx, cy, cx, r, rng.uniform(0, np.pi / 6))
        if variant == "target":  # outlines: the mask's edge only
            pad = np.pad(mask, 1)
            core = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
            mask = mask & ~core if mask.sum() > 40 else mask
        background = rng.uniform(0, 0.5 if variant == "source" else 0.3, 3)
        colour = rng.uniform(0.5, 1.0, 3) if variant == "source" else rng.uniform(0.6, 1.0, 3)[::-1]
        image = np.where(mask[..., None], colour, background) + rng.normal(0, 0.06, (size, size, 3))
        images[i] = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def write_pngs(images: np.ndarray, directory: Path) -> list[str]:
    """Each image as `directory/NNNNN.png`; the paths in order."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = directory / f"{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def image_task(variant: Variant, n: int, directory: Path, *, size: int, seed: int, validation: int) -> tuple[Any, Any, Any]:
    """(train ImageSet, validation ImageSet, DatasetInfo) of `n` generated images; the last `validation` validate."""
    from mlplat.contracts.trainer import ImageSet
    from mlplat.data import DatasetInfo
    from mlplat.images import IMAGE_COLUMN, fit_preprocessing

    images, labels = render(variant, n, size=size, seed=seed)
    paths = write_pngs(images, directory)
    cut = n - validation
    preprocessing = fit_preprocessing(paths[:cut], size=[size, size], channels=3)
    info = DatasetInfo(f"shapes-{variant}", "label", [IMAGE_COLUMN], list(CLASSES[variant]), [3, size, size])
    return ImageSet(paths[:cut], labels[:cut], preprocessing), ImageSet(paths[cut:], labels[cut:], preprocessing), info


def transfer_gain(work: Path, *, params: dict[str, Any], pretrain_params: dict[str, Any],
                  finetune_params: dict[str, Any] | None = None, size: int = 16,
                  n_source: int = 600, n_target: int = 1000, fraction: float = 0.1, n_val: int = 200,
                  seed: int = 0) -> dict[str, float]:
    """Pretrain the `vision` trainer on the source task and save its weights as safetensors, then train on
    `fraction` of the target task's training images from scratch and from those weights (same `params`,
    same target preprocessing; `finetune_params`, e.g. a freezing schedule, apply to the pretrained run only).
    Returns the source accuracy and the target validation accuracies of both."""
    from dataclasses import replace

    from safetensors.torch import save_file

    from mlplat import registry
    from mlplat.contracts import StepContext
    from mlplat.contracts.trainer import TrainingData
    from mlplat.registry import StageKind

    train, val, info = image_task("source", n_source, work / "source", size=size, seed=seed, validation=n_source // 5)
    source = registry.create(StageKind.TRAINER, "vision", pretrain_params, step="train").fit(
        TrainingData(train, val, info), StepContext("pretrain", _fresh(work / "pretrain"), info, seed=seed))
    checkpoint = work / "pretrained.safetensors"
    save_file({k: v.contiguous() for k, v in source.network.state_dict().items()}, str(checkpoint))
    train, val, info = image_task("target", n_target + n_val, work / "target", size=size, seed=seed + 1, validation=n_val)
    keep = max(len(CLASSES["target"]), int(round(len(train.locations) * fraction)))
    few = replace(train, locations=train.locations[:keep], y=train.y[:keep])
    scores = {"source_val_accuracy": source.metrics["val_accuracy"], "target_train_images": float(keep)}
    for name, extra in (("scratch", {}), ("pretrained", {**(finetune_params or {}), "pretrained": str(checkpoint)})):
        model = registry.create(StageKind.TRAINER, "vision", {**params, **extra}, step="train").fit(
            TrainingData(few, val, info), StepContext(name, _fresh(work / name), info, seed=seed))
        scores[f"{name}_val_accuracy"] = model.metrics["val_accuracy"]
    scores["gain"] = scores["pretrained_val_accuracy"] - scores["scratch_val_accuracy"]
    return scores


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
