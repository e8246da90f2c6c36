"""The model directory: everything serving and monitoring need, and nothing pickled.

    model/
      model.json            format version, trainer plugin + architecture, feature schema,
                            preprocessing statistics, classes, metrics, CV band, explainer
                            and drift-detector config
      weights.safetensors   the network's state dict
      reference.parquet     a sample of the training data (monitoring's reference)
      schema.json           the validator's inferred schema, when a validator ran
      explainer.safetensors explainer arrays (e.g. the k-means background), when fitted

`LoadedModel` rebuilds the network through the trainer plugin named in model.json and
applies the same preprocessing as training.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplat.errors import UsageError
from mlplat.preprocessing import Standardizer

if TYPE_CHECKING:
    import pandas as pd
    import torch

FORMAT_VERSION = 1
MODEL_JSON, WEIGHTS, REFERENCE, SCHEMA = "model.json", "weights.safetensors", "reference.parquet", "schema.json"
EXPLAINER_ARRAYS = "explainer.safetensors"


def feature_schema(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per-feature name, dtype and training range: what serving validates requests against."""
    return [
        {"name": str(c), "dtype": "float32", "min": float(frame[c].min()), "max": float(frame[c].max())}
        for c in frame.columns
    ]


def write_model_dir(directory: Path, network: torch.nn.Module, manifest: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    write_manifest(directory, {"format_version": FORMAT_VERSION, **manifest})


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_JSON
    if not path.is_file():
        raise UsageError(f"not a model directory (no {MODEL_JSON}): {directory}")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path}: unsupported model format version {manifest.get('format_version')!r}")
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / f".{MODEL_JSON}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    tmp.replace(directory / MODEL_JSON)


def copy_model_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


@dataclass
class LoadedModel:
    """A model rebuilt from its directory; satisfies `mlplat.contracts.explainer.ModelHandle`."""

    directory: Path
    manifest: dict[str, Any]
    network: torch.nn.Module
    standardizer: Standardizer

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> LoadedModel:
        from safetensors.torch import load_file

        from mlplat import registry

        manifest = read_manifest(directory)
        trainer = registry.get("trainer", manifest["trainer"]["plugin"]).create({})
        network = trainer.build_network(manifest["architecture"])
        network.load_state_dict(load_file(str(directory / WEIGHTS), device=device))
        network.to(device).eval()
        return cls(directory, manifest, network, Standardizer.from_json(manifest["preprocessing"]))

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest["features"]]

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["classes"])

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        return self.standardizer.transform(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.network(torch.from_numpy(self.preprocess(X)))
            return torch.softmax(logits.float(), dim=1).numpy()

    def reference(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.directory / REFERENCE)
