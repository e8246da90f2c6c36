"""Image requests: encoded images in, network input [n, C, H, W] out, through `mlplat.images` (the one decode path).

V1: `{"instances": [{"image": {"b64": "..."}}, ...]}` (KServe's image convention), also `{"b64": "..."}` per
instance. V2: one BYTES tensor [n] of encoded images, raw bytes in a binary body (tritonclient's
`binary_data=True`) or base64 strings in JSON. Every refusal is an `InvalidInput` (400) naming the instance
and why: bad base64, undecodable or truncated data, a header declaring more pixels than the model's
`max_pixels` (decompression bombs: refused before any pixel is decoded), channels that cannot be
converted to the model's, or more images than the per-request limit.

Each decoded image also yields cheap statistics (brightness, contrast, original width and height) that
the image drift monitor watches beside the embeddings (`mlplat.embeddings`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from mlplat import images
from mlplat.errors import InvalidInput
from mlplat.manifest import ImagePreprocessing

IMAGE_STATS = ("brightness", "contrast", "width", "height")
# 8-bit modes PIL converts faithfully to L or RGB; 16-bit / float ("I;16", "I", "F") would be clipped to 255 and
# colour spaces such as LAB or HSV reinterpreted: those answer 400 instead of a confident wrong prediction
CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_B64 = "b64"


def decode_image(data: bytes, preprocessing: ImagePreprocessing) -> tuple[np.ndarray, np.ndarray]:
    """(input [C, H, W] float32, statistics [4]) of one encoded image; `images.BadImage` for any bad one.

    Untrusted bytes reach a dozen PIL decoders: whatever one raises is a bad image, never a 500."""
    from PIL import Image

    try:
        image = images.open_image(data, max_pixels=preprocessing.max_pixels)
    except images.BadImage:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own limit, hit inside Image.open before ours
        raise images.BadImage(f"too many pixels ({exc})", "too_large") from None
    except Exception as exc:
        raise images.BadImage(f"not a decodable image ({exc.__class__.__name__})", "undecodable") from None
    width, height = image.size
    if image.mode not in CONVERTIBLE_MODES:
        raise images.BadImage(f"mode {image.mode} cannot be converted to {preprocessing.channels} channel(s) "
                              f"without losing its values (send 8-bit grayscale, RGB or RGBA)", "channels")
    try:
        tensor = images.to_tensor(image, preprocessing)
    except Exception as exc:  # a mode PIL cannot convert to the model's channels (e.g. I;16 to RGB)
        raise images.BadImage(f"mode {image.mode} cannot be converted to {preprocessing.channels} channel(s) "
                              f"({exc.__class__.__name__})", "channels") from None
    pixels = tensor.numpy()
    # back to [0, 1] pixels for the statistics: what a person would call brightness and contrast
    raw = pixels * np.asarray(preprocessing.std, np.float32)[:, None, None] + np.asarray(preprocessing.mean, np.float32)[:, None, None]
    return pixels, np.array([raw.mean(), raw.std(), width, height], np.float32)


class ImageSchema:
    """What an image model's server accepts; `v1_rows` / `v2_rows` return the stacked network inputs."""

    names = [images.IMAGE_COLUMN]
    width = 1  # one input (an encoded image) per instance
    all_numeric = False
    categorical: list[int] = []

    def __init__(self, preprocessing: ImagePreprocessing, max_images: int) -> None:
        self.preprocessing = preprocessing
        self.max_rows = max_images
        self.input_shape = (preprocessing.channels, *preprocessing.size)

    def decode_all(self, encoded: list[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
        """(inputs [n, C, H, W], statistics [n, 4]); the first bad image refuses the request, naming its index."""
        out = np.empty((len(encoded), *self.input_shape), np.float32)
        stats = np.empty((len(encoded), len(IMAGE_STATS)), np.float32)
        for i, data in enumerate(encoded):
            try:
                out[i], stats[i] = decode_image(data, self.preprocessing)
            except images.BadImage as exc:
                raise InvalidInput(reason=f"image_{exc.reason}", message=f"{where}[{i}]: {exc}") from None
        return out, stats

    def _count(self, n: int) -> None:
        if n == 0:
            raise InvalidInput(reason="empty", message="empty batch: send at least one image")
        if n > self.max_rows:
            raise InvalidInput(reason="too_many_images", message=f"{n} images in one request; the limit is {self.max_rows}")

    # ---- V1 ----------------------------------------------------------------------------------------
    def v1_images(self, payload: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput(reason="malformed", message='an image request is {"instances": [{"image": {"b64": "..."}}, ...]}')
        instances = payload["instances"]
        self._count(len(instances))
        return self.decode_all([_v1_bytes(instance, i) for i, instance in enumerate(instances)], "instances")

    # ---- V2 ----------------------------------------------------------------------------------------
    def v2_images(self, request: Any) -> tuple[np.ndarray, np.ndarray]:
        inputs = list(request.inputs)
        if len(inputs) != 1 or inputs[0].datatype != "BYTES":
            got = [(i.name, i.datatype) for i in inputs][:3]
            raise InvalidInput(reason="shape", message=f"send one BYTES input of encoded images (shape [N]), got {got}")
        tensor = inputs[0]
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(reason="shape", message=f"input {tensor.name!r}: shape {tensor.shape}, expected [N] or [N, 1]")
        if tensor.data is None or isinstance(tensor.data, bytes) or getattr(tensor, "_raw_data", None) is not None:
            values = [bytes(v) for v in tensor.as_numpy().reshape(-1)]  # binary body: raw encoded bytes
        else:
            from mlplat.serving.v2_decoding import flat_values

            values = [_b64(v, f"input {tensor.name!r}[{k}]") for k, v in enumerate(flat_values(tensor.data))]
        self._count(len(values))
        return self.decode_all(values, f"input {tensor.name!r}")


def _v1_bytes(instance: Any, i: int) -> bytes:
    """The encoded image of one V1 instance: {"image": {"b64": ...}} or {"b64": ...}."""
    if isinstance(instance, dict) and isinstance(instance.get(images.IMAGE_COLUMN), dict):
        instance = instance[images.IMAGE_COLUMN]
    if not isinstance(instance, dict) or set(instance) != {_B64}:
        raise InvalidInput(reason="shape", message=f'instances[{i}] must be {{"image": {{"b64": "<base64 of an encoded '
                                                   f'image>"}}}} (or {{"b64": ...}})')
    return _b64(instance[_B64], f"instances[{i}]")


def _b64(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise InvalidInput(reason="image_base64", message=f"{where}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(reason="image_base64", message=f"{where}: not valid base64 ({exc})") from None
