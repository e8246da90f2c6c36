"""Networks rebuilt from an architecture dict alone (serving needs no run code).

Every network has a `body` (feature extractor, a Sequential of numbered blocks) and a
`head` (the final classifier), so `freeze: ["body"]` fine-tunes only the classifier and
`freeze: ["body.0"]` freezes the first block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from mlplat.errors import SpecError, UsageError
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Module):
    """`encoder` (categorical inputs → one-hot / embeddings, encoders.py) → `body` → `head`."""

    def __init__(self, in_features: int, n_classes: int, hidden: list[int], dropout: float = 0.0,
                 norm: str = "none", activation: str = "relu", encoder: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from mlplat_plugins.torch_trainers.encoders import build_encoder, encoded_width

        self.encoder = build_encoder(encoder)
        blocks: list[nn.Module] = []
        width = encoded_width(encoder) if encoder else in_features
        for out in hidden:
            layers: list[nn.Module] = [nn.Linear(width, out)]
            if norm == "batch":
                layers.append(nn.BatchNorm1d(out))
            elif norm == "layer":
                layers.append(nn.LayerNorm(out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:  # no no-op module: it would still cost a kernel per batch
                layers.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*layers))
            width = out
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x if self.encoder is None else self.encoder(x)))


class CNN(nn.Module):
    """Conv blocks (3x3 conv, norm, ReLU, 2x2 max-pool while the map is at least 2x2) and a dense layer.

    Takes flat pixel rows (what the runner hands trainers) and reshapes them to images.
    """

    def __init__(self, image_shape: list[int], n_classes: int, channels: list[int], hidden: int,
                 dropout: float = 0.0, norm: str = "batch") -> None:
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        blocks: list[nn.Module] = []
        for out in channels:
            layers: list[nn.Module] = [nn.Conv2d(c, out, 3, padding=1)]
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, out))  # layer norm over (C, H, W)
            layers.append(nn.ReLU())
            if h >= 2 and w >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            blocks.append(nn.Sequential(*layers))
            c = out
        dense: list[nn.Module] = [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
        if dropout > 0:
            dense.append(nn.Dropout(dropout))
        blocks.append(nn.Sequential(*dense))
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.reshape(-1, *self.image_shape)))


MAX_ENSEMBLE_MEMBERS = 21


class AveragedLogits(nn.Module):
    """An ensemble of networks of one architecture: the mean of their logits (softmax of it = the normalized
    geometric mean of their probabilities). Architecture key `ensemble`: the member count."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def mlp_hidden(width: int, depth: int, hidden: list[int] | None) -> list[int]:
    return [int(h) for h in hidden] if hidden is not None else [int(width)] * int(depth)


def build_network(architecture: Mapping[str, Any]) -> nn.Module:
    """The untrained network an architecture dict describes (`type`: mlp | cnn | vision; `ensemble`: n members)."""
    if "ensemble" in architecture:
        members = architecture["ensemble"]
        # an untrusted model directory's count: bounded before any member is built (cv_folds <= 20, + the final one)
        if not isinstance(members, int) or isinstance(members, bool) or not 2 <= members <= MAX_ENSEMBLE_MEMBERS:
            raise ValueError(f"ensemble: {members!r} is not a member count in 2..{MAX_ENSEMBLE_MEMBERS}")
        member = {k: v for k, v in architecture.items() if k != "ensemble"}
        return AveragedLogits([build_network(member) for _ in range(members)])
    kind = architecture.get("type")
    if kind == "mlp":
        return MLP(int(architecture["in_features"]), int(architecture["n_classes"]), list(architecture["hidden"]),
                   float(architecture.get("dropout", 0.0)), str(architecture.get("norm", "none")),
                   str(architecture.get("activation", "relu")), architecture.get("encoder"))
    if kind == "cnn":
        return CNN(list(architecture["image_shape"]), int(architecture["n_classes"]), list(architecture["channels"]),
                   int(architecture["hidden"]), float(architecture.get("dropout", 0.0)), str(architecture.get("norm", "batch")))
    if kind == "vision":
        from mlplat_plugins.torch_trainers import vision

        return vision.build(architecture)
    raise UsageError(f"architecture.type: unknown network type {kind!r} (expected 'mlp', 'cnn' or 'vision')")


def check_image_shape(image_shape: list[int] | None, n_features: int) -> list[int]:
    """The [C, H, W] a CNN reshapes flat rows to; refuses shapes that do not match the features."""
    if image_shape is None:
        raise SpecError([("image_shape", "the dataset has no image shape; "
                         "set image_shape: [channels, height, width]")])
    if len(image_shape) != 3 or any(int(v) < 1 for v in image_shape):
        raise SpecError([("image_shape", f"expected 3 positive ints, got {image_shape}")])
    if math.prod(image_shape) != n_features:
        raise SpecError([("image_shape", f"{image_shape} has {math.prod(image_shape)} pixels "
                         f"but the data has {n_features} features")])
    return [int(v) for v in image_shape]
