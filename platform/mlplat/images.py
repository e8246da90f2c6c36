"""Images: one decode path for training, validation and serving.

An image dataset's split tables hold references, never pixels: the `IMAGE_COLUMN` column is each
image's location (a local path or an fsspec URI, `mlplat.sources`), beside the label and row id.
Decoding is lazy, per item, in a torch `DataLoader` (`ImageFiles`, `loader`), with the model's
`ImagePreprocessing` (size, channels, normalization) so that serving decodes exactly as training did.

PIL decodes (torchvision's compiled decoders cannot load beside the CPU torch build; `mlplat.vision`).
The pixel count a file's header declares is checked before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplat.manifest import ImagePreprocessing

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

IMAGE_COLUMN = "image"  # in an image dataset's split tables: the image's path or URI
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_MODES = {1: "L", 3: "RGB"}


class BadImage(ValueError):
    """An encoded image that cannot be used; the message says why (callers add which file or instance)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "undecodable" | "truncated" | "too_large" | "channels"


def open_image(data: bytes, *, max_pixels: int) -> PILImage.Image:
    """The decoded image; its header's pixel count is checked first, so a bomb is never decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadImage(f"not a decodable image ({exc.__class__.__name__})", "undecodable") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"{width}x{height} pixels exceeds the limit of {max_pixels}", "too_large")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises OSError for truncated data
        raise BadImage(f"truncated or corrupt image data ({exc})", "truncated") from None
    return image


def to_pixels(image: PILImage.Image, preprocessing: ImagePreprocessing) -> np.ndarray:
    """uint8 [H, W, C]: converted to the model's channels and resized, not yet scaled (what `normalize` takes)."""
    from PIL import Image

    mode = _MODES[preprocessing.channels]
    if image.mode != mode:
        image = image.convert(mode)  # palette, RGBA and grayscale images are converted, as ImageFolder's loader does
    height, width = preprocessing.size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(height, width, preprocessing.channels)


def normalize(pixels: np.ndarray, preprocessing: ImagePreprocessing) -> np.ndarray:
    """float32 network input [..., C, H, W] of uint8 pixels [..., H, W, C]: scaled to [0, 1] and normalized.

    One vectorized pass in numpy, so a batch of images costs one call, not one torch op chain per image."""
    mean = np.asarray(preprocessing.mean, np.float32)
    std = np.asarray(preprocessing.std, np.float32)
    scaled = (pixels.astype(np.float32) / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(np.moveaxis(scaled, -1, -3))


def to_tensor(image: PILImage.Image, preprocessing: ImagePreprocessing) -> torch.Tensor:
    """float32 [C, H, W]: converted to the model's channels, resized, scaled to [0, 1] and normalized."""
    import torch

    return torch.from_numpy(normalize(to_pixels(image, preprocessing), preprocessing))


def decode(data: bytes, preprocessing: ImagePreprocessing) -> torch.Tensor:
    """An encoded image (PNG, JPEG, WebP, ...) as the network's input [C, H, W]; raises BadImage."""
    return to_tensor(open_image(data, max_pixels=preprocessing.max_pixels), preprocessing)


def read_bytes(location: str) -> bytes:
    """The bytes of a local path or fsspec URI (credentials as `mlplat.sources` reads them)."""
    from mlplat.sources import CONNECTION_ENV, OBJECT_STORES, filesystem, scheme

    kind = scheme(location)
    if not kind:  # a plain path: no fsspec round trip per image (the DataLoader's hot path)
        with open(location, "rb") as handle:
            return handle.read()
    # one filesystem per process (a DataLoader worker must not reuse its parent's s3fs) and per endpoint
    key = (os.getpid(), kind, *(os.environ.get(name) for name in CONNECTION_ENV))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = filesystem(location)[0]
    fs = _FILESYSTEMS[key]
    with fs.open(fs._strip_protocol(location) if kind in OBJECT_STORES else location, "rb") as handle:
        return bytes(handle.read())


_FILESYSTEMS: dict[tuple[Any, ...], Any] = {}


class ImageFiles:
    """A map-style dataset (what `torch.utils.data.DataLoader` takes) over image locations:
    item i is (input [C, H, W], label index, -1 when unlabelled).

    Items are read and decoded when asked for, so a `DataLoader`'s workers do the work and nothing
    holds the whole dataset. `transform` (e.g. a transforms.v2 pipeline) runs on the decoded tensor.
    """

    def __init__(self, locations: Sequence[str], labels: np.ndarray | None, preprocessing: ImagePreprocessing,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if labels is not None and len(labels) != len(locations):
            raise ValueError(f"{len(locations)} images but {len(labels)} labels")
        self.locations = list(locations)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.preprocessing = preprocessing
        self.transform = transform

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        location = self.locations[index]
        try:
            tensor = decode(read_bytes(location), self.preprocessing)
        except BadImage as exc:
            raise BadImage(f"{location}: {exc}", exc.reason) from None
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, (-1 if self.labels is None else int(self.labels[index]))


def loader(dataset: Any, *, batch_size: int, shuffle: bool = False, workers: int = 0, seed: int = 0,
           drop_last: bool = False) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader with worker processes, pinned memory on CUDA, and a seeded shuffle."""
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                      generator=generator, drop_last=drop_last)


def fit_preprocessing(locations: Sequence[str], *, size: Sequence[int], channels: int,
                      sample: int = 512, seed: int = 0, max_pixels: int = 40_000_000) -> ImagePreprocessing:
    """Per-channel mean and std of [0, 1] pixels over a seeded sample of (training) images."""
    identity = ImagePreprocessing(size=list(size), channels=channels,
                                  mean=[0.0] * channels, std=[1.0] * channels, max_pixels=max_pixels)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(locations), size=min(sample, len(locations)), replace=False)
    totals = np.zeros(channels)
    squares = np.zeros(channels)
    for i in chosen:
        pixels = decode(read_bytes(locations[int(i)]), identity).numpy().reshape(channels, -1)
        totals += pixels.mean(axis=1)
        squares += (pixels**2).mean(axis=1)
    mean = totals / len(chosen)
    std = np.sqrt(np.maximum(squares / len(chosen) - mean**2, 0.0))
    return identity.model_copy(update={"mean": mean.tolist(), "std": np.maximum(std, 1e-3).tolist()})
