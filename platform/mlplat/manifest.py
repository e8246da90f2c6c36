"""`model.json` as a typed, versioned record: the only code that parses or serializes it.

`ModelManifest.from_json` accepts the current format and migrates older ones (`_MIGRATIONS`);
anything else, an unknown field or a missing one, is a `ModelDirError` naming the field path.
Plugin state is recorded as a `PluginRef` (plugin, distribution, version, params), so a model
says which package, in which version, must be installed to serve it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlplat.errors import ModelDirError

FORMAT_VERSION: Literal[2] = 2  # bump with a migration in _MIGRATIONS for the previous version
DRIFT_REFERENCE = "drift_reference.json"  # the drift detector's fitted state, in the model directory

# The model's task (mlplat.tasks); a manifest without one is a classification (formats before regression).
Task = Literal["classification", "regression"]


class _Record(BaseModel):
    # a misspelled or foreign field is refused, not silently dropped
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")  # NaN metrics stay NaN, as json.dumps wrote them


class Feature(_Record):
    """One input column as serving validates it (mlplat.columns: types, vocabulary codes, missing values)."""

    name: str
    # what a request sends: a number, a category as a string, or an encoded image (mlplat.images)
    dtype: Literal["float32", "string", "image"] = "float32"
    kind: Literal["numeric", "categorical", "boolean", "image"] = "numeric"
    categories: list[str] | None = None  # categorical: the training vocabulary; boolean: its [false, true] spellings
    min: float | None = None  # training range; None when the column had no finite value (or is categorical)
    max: float | None = None


class Standardization(_Record):
    """z = (x - mean) / scale per feature; `mlplat.preprocessing.Standardizer` applies it."""

    kind: Literal["standardize"] = "standardize"
    mean: list[float]
    scale: list[float]


class TargetStandardization(_Record):
    """Regression: the network predicts z = (y - mean) / scale; predictions are de-standardized with it."""

    kind: Literal["standardize"] = "standardize"
    mean: float
    scale: float


class TabularPreprocessing(_Record):
    """Imputation, missing indicators and standardization; `mlplat.columns.TabularPreprocessor` applies it."""

    kind: Literal["tabular"] = "tabular"
    kinds: list[Literal["numeric", "categorical", "boolean"]]
    fill: list[float]  # per feature, the imputed model-input value (median, or the most frequent value / code)
    indicators: list[int]  # feature positions with a missing-indicator input
    mean: list[float]
    scale: list[float]
    cardinalities: list[int] = Field(default_factory=list)  # per categorical feature: vocabulary size + unknown bucket


class ImagePreprocessing(_Record):
    """Decode, convert to `channels`, resize to `size`, scale to [0, 1], normalize per channel.

    `mlplat.images` applies it, in training and in serving alike. An encoded image whose header declares
    more than `max_pixels` pixels is refused before it is decoded (decompression bombs)."""

    kind: Literal["image"] = "image"
    size: list[int] = Field(min_length=2, max_length=2)  # [height, width] of the network input
    channels: Literal[1, 3]
    mean: list[float]  # per channel, of [0, 1] pixels over (a sample of) the training images
    std: list[float]
    max_pixels: int = Field(default=40_000_000, gt=0)


class Metrics(_Record):
    train: dict[str, float] = Field(default_factory=dict)  # the trainer's final train/validation metrics
    test: dict[str, float] | None = None  # written by the evaluate step


class Spread(_Record):
    mean: float
    std: float


class CVBand(_Record):
    """Cross-validation: each metric's spread over the folds (`val_accuracy`, `gap_loss`, ...) and the folds' rows."""

    folds: int
    bands: dict[str, Spread] = Field(default_factory=dict)
    per_fold: list[dict[str, float]] = Field(default_factory=list)

    @classmethod
    def from_trainer(cls, cv: Mapping[str, Any]) -> CVBand:
        """From a trainer's `TrainedModel.cv` ({metric: {mean, std}, "folds": K, "per_fold": [...]})."""
        return cls.model_validate(_cv_fields(cv))


class Calibration(_Record):
    """Temperature scaling fitted on the validation split: calibrated = softmax(log p / temperature).
    The monitor's label-free performance estimate reads it (mlplat.monitoring.performance_estimate)."""

    kind: Literal["temperature"] = "temperature"
    temperature: float = Field(1.0, gt=0)  # the one applied: the fitted one if it improved the NLL significantly, else 1
    fitted_temperature: float | None = None  # the NLL minimizer on the validation split
    rows: int = 0  # validation rows it was fitted on
    nll_before: float | None = None  # validation negative log-likelihood at temperature 1 ...
    nll_after: float | None = None  # ... and at the fitted temperature


class Decision(_Record):
    """How class probabilities become the predicted class: argmax(log p + offsets), per class.

    `argmax` (offsets all 0) is what a model without this field does. `offsets` moves the decision
    boundary, e.g. towards a rare class; for two classes it is the threshold `threshold` on p(class 1).
    `mlplat.decision.decide` applies it in evaluation, serving, explanation and monitoring alike."""

    kind: Literal["argmax", "offsets"] = "argmax"
    offsets: list[float] = Field(default_factory=list)  # per class, added to log-probabilities (empty: argmax)
    threshold: float | None = None  # two classes: predict class 1 when p(class 1) >= threshold (the same rule)
    selected_on: str = ""  # e.g. "out_of_fold": where the offsets were chosen
    rows: int = 0  # rows the offsets were chosen on
    balanced_accuracy: float | None = None  # on those rows, with the offsets ...
    argmax_balanced_accuracy: float | None = None  # ... and with plain argmax


class PluginRef(_Record):
    """A plugin that left state in the model directory: what must be installed to load it again."""

    plugin: str
    distribution: str = ""  # the Python distribution that ships the plugin ("" if unknown)
    version: str = ""  # that distribution's version when the model was written
    params: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, plugin: str, params: Mapping[str, Any], **extra: Any) -> Self:
        """The reference for an installed plugin: its distribution and version come from the registry."""
        from mlplat import registry

        found = registry.discover(registry.StageKind(kind)).get(plugin)
        distribution = found.distribution if found else ""
        try:
            version = metadata.version(distribution) if distribution else ""
        except metadata.PackageNotFoundError:
            version = ""
        return cls(plugin=plugin, distribution=distribution, version=version, params=dict(params), **extra)


class ExplainerRef(PluginRef):
    config: dict[str, Any] = Field(default_factory=dict)  # the fitted explainer's config (ExplainerState.config)
    arrays: list[str] = Field(default_factory=list)  # names of its arrays in explainer.safetensors


class DriftDetectorRef(PluginRef):
    state: str = DRIFT_REFERENCE  # file in the model directory holding the fitted reference summary


class ModelManifest(_Record):
    format_version: Literal[2] = FORMAT_VERSION
    name: str
    task: Task = "classification"
    label: str
    features: list[Feature]
    classes: list[str]  # empty for a regression
    image_shape: list[int] | None = None  # (channels, height, width) for image models
    preprocessing: TabularPreprocessing | Standardization | ImagePreprocessing = Field(discriminator="kind")
    target: TargetStandardization | None = None  # a regression's target scaling (None for a classification)
    trainer: PluginRef
    architecture: dict[str, Any]  # the trainer's own description; its build_network(architecture) rebuilds the net
    metrics: Metrics = Field(default_factory=Metrics)
    cv: CVBand | None = None
    seed: int
    created_at: float  # Unix time
    training_wall_s: float | None = None
    explainer: ExplainerRef | None = None
    global_importance: dict[str, float] | None = None  # feature -> mean |attribution|, from the explain step
    drift_detector: DriftDetectorRef | None = None
    calibration: Calibration | None = None  # a classifier's probability calibration (None: older models, regression)
    decision: Decision | None = None  # a classifier's decision rule (None: argmax, as older models)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "model.json") -> ModelManifest:
        """Parse and migrate; every problem is a ModelDirError that names `source` and the field."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelDirError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelDirError(f"{source}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(_migrated(data, source))
        except ValidationError as exc:  # also from a migration's typed parts
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                                 for e in exc.errors())
            raise ModelDirError(f"{source}: invalid model manifest: {problems}") from None


def _migrated(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` brought to FORMAT_VERSION one migration at a time; an unknown version is refused."""
    version = data.get("format_version")
    while version != FORMAT_VERSION:
        migrate = _MIGRATIONS.get(version) if isinstance(version, int) else None
        if migrate is None:
            known = ", ".join(str(v) for v in [*_MIGRATIONS, FORMAT_VERSION])
            raise ModelDirError(f"{source}: unsupported format_version {version!r} (this mlplat reads {known}); "
                                "a newer mlplat wrote it, or the file is corrupt")
        data = migrate(data)
        version = data.get("format_version")
    return data


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (an untyped dict): the drift detector was under `monitor`, the CV band was the trainer's dict."""
    data = {**data, "format_version": 2}
    if "monitor" in data:
        data["drift_detector"] = data.pop("monitor")
    if isinstance(data.get("cv"), Mapping):
        data["cv"] = _cv_fields(data["cv"])
    return data


def _cv_fields(cv: Mapping[str, Any]) -> dict[str, Any]:
    per_fold = list(cv.get("per_fold") or [])
    bands = {k: v for k, v in cv.items() if isinstance(v, Mapping)}
    return {"folds": cv.get("folds", len(per_fold)), "bands": bands, "per_fold": per_fold}


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1}
