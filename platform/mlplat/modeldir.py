"""The model directory: everything serving and monitoring need, and nothing pickled.

    model/
      model.json             the typed manifest (mlplat.manifest.ModelManifest)
      weights.safetensors    the network's state dict
      reference.parquet      a sample of the training data and the model's predictions of it
                             (column `__prediction__`): monitoring's reference
      schema.json            the validator's inferred schema, when a validator ran
      explainer.safetensors  explainer arrays (e.g. the k-means background), when fitted
      drift_reference.json   the drift detector's fitted reference summary, when fitted

`ModelDir` owns these names, reads and writes the manifest (atomically) and amends it.
`resolve_model` turns what a user types (a run id, `latest`, a path, a file:// URI) into one.
`LoadedModel` rebuilds the network through the trainer plugin named in the manifest and
applies the same preprocessing as training.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np

from mlplat.contracts.drift_detector import PREDICTION_COLUMN
from mlplat.errors import ModelDirError, UsageError
from mlplat.manifest import DRIFT_REFERENCE, FORMAT_VERSION, Feature, ModelManifest
from mlplat.preprocessing import Standardizer, TargetStandardizer

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = ["DRIFT_REFERENCE", "EXPLAINER_ARRAYS", "FORMAT_VERSION", "MODEL_JSON", "PREDICTION_COLUMN", "REFERENCE",
           "SCHEMA", "WEIGHTS", "LoadedModel", "ModelDir", "feature_schema", "resolve_model"]

MODEL_JSON, WEIGHTS, REFERENCE, SCHEMA = "model.json", "weights.safetensors", "reference.parquet", "schema.json"
EXPLAINER_ARRAYS = "explainer.safetensors"


def feature_schema(frame: pd.DataFrame) -> list[Feature]:
    """Per-feature name, dtype and training range: what serving validates requests against."""
    return [Feature(name=str(c), min=_finite(frame[c].min()), max=_finite(frame[c].max())) for c in frame.columns]


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a server starting, a concurrent step) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass(frozen=True)
class ModelDir:
    """A model directory on local disk: its files by role, and the one reader/writer of its manifest."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def manifest_path(self) -> Path:
        return self.path / MODEL_JSON

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def reference(self) -> Path:
        return self.path / REFERENCE

    @property
    def schema(self) -> Path:
        return self.path / SCHEMA

    @property
    def explainer_arrays(self) -> Path:
        return self.path / EXPLAINER_ARRAYS

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read(self) -> ModelManifest:
        """The manifest, migrated to the current format; a ModelDirError says what is wrong."""
        if not self.exists():
            raise ModelDirError(f"not a model or run directory (no {MODEL_JSON}): {self.path}")
        return ModelManifest.from_json(self.manifest_path.read_text(), str(self.manifest_path))

    def write(self, manifest: ModelManifest) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.manifest_path, manifest.to_json())

    def update(self, **fields: Any) -> ModelManifest:
        """Replace top-level manifest fields (validated, written atomically); returns the new manifest."""
        merged = ModelManifest.model_validate({**dict(self.read()), **fields})
        self.write(merged)
        return merged

    def write_state(self, name: str, state: Any) -> Path:
        """A plugin's JSON state file (e.g. the drift reference), written atomically."""
        path = self.path / name
        _write_atomic(path, json.dumps(state, default=float))
        return path

    def read_state(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def write_weights(self, network: torch.nn.Module) -> None:
        from safetensors.torch import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(self.weights))

    def copy_to(self, target: Path) -> ModelDir:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(self.path, target)
        return ModelDir(target)


def copy_model_dir(source: Path, target: Path) -> None:
    ModelDir(source).copy_to(target)


def resolve_model(ref: str, runs_dir: Path | None) -> ModelDir:
    """`RUN | latest | run dir | model dir | file:// URI` → the model directory it names.

    A run id needs `runs_dir` (the run store); paths and URIs don't."""
    from mlplat.runs import RunStore

    if "://" in ref:
        uri = urlparse(ref)
        if uri.scheme != "file":
            raise UsageError(f"{ref}: remote model stores ({uri.scheme}://) come with the cluster path; "
                             "copy the model directory here and pass its path")
        ref = unquote(uri.path)
    path = Path(ref).expanduser()
    for candidate in (ModelDir(path), ModelDir(path / "model")):
        if candidate.exists():
            return candidate
    if path.exists():
        raise ModelDirError(f"not a model or run directory (no {MODEL_JSON}): {path}")
    if os.sep in ref or path.is_absolute():
        raise ModelDirError(f"no model directory at {path} (the path does not exist)")
    if runs_dir is None:
        raise UsageError(f"{ref!r} is not a path, and no run store was given to look it up as a run id")
    run = RunStore(runs_dir).get(ref)
    if not ModelDir(run.model_dir).exists():
        raise ModelDirError(f"run {run.id} has no published model (status: {run.record().get('status')}; "
                            "did it fail a gate?)")
    return ModelDir(run.model_dir)


@dataclass
class LoadedModel:
    """A model rebuilt from its directory; satisfies `mlplat.contracts.explainer.ModelHandle`."""

    directory: Path
    manifest: ModelManifest
    network: torch.nn.Module
    standardizer: Standardizer
    target: TargetStandardizer | None = None  # a regression's target scaling

    @classmethod
    def load(cls, directory: Path | ModelDir, device: str = "cpu") -> LoadedModel:
        from safetensors.torch import load_file

        from mlplat import registry

        model_dir = directory if isinstance(directory, ModelDir) else ModelDir(directory)
        manifest = model_dir.read()
        if not model_dir.weights.is_file():
            raise ModelDirError(f"{model_dir.path}: {WEIGHTS} is missing")
        trainer = registry.create("trainer", manifest.trainer.plugin, {}, step="load")
        network = trainer.build_network(manifest.architecture)
        network.load_state_dict(load_file(str(model_dir.weights), device=device))
        network.to(device).eval()
        standardizer = Standardizer.from_json(manifest.preprocessing.model_dump())
        if manifest.task == "regression" and manifest.target is None:
            raise ModelDirError(f"{model_dir.manifest_path}: a regression model needs its target scaling ('target')")
        target = TargetStandardizer.from_json(manifest.target.model_dump()) if manifest.target else None
        return cls(model_dir.path, manifest, network, standardizer, target)

    @property
    def model_dir(self) -> ModelDir:
        return ModelDir(self.directory)

    def update_manifest(self, **fields: Any) -> None:
        """Amend model.json and keep this in-memory copy in step with it (later steps read it)."""
        self.manifest = self.model_dir.update(**fields)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def feature_names(self) -> list[str]:
        return self.manifest.feature_names

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def output_names(self) -> list[str]:
        """One name per column of `predict_outputs`: the classes, or the regression label."""
        return [self.manifest.label] if self.task == "regression" else self.class_names

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        return self.standardizer.transform(X)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.network(torch.from_numpy(self.preprocess(X))).float().numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [n, classes]; a regression has none (use `predict_values`)."""
        if self.task == "regression":
            raise UsageError(f"model {self.name!r} is a regression: it predicts values, not class probabilities")
        import torch

        return torch.softmax(torch.from_numpy(self._raw(X)), dim=1).numpy()

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        """A regression's predicted values [n] in the label's units (the network's output de-standardized)."""
        if self.target is None:
            raise UsageError(f"model {self.name!r} is a classification: it predicts classes, not values")
        return self.target.inverse(self._raw(X)[:, 0])

    def predict_outputs(self, X: np.ndarray) -> np.ndarray:
        """What an explainer attributes, one column per `output_names`: probabilities, or [n, 1] values."""
        return self.predict_values(X)[:, None] if self.task == "regression" else self.predict_proba(X)

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Class indices [n] (classification) or values [n] (regression): the monitor's prediction column."""
        return self.predict_values(X) if self.task == "regression" else self.predict_proba(X).argmax(1)

    def reference(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.model_dir.reference)
