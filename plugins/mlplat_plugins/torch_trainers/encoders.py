"""In-model encoders for categorical inputs.

The network input is [dense floats..., one code column per categorical feature] (mlplat.columns:
code 0 is the unknown bucket, 1..K the training vocabulary). A feature with at most `onehot_max`
codes is one-hot encoded, a larger one gets a learned embedding. All one-hot features are written
by one scatter and all embedded features share one table (with per-feature offsets), so the
encoder costs two kernels per batch whatever the number of categorical columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def encoder_spec(layout: Mapping[str, Any] | None, onehot_max: int, embedding_dim: int) -> dict[str, Any] | None:
    """The architecture entry for an input layout, or None when there is nothing to encode."""
    if not layout or not layout.get("cardinalities"):
        return None
    return {"dense": int(layout["dense"]), "cardinalities": [int(c) for c in layout["cardinalities"]],
            "onehot_max": int(onehot_max), "embedding_dim": int(embedding_dim)}


def encoded_width(spec: Mapping[str, Any]) -> int:
    cards = spec["cardinalities"]
    return spec["dense"] + sum(c for c in cards if c <= spec["onehot_max"]) + \
        spec["embedding_dim"] * sum(1 for c in cards if c > spec["onehot_max"])


class CategoricalEncoder(nn.Module):
    # buffers (register_buffer): declared so the type checker knows them as tensors, not nn.Module attributes
    onehot_columns: torch.Tensor
    onehot_offsets: torch.Tensor
    embedded_columns: torch.Tensor
    embedded_offsets: torch.Tensor

    def __init__(self, dense: int, cardinalities: list[int], onehot_max: int, embedding_dim: int) -> None:
        super().__init__()
        self.dense = dense
        onehot = [i for i, c in enumerate(cardinalities) if c <= onehot_max]
        embedded = [i for i, c in enumerate(cardinalities) if c > onehot_max]
        self.onehot_width = sum(cardinalities[i] for i in onehot)
        self.embedding_dim = embedding_dim
        self.register_buffer("onehot_columns", torch.tensor([dense + i for i in onehot], dtype=torch.long), persistent=False)
        self.register_buffer("onehot_offsets", _offsets([cardinalities[i] for i in onehot]), persistent=False)
        self.register_buffer("embedded_columns", torch.tensor([dense + i for i in embedded], dtype=torch.long), persistent=False)
        self.register_buffer("embedded_offsets", _offsets([cardinalities[i] for i in embedded]), persistent=False)
        self.embedding = nn.Embedding(sum(cardinalities[i] for i in embedded), embedding_dim) if embedded else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, : self.dense]]
        if self.onehot_width:
            # clamp: a code outside the vocabulary (a hand-made request) lands in that feature's unknown bucket 0
            codes = x.index_select(1, self.onehot_columns).long().clamp_(min=0) + self.onehot_offsets
            parts.append(torch.zeros(len(x), self.onehot_width, dtype=x.dtype, device=x.device).scatter_(1, codes, 1.0))
        if self.embedding is not None:
            codes = x.index_select(1, self.embedded_columns).long().clamp_(min=0) + self.embedded_offsets
            parts.append(self.embedding(codes).flatten(1).to(x.dtype))
        return torch.cat(parts, dim=1)


def _offsets(cardinalities: list[int]) -> torch.Tensor:
    starts = [0]
    for c in cardinalities[:-1]:
        starts.append(starts[-1] + c)
    return torch.tensor(starts if cardinalities else [], dtype=torch.long)


def build_encoder(spec: Mapping[str, Any] | None) -> CategoricalEncoder | None:
    if not spec:
        return None
    return CategoricalEncoder(int(spec["dense"]), list(spec["cardinalities"]), int(spec["onehot_max"]), int(spec["embedding_dim"]))
