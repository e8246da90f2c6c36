"""`generated:shapes`: 10 classes of 32x32 RGB shapes and textures, written as PNGs in the ImageFolder layout.

Each image draws its class's pattern (5 shapes, 5 textures) with nuisance variation: position, scale,
stroke width, stripe frequency and phase, foreground and background colors, and pixel noise. Colors
carry no class information, so a network must learn shape and texture. Seeded: the same seed writes
the same files, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross", "ring",
           "hstripes", "vstripes", "diagonal", "checker", "dots")
SIZE = 32
VERSION = 1  # bump when the drawing changes: it is part of the source's fingerprint

Mask = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _shape_frame(rng: np.random.Generator) -> tuple[float, float, float]:
    """Center (cy, cx) and radius of a shape: its scale and position vary, it stays inside the image."""
    radius = rng.uniform(5.0, 12.0)
    margin = radius + 1
    return rng.uniform(margin, SIZE - margin), rng.uniform(margin, SIZE - margin), radius


def _circle(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx, r = _shape_frame(rng)
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def _square(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx, r = _shape_frame(rng)
    r *= 0.85
    return (np.abs(y - cy) <= r) & (np.abs(x - cx) <= r)


def _triangle(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx, r = _shape_frame(rng)
    top, bottom = cy - r, cy + r
    half = (y - top) / (2 * r) * r  # widens from the apex down
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half)


def _cross(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx, r = _shape_frame(rng)
    arm = rng.uniform(1.5, 3.0)
    inside = (np.abs(y - cy) <= r) & (np.abs(x - cx) <= r)
    return inside & ((np.abs(y - cy) <= arm) | (np.abs(x - cx) <= arm))


def _ring(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cy, cx, r = _shape_frame(rng)
    distance = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    return (distance <= r) & (distance >= r - rng.uniform(1.5, 3.0))


def _stripes(coordinate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(4.0, 9.0)
    return ((coordinate + rng.uniform(0, period)) % period) < period * rng.uniform(0.35, 0.6)


def _hstripes(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _stripes(y, rng)


def _vstripes(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _stripes(x, rng)


def _diagonal(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _stripes((x + y if rng.random() < 0.5 else x - y) / np.sqrt(2), rng)


def _checker(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cell = rng.uniform(3.0, 7.0)
    oy, ox = rng.uniform(0, cell, 2)
    return ((np.floor((y + oy) / cell) + np.floor((x + ox) / cell)) % 2) == 0


def _dots(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spacing = rng.uniform(5.0, 9.0)
    radius = spacing * rng.uniform(0.2, 0.32)
    oy, ox = rng.uniform(0, spacing, 2)
    dy, dx = (y + oy) % spacing - spacing / 2, (x + ox) % spacing - spacing / 2
    return dy**2 + dx**2 <= radius**2


MASKS: dict[str, Mask] = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross, "ring": _ring,
                          "hstripes": _hstripes, "vstripes": _vstripes, "diagonal": _diagonal, "checker": _checker,
                          "dots": _dots}


def draw(name: str, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    """One uint8 [32, 32, 3] image of class `name`."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    mask = MASKS[name](y, x, rng)
    background = rng.uniform(0, 1, 3)
    foreground = rng.uniform(0, 1, 3)
    while np.abs(foreground - background).sum() < 0.6:  # some contrast, in any colors
        foreground = rng.uniform(0, 1, 3)
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0, noise, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_shapes(root: Path, per_class: int = 200, seed: int = 0, classes: tuple[str, ...] = CLASSES) -> list[Path]:
    """Write `per_class` PNGs of each class to root/<class>/<class>-NNNN.png; returns the files, in order."""
    from PIL import Image

    unknown = sorted(set(classes) - set(MASKS))
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; known: {', '.join(CLASSES)}")
    files = []
    for k, name in enumerate(classes):
        rng = np.random.default_rng([seed, k])  # one stream per class: adding classes keeps the others' files
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{name}-{i:04d}.png"
            Image.fromarray(draw(name, rng)).save(path, "PNG")
            files.append(path)
    return files
