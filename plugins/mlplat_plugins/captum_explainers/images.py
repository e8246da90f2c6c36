"""captum attributions for image models: Integrated Gradients (from the mean image, 0 after normalization) or
Occlusion (a sliding patch set to the mean image). Each explanation is the attribution map of the predicted
class, summed over channels and sum-pooled to at most `map_size` x `map_size`, and a PNG overlay (base64) of
the map on the image: red where the evidence for the class is, blue where it is against it."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from mlplat.contracts.explainer import ExplainerState

from mlplat_plugins.captum_explainers import ImageAttributionConfig


def overlay_png(image: np.ndarray, attribution: np.ndarray) -> bytes:
    """PNG of `image` (float [C, H, W] in [0, 1]) with the [h, w] attribution map blended over it."""
    from PIL import Image

    height, width = image.shape[1:]
    base = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    scale = float(np.abs(attribution).max()) or 1.0
    heat = Image.fromarray((np.clip(attribution / scale, -1, 1) * 127 + 128).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR)
    signed = (np.asarray(heat, np.float32) - 128) / 127
    colour = np.stack([np.clip(signed, 0, 1), np.zeros_like(signed), np.clip(-signed, 0, 1)])
    alpha = np.abs(signed)[None] * 0.6
    blended = base * (1 - alpha) + colour * alpha
    buffer = io.BytesIO()
    Image.fromarray((np.clip(blended.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def pooled(attribution: np.ndarray, size: int) -> np.ndarray:
    """[C, H, W] -> [h, w]: summed over channels, then sum-pooled to at most size x size."""
    import torch

    per_pixel = torch.from_numpy(attribution.sum(axis=0))[None, None]
    h, w = per_pixel.shape[2:]
    if h <= size and w <= size:
        return per_pixel[0, 0].numpy()
    out = (min(h, size), min(w, size))
    return (torch.nn.functional.adaptive_avg_pool2d(per_pixel, out)[0, 0] * (h * w / (out[0] * out[1]))).numpy()


class BoundImageAttribution:
    def __init__(self, model: Any, config: ImageAttributionConfig) -> None:
        import torch

        self.model, self.config = model, config
        network = model.network
        self.forward = lambda x: torch.softmax(network(x).float(), dim=1)
        preprocessing = model.image_preprocessing
        self.mean = np.asarray(preprocessing.mean, np.float32)[:, None, None]
        self.std = np.asarray(preprocessing.std, np.float32)[:, None, None]

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attributions [n, C, H, W] of the predicted class, predicted class [n])."""
        import torch
        from captum.attr import IntegratedGradients, Occlusion

        inputs = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        with torch.no_grad():
            predicted = torch.as_tensor(self.model.decide(self.forward(inputs).numpy()))
        baselines = torch.zeros_like(inputs)  # the training mean image, after normalization
        if self.config.method == "integrated_gradients":
            values = IntegratedGradients(self.forward).attribute(inputs, baselines=baselines, target=predicted,
                                                                 n_steps=self.config.n_steps, internal_batch_size=256)
        else:
            c, window = inputs.shape[1], self.config.occlusion_window
            values = Occlusion(self.forward).attribute(inputs, sliding_window_shapes=(c, window, window),
                                                       strides=(c, max(1, window // 2), max(1, window // 2)),
                                                       baselines=0.0, target=predicted, perturbations_per_eval=64)
        return values.detach().numpy(), predicted.numpy()

    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        values, predicted = self.attributions(X)
        out = []
        for x, value, k in zip(np.asarray(X), values, predicted, strict=True):
            attribution = pooled(value, self.config.map_size)
            image = np.clip(x * self.std + self.mean, 0, 1)
            out.append({"class": self.model.class_names[int(k)], "method": self.config.method,
                        "attribution_map": attribution.round(6).tolist(), "map_shape": list(attribution.shape),
                        "overlay_png_b64": base64.b64encode(overlay_png(image, attribution)).decode()})
        return out


class ImageAttributionExplainer:
    def __init__(self, config: ImageAttributionConfig) -> None:
        self.config = config

    def fit(self, model: Any, background: np.ndarray, context: Any) -> ExplainerState:
        """Nothing to fit: the baseline is the training mean image (0 after normalization)."""
        return ExplainerState(config=self.config.model_dump())

    def load(self, model: Any, state: ExplainerState) -> BoundImageAttribution:
        return BoundImageAttribution(model, self.config)
