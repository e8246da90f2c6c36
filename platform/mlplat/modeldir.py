"""The model directory: everything serving and monitoring need, and nothing pickled.

    model/
      model.json             the typed manifest (mlplat.manifest.ModelManifest)
      weights.safetensors    the network's state dict
      reference.parquet      a sample of the validation rows (training rows without one) and the model's predictions of them
                             (column `__prediction__`): monitoring's reference
      schema.json            the validator's inferred schema, when a validator ran
      explainer.safetensors  explainer arrays (e.g. the k-means background), when fitted
      drift_reference.json   the drift detector's fitted reference summary, when fitted

`ModelDir` owns these names, reads and writes the manifest (atomically) and amends it.
`resolve_model` turns what a user types (a run id, `latest`, a path, a file:// URI) into one.
`LoadedModel` rebuilds the network through the trainer plugin named in the manifest and
applies the same preprocessing as training, after `mlplat.integrity`'s checks: a corrupt directory
is a ModelDirError naming the file and field, before anything is allocated or served.
Every file the manifest names is resolved by `ModelDir.file`, which keeps it inside the directory.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplat.columns import ColumnEncoding, TabularPreprocessor, encode_frame
from mlplat.contracts.drift_detector import PREDICTION_COLUMN
from mlplat.errors import ModelDirError, UsageError
from mlplat.manifest import DRIFT_REFERENCE, FORMAT_VERSION, Feature, ImagePreprocessing, ModelManifest
from mlplat.preprocessing import Standardizer, TargetStandardizer
from mlplat.sources import local_path

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = ["DRIFT_REFERENCE", "EXPLAINER_ARRAYS", "FORMAT_VERSION", "MODEL_JSON", "PREDICTION_COLUMN", "REFERENCE",
           "SCHEMA", "WEIGHTS", "LoadedModel", "ModelDir", "feature_schema", "resolve_model"]

MODEL_JSON, WEIGHTS, REFERENCE, SCHEMA = "model.json", "weights.safetensors", "reference.parquet", "schema.json"
EXPLAINER_ARRAYS = "explainer.safetensors"


def feature_schema(frame: pd.DataFrame, encodings: list[ColumnEncoding] | None = None) -> list[Feature]:
    """Per-feature name, type, vocabulary and training range: what serving validates requests against."""
    by_name = {e.name: e for e in encodings or []}
    out = []
    for c in frame.columns:
        encoding = by_name.get(str(c), ColumnEncoding(str(c), "numeric"))
        if encoding.kind == "categorical":
            out.append(Feature(name=str(c), dtype="string", kind="categorical", categories=encoding.categories))
            continue
        values = encoding.encode(frame[c])
        finite = values[np.isfinite(values)]
        out.append(Feature(name=str(c), kind=encoding.kind, categories=encoding.categories,
                           min=float(finite.min()) if len(finite) else None, max=float(finite.max()) if len(finite) else None))
    return out


def encodings_of(features: list[Feature]) -> list[ColumnEncoding]:
    return [ColumnEncoding(f.name, f.kind, f.categories) for f in features]


def preprocessor_from_json(data: dict[str, Any]) -> Standardizer | TabularPreprocessor | ImagePreprocessing:
    """The saved preprocessing: `tabular` (mlplat.columns), `image` (mlplat.images applies it), or `standardize`
    (models written before `tabular`)."""
    if data.get("kind") == "image":
        return ImagePreprocessing.model_validate(data)
    return TabularPreprocessor.from_json(data) if data.get("kind") == "tabular" else Standardizer.from_json(data)


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a server starting, a concurrent step) see the old file or the new one, never half of one."""
    from mlplat.runs import write_text_atomic

    write_text_atomic(path, text)


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

    def file(self, name: str, field: str) -> Path:
        """The file `name` of this directory, refused unless it stays inside it: no absolute path, no `..`,
        no symlink that leads out. `field` is what referenced it (a manifest field), for the error."""
        parts = PurePosixPath(name.replace("\\", "/")).parts  # a Windows-style `..\x` is refused too
        if not parts or parts[0].startswith("/") or ".." in parts:
            raise ModelDirError(f"{self.manifest_path}: {field}: {name!r} is not a file name inside the model directory")
        path = self.path.joinpath(*parts)
        root, target = self.path.resolve(), path.resolve()
        if not target.is_relative_to(root):
            raise ModelDirError(f"{self.manifest_path}: {field}: {name!r} leads to {target}, outside the model "
                                f"directory {root}")
        return path

    def read(self) -> ModelManifest:
        """The manifest, migrated to the current format; a ModelDirError says what is wrong."""
        if not self.exists():
            raise ModelDirError(f"not a model or run directory (no {MODEL_JSON}): {self.path}")
        path = self.file(MODEL_JSON, "the manifest")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelDirError(f"{path}: cannot read ({exc})") from None
        return ModelManifest.from_json(text, str(path))

    def referenced_files(self, manifest: ModelManifest) -> dict[str, Path]:
        """Every file the manifest makes this directory use, by the field that names it, each resolved inside
        the directory. Only the weights must exist here; the others are checked by their readers."""
        files = {"weights": self.file(WEIGHTS, "weights"), "reference": self.file(REFERENCE, "reference"),
                 "schema": self.file(SCHEMA, "schema")}
        if manifest.explainer is not None and manifest.explainer.arrays:
            files["explainer.arrays"] = self.file(EXPLAINER_ARRAYS, "explainer.arrays")
        if manifest.preprocessing.kind == "image":  # the embeddings, outputs and statistics image drift compares with
            from mlplat.embeddings import DRIFT_FEATURES

            files["drift_features"] = self.file(DRIFT_FEATURES, "drift reference")
        if manifest.drift_detector is not None:
            files["drift_detector.state"] = self.file(manifest.drift_detector.state, "drift_detector.state")
        return files

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

    def read_state(self, name: str, field: str = "state") -> Any:
        path = self.file(name, field)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelDirError(f"{path}: {field}: cannot read JSON state ({exc})") from None

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
    """`RUN | latest | run dir | model dir | model store (path or URI) | model URI` → the model directory it names.

    A run id needs `runs_dir` (the run store); paths and URIs don't. Store URIs (s3://, gs://, pvc://,
    file://) resolve through mlplat.modelstore: a store root to its `latest` version, downloaded with
    KServe's storage code when it is remote."""
    from mlplat import modelstore
    from mlplat.runs import RunStore

    if "://" in ref:
        if not modelstore.is_store_uri(ref):
            raise UsageError(f"{ref}: not a model store URI (use {', '.join(f'{s}://' for s in modelstore.STORE_SCHEMES)})")
        if modelstore.is_remote_store(ref):
            return ModelDir(modelstore.resolve(ref))
        ref = str(local_path(ref))  # file:// and pvc:// name local directories: resolved like paths below
    path = Path(ref).expanduser()
    if (path / modelstore.LATEST).is_file() and not (path / modelstore.LATEST).is_symlink():
        return ModelDir(modelstore.resolve(str(path.resolve())))  # a model store on local disk: its latest version
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
        raise ModelDirError(f"run {run.id} has no published model (status: {run.status()}; "
                            "did it fail a gate?)")
    return ModelDir(run.model_dir)


def _build(trainer: Any, manifest: ModelManifest, source: Path) -> torch.nn.Module:
    """The trainer's network for the manifest's architecture; an architecture it cannot build names the field."""
    try:
        return trainer.build_network(manifest.architecture)
    except ModelDirError:
        raise
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{source}: architecture: cannot build the network ({exc})") from None


@dataclass
class LoadedModel:
    """A model rebuilt from its directory; satisfies `mlplat.contracts.explainer.ModelHandle`."""

    directory: Path
    manifest: ModelManifest
    network: torch.nn.Module
    # the saved preprocessing (named so before there were other kinds); an image model's is its ImagePreprocessing
    standardizer: Standardizer | TabularPreprocessor | ImagePreprocessing
    target: TargetStandardizer | None = None  # a regression's target scaling

    @classmethod
    def load(cls, directory: Path | ModelDir, device: str = "cpu") -> LoadedModel:
        """The model, once every integrity check passed (mlplat.integrity); else a ModelDirError naming file and field."""
        import torch

        from mlplat import integrity, registry

        model_dir = directory if isinstance(directory, ModelDir) else ModelDir(directory)
        manifest = model_dir.read()
        integrity.check_manifest(manifest, model_dir.manifest_path)
        files = model_dir.referenced_files(manifest)
        weights = files["weights"]
        if not weights.is_file():
            raise ModelDirError(f"{weights}: {WEIGHTS} is missing")
        found = integrity.read_safetensors_header(weights)
        if "explainer.arrays" in files:
            explainer_arrays = files["explainer.arrays"]
            if not explainer_arrays.is_file():
                raise ModelDirError(f"{explainer_arrays}: the explainer's arrays are recorded in the manifest "
                                    "but the file is missing")
            integrity.read_safetensors_header(explainer_arrays)
        trainer = registry.create("trainer", manifest.trainer.plugin, {}, step="load")
        with torch.device("meta"):  # shapes only: an architecture the weights don't match allocates nothing
            probe = _build(trainer, manifest, model_dir.manifest_path)
        standardizer = preprocessor_from_json(manifest.preprocessing.model_dump())
        layout = getattr(standardizer, "input_layout", None)  # encoded tabular: dense inputs, then one code per category
        kinds = getattr(standardizer, "kinds", None)
        if kinds is not None and len(kinds) != len(manifest.features):
            raise ModelDirError(f"{model_dir.manifest_path}: features: {len(manifest.features)} feature names for "
                                f"preprocessing of {len(kinds)} columns")
        width = layout["dense"] + len(layout["cardinalities"]) if layout else None
        if isinstance(standardizer, ImagePreprocessing):  # an image model takes [B, C, H, W]
            width = (standardizer.channels, *standardizer.size)
        integrity.check_network(probe, manifest, weights, model_dir.manifest_path, found, width)
        network = _build(trainer, manifest, model_dir.manifest_path)
        network.load_state_dict(integrity.load_tensors(weights, device=device))
        network.to(device).eval()
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

    @property
    def is_image(self) -> bool:
        """An image-file model: its one feature is an encoded image, decoded with `image_preprocessing`."""
        return isinstance(self.standardizer, ImagePreprocessing)

    @property
    def image_preprocessing(self) -> ImagePreprocessing:
        if not isinstance(self.standardizer, ImagePreprocessing):
            raise UsageError(f"model {self.name!r} takes tabular features, not images")
        return self.standardizer

    def predict_proba_images(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities [B, classes] of a batch [B, C, H, W] of images decoded by `mlplat.images.decode`
        (converted, resized and normalized with this model's `image_preprocessing`)."""
        import torch

        prep = self.image_preprocessing
        expected = (prep.channels, *prep.size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise UsageError(f"model {self.name!r} takes images [B, {', '.join(map(str, expected))}], got {list(images.shape)}")
        device = next(iter(self.network.parameters())).device
        with torch.inference_mode():
            logits = self.network(images.to(device=device, dtype=torch.float32))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predict_proba_files(self, locations: list[str], batch_size: int = 256, workers: int = 0) -> np.ndarray:
        """Class probabilities [n, classes] of image files (paths or URIs), decoded lazily in a DataLoader."""
        from mlplat.images import ImageFiles, loader

        parts = [self.predict_proba_images(batch) for batch, _ in
                 loader(ImageFiles(locations, None, self.image_preprocessing), batch_size=batch_size, workers=workers)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw feature columns (strings for categories, missing cells) → this model's input rows (mlplat.columns)."""
        return encode_frame(frame, encodings_of(self.manifest.features))

    def impute(self, X: np.ndarray) -> np.ndarray:
        """Model input rows with each missing value replaced by its training fill value (still model-input space)."""
        fill = getattr(self.standardizer, "fill", None)
        X = np.asarray(X, np.float64)
        return X if fill is None else np.where(np.isnan(X), fill, X)

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        if isinstance(self.standardizer, ImagePreprocessing):
            raise UsageError(f"model {self.name!r} takes images (predict_proba_images), not feature rows")
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
        return self.predict_values(X) if self.task == "regression" else self.decide(self.predict_proba(X))

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """The predicted class indices [n] of class probabilities, by the model's decision rule (argmax without one)."""
        from mlplat.decision import decide

        return decide(probabilities, self.manifest.decision)

    def reference(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.model_dir.reference)
