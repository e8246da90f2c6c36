"""Image requests: encoded images in, uint8 pixels [n, H, W, C] at the model's size out, through `mlplat.images`
(the one decode path); the predictor's forward thread normalizes them per merged batch (`ImageForward`).

V1: `{"instances": [{"image": {"b64": "..."}}, ...]}` (KServe's image convention), also `{"b64": "..."}` per
instance. V2: one BYTES tensor [n] of encoded images, raw bytes in a binary body (tritonclient's
`binary_data=True`) or base64 strings in JSON. Every refusal is an `InvalidInput` (400) naming the instance
and why: bad base64, undecodable or truncated data, a header declaring more pixels than the model's
`max_pixels` (decompression bombs: refused before any pixel is decoded), channels that cannot be
converted to the model's, or more images than the per-request limit.

Each decoded image also yields cheap statistics (brightness, contrast, original width and height) that
the image drift monitor watches beside the embeddings (`mlplat.embeddings`). Base64 may be line-wrapped.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplat import images
from mlplat.embeddings import EmbeddingProbe
from mlplat.errors import InvalidInput
from mlplat.manifest import ImagePreprocessing

IMAGE_STATS = ("brightness", "contrast", "width", "height")
# 8-bit modes PIL converts faithfully to L or RGB; 16-bit / float ("I;16", "I", "F") would be clipped to 255 and
# colour spaces such as LAB or HSV reinterpreted: those answer 400 instead of a confident wrong prediction
CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_B64 = "b64"
# (probabilities [n, K], embedding [n, D]) of network inputs [n, C, H, W]
ImageProbe = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

if TYPE_CHECKING:
    import torch


def decode_pixels(data: bytes, preprocessing: ImagePreprocessing) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 pixels [H, W, C] at the model's size and channels, original (width, height)) of one encoded
    image; `images.BadImage` for any bad one.

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
    if image.mode not in CONVERTIBLE_MODES:
        raise images.BadImage(f"mode {image.mode} cannot be converted to {preprocessing.channels} channel(s) "
                              f"without losing its values (send 8-bit grayscale, RGB or RGBA)", "channels")
    try:
        return images.to_pixels(image, preprocessing), image.size
    except Exception as exc:  # a mode PIL cannot convert to the model's channels (e.g. I;16 to RGB)
        raise images.BadImage(f"mode {image.mode} cannot be converted to {preprocessing.channels} channel(s) "
                              f"({exc.__class__.__name__})", "channels") from None


def brightness_contrast(pixels: np.ndarray) -> np.ndarray:
    """[n, 2] mean and standard deviation of the [0, 1] pixels the network sees (uint8 [n, H, W, C]): what a person
    would call brightness and contrast."""
    flat = pixels.reshape(len(pixels), -1).astype(np.float32)
    mean = flat.mean(axis=1)
    centered = flat - mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", centered, centered) / flat.shape[1])  # np.std's Python layers cost more here
    return np.column_stack([mean / 255.0, std / 255.0]).astype(np.float32)


def image_statistics(pixels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """IMAGE_STATS [n, 4] of uint8 pixels [n, H, W, C] at the model's size and their original (width, height) [n, 2]."""
    return np.concatenate([brightness_contrast(pixels), sizes.astype(np.float32)], axis=1)


class ImageSchema:
    """What an image model's server accepts; `v1_images` / `v2_images` return the decoded uint8 pixels
    [n, H, W, C] and original sizes [n, 2] (`network_input` makes the network's input of the pixels)."""

    names = [images.IMAGE_COLUMN]
    width = 1  # one input (an encoded image) per instance
    all_numeric = False
    categorical: list[int] = []

    def __init__(self, preprocessing: ImagePreprocessing, max_images: int) -> None:
        self.preprocessing = preprocessing
        self.max_rows = max_images
        self.input_shape = (preprocessing.channels, *preprocessing.size)

    def decode_pixels(self, encoded: list[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 pixels [n, H, W, C], original (width, height) [n, 2]); the first bad image refuses the request,
        naming its index."""
        pixels = np.empty((len(encoded), *self.preprocessing.size, self.preprocessing.channels), np.uint8)
        sizes = np.empty((len(encoded), 2), np.float32)
        for i, data in enumerate(encoded):
            try:
                pixels[i], sizes[i] = decode_pixels(data, self.preprocessing)
            except images.BadImage as exc:
                raise InvalidInput(reason=f"image_{exc.reason}", message=f"{where}[{i}]: {exc}") from None
        return pixels, sizes

    def network_input(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [n, C, H, W] of uint8 pixels [n, H, W, C], normalized as in training."""
        return images.normalize(pixels, self.preprocessing)

    def decode_all(self, encoded: list[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
        """(network inputs [n, C, H, W], statistics [n, 4]) of encoded images, as serving sees them."""
        pixels, sizes = self.decode_pixels(encoded, where)
        return self.network_input(pixels), image_statistics(pixels, sizes)

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
        return self.decode_pixels([_v1_bytes(instance, i) for i, instance in enumerate(instances)], "instances")

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
        return self.decode_pixels(values, f"input {tensor.name!r}")


def _v1_bytes(instance: Any, i: int) -> bytes:
    """The encoded image of one V1 instance: {"image": {"b64": ...}} or {"b64": ...}."""
    if isinstance(instance, dict) and set(instance) == {images.IMAGE_COLUMN} and isinstance(instance[images.IMAGE_COLUMN], dict):
        instance = instance[images.IMAGE_COLUMN]  # other keys beside "image" are refused, not silently dropped
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
        # line-wrapped base64 (`base64 file.png`, MIME) is still base64: retry without the whitespace
        unwrapped = "".join(value.split())
        if unwrapped != value:
            return _b64(unwrapped, where)
        raise InvalidInput(reason="image_base64", message=f"{where}: not valid base64 ({exc})") from None


class FrozenProbe:
    """`EmbeddingProbe`'s outputs from a TorchScript trace of the network, frozen and optimized for CPU inference.

    Freezing folds batch norm into the convolutions and `optimize_for_inference` moves them onto oneDNN: a batch
    of 32 small-CNN images ran ~5x faster than eager PyTorch here, which is what makes batching pay on a CPU."""

    def __init__(self, probe: EmbeddingProbe, example: torch.Tensor) -> None:
        import torch

        class WithEmbedding(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = probe.network

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                logits = self.network(x)
                return torch.softmax(logits.float(), dim=1), probe.caught().float().flatten(1)

        with torch.no_grad():
            traced = torch.jit.trace(WithEmbedding().eval(), example, check_trace=False)
            self.module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            probabilities, embedding = self.module(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        return probabilities.numpy(), embedding.numpy()


def serving_probe(network: torch.nn.Module, input_shape: tuple[int, ...]) -> ImageProbe:
    """The fastest probe that answers as the eager network does: `FrozenProbe` on a CPU when its outputs match the
    eager ones on random batches (several sizes, since a trace can specialize), else the eager `EmbeddingProbe`."""
    import torch

    probe = EmbeddingProbe(network)
    if next(iter(network.parameters())).device.type != "cpu":
        return probe
    generator = torch.Generator().manual_seed(0)
    try:
        frozen = FrozenProbe(probe, torch.randn(2, *input_shape, generator=generator))
        for n in (1, 5, 2, 33):  # each size twice or more: the profiling executor optimizes from the second call
            X = torch.randn(n, *input_shape, generator=generator).numpy()
            for expected, got in zip(probe(X), frozen(X), strict=True):
                if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
                    raise ValueError(f"frozen outputs differ from eager ones on a batch of {n}")
    except Exception as exc:  # an untraceable architecture (data-dependent control flow) serves eagerly
        logging.getLogger("mlplat.serve").warning("serving the network eagerly (its frozen trace was refused: %s)", exc)
        return probe
    return frozen


class ImageForward:
    """The predictor's forward pass over uint8 pixels [n, H, W, C] (`ImageSchema.v1_images`): outputs
    [probabilities (K) | embedding (D) | brightness, contrast] [n, K + D + 2], which the batcher slices per request.

    Normalization and the statistics run here, once per merged batch on the forward thread, not per request on the
    event loop, whose time is what bounds a server's requests per second."""

    def __init__(self, network: torch.nn.Module, preprocessing: ImagePreprocessing) -> None:
        self.preprocessing = preprocessing
        self.probe = serving_probe(network, (preprocessing.channels, *preprocessing.size))
        self.dim = EmbeddingProbe.embedding_dim(network)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        probabilities, embedding = self.probe(images.normalize(pixels, self.preprocessing))
        return np.concatenate([probabilities, embedding, brightness_contrast(pixels)], axis=1)

    @staticmethod
    def split(outputs: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, embedding, brightness and contrast) of `__call__`'s outputs."""
        return outputs[:, :n_classes], outputs[:, n_classes:-2], outputs[:, -2:]


def encoded_inputs(X: np.ndarray, preprocessing: ImagePreprocessing) -> list[str]:
    """Base64 PNGs of network inputs [n, C, H, W]: what the explainer role sends the predictor for predictions.

    Lossless: the inputs are normalized uint8 pixels at the model's size, so the predictor decodes them back to the
    same inputs (and resizes nothing)."""
    import io

    from PIL import Image

    mean = np.asarray(preprocessing.mean, np.float32)[:, None, None]
    std = np.asarray(preprocessing.std, np.float32)[:, None, None]
    pixels = np.clip(np.rint((np.asarray(X, np.float32) * std + mean) * 255.0), 0, 255).astype(np.uint8)
    out = []
    for image in pixels.transpose(0, 2, 3, 1):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG", compress_level=1)
        out.append(base64.b64encode(buffer.getvalue()).decode())
    return out
