"""Generated image tasks for tests and benchmarks: shapes and textures drawn with numpy, saved as PNG.

Two related tasks share their low-level features (edges, strokes, stripes) but not their classes:
`source` = filled shapes and textures (10 classes), `target` = other shapes, drawn as outlines on
another palette (6 classes). Pretraining on the first is meant to help the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
