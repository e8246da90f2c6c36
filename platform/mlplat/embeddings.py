"""A network's penultimate-layer embedding: the input of its last `nn.Linear`, caught by a forward hook.

That works for any architecture that ends in a linear classifier (mlplat's CNN, torchvision backbones),
without knowing its module names. Image drift compares these embeddings (and the softmax outputs) of
production requests with those of the training images (`mlplat_plugins.image_drift`).

The drift features of one image are `emb_<i>` (the embedding), `prob_<k>` (softmax per class) and the
cheap statistics of `mlplat.serving.image_requests.IMAGE_STATS`: the columns of the reference and of the window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import torch

EMBEDDING_PREFIX, PROBABILITY_PREFIX = "emb_", "prob_"
DRIFT_FEATURES = "drift_features.parquet"  # in an image model's directory: the drift features of its reference images


def drift_columns(embedding_dim: int, n_classes: int, stats: Sequence[str]) -> list[str]:
    return ([f"{EMBEDDING_PREFIX}{i}" for i in range(embedding_dim)] + [f"{PROBABILITY_PREFIX}{k}" for k in range(n_classes)]
            + list(stats))


class EmbeddingProbe:
    """Runs the network and returns (softmax [n, K], embedding [n, D]) from one forward pass.

    The hook keeps what it caught per thread, so an explanation running the same network on another
    thread never mixes its activations into a prediction's."""

    def __init__(self, network: torch.nn.Module) -> None:

        self.network = network
        self.last = self.last_linear(network)
        self.dim = int(self.last.in_features)
        self._caught = threading.local()
        self.last.register_forward_hook(self._hook)

    @staticmethod
    def last_linear(network: torch.nn.Module) -> torch.nn.Linear:
        from torch import nn

        linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the network has no nn.Linear layer: no penultimate embedding to record")
        return linears[-1]

    @staticmethod
    def embedding_dim(network: torch.nn.Module) -> int:
        return int(EmbeddingProbe.last_linear(network).in_features)

    def _hook(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        self._caught.value = inputs[0]

    def caught(self) -> torch.Tensor:
        """The last linear layer's input in this thread's latest forward pass."""
        caught = getattr(self._caught, "value", None)
        if caught is None:
            raise RuntimeError("the last nn.Linear did not run in the forward pass")
        return caught

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self._caught.value = None
        with torch.inference_mode():
            logits = self.network(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).float()
            probabilities = torch.softmax(logits, dim=1).numpy()
        return probabilities, self.caught().float().reshape(len(X), -1).numpy()


def drift_rows(probe: EmbeddingProbe, X: np.ndarray, stats: np.ndarray, batch_size: int = 256,
               decide: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(drift feature rows [n, D + K + S], predicted class [n]) of network inputs X with their statistics;
    the class by `decide` (a model's decision rule, `LoadedModel.decide`), else the argmax."""
    parts, predicted = [], []
    for start in range(0, len(X), batch_size):
        probabilities, embedding = probe(X[start:start + batch_size])
        parts.append(np.concatenate([embedding, probabilities, stats[start:start + batch_size]], axis=1))
        predicted.append(probabilities.argmax(axis=1) if decide is None else decide(probabilities))
    return np.concatenate(parts).astype(np.float32), np.concatenate(predicted)


def image_reference(loaded: Any, encoded: Sequence[bytes]) -> pd.DataFrame:
    """The drift reference of an image model: drift features and predicted class of encoded (training or
    validation) images, decoded exactly as serving decodes requests. Written as the model's reference.parquet."""
    import pandas as pd

    from mlplat.contracts.drift_detector import PREDICTION_COLUMN
    from mlplat.serving.image_requests import IMAGE_STATS, ImageSchema

    schema = ImageSchema(loaded.image_preprocessing, max_images=len(encoded))
    X, stats = schema.decode_all(list(encoded), "reference images")
    probe = EmbeddingProbe(loaded.network)
    rows, predicted = drift_rows(probe, X, stats, decide=loaded.decide)
    frame = pd.DataFrame(rows, columns=drift_columns(probe.dim, len(loaded.class_names), IMAGE_STATS))
    frame[PREDICTION_COLUMN] = predicted
    return frame


def drift_reference(loaded: Any) -> pd.DataFrame:
    """An image model's drift reference: `DRIFT_FEATURES` in its directory, computed once from the reference
    images (reference.parquet's locations, a sample of the validation images) when missing."""
    import pandas as pd

    from mlplat.images import read_bytes

    model_dir = loaded.model_dir
    path = model_dir.file(DRIFT_FEATURES, "drift reference")
    if path.is_file():
        return pd.read_parquet(path)
    locations = loaded.reference().iloc[:, 0].astype(str).tolist()
    frame = image_reference(loaded, [read_bytes(location) for location in locations])
    frame.to_parquet(path, index=False)
    return frame
