"""Datasets: loading sources, seeded stratified splits, and the on-disk split format.

Splits travel between steps as Parquet files (never pickle) plus `dataset.json`, so the
in-process runner and a KFP component exchange exactly the same artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from mlplat.errors import UsageError
from mlplat.sources import Fetched, Fingerprint, fetch, fingerprint, is_remote, local_path
from mlplat.tasks import Task, resolve_task

LABEL, ROW_ID, WEIGHT, SYNTHETIC = "__label__", "__row_id__", "__weight__", "__synthetic__"
RESERVED = (LABEL, ROW_ID, WEIGHT, SYNTHETIC)
SPLIT_NAMES = ("train", "validation", "test")
SKLEARN_DATASETS = ("breast_cancer", "digits", "wine", "iris", "diabetes")
IMAGE_SHAPES = {"digits": [1, 8, 8]}


@dataclass(frozen=True)
class DatasetInfo:
    """What every step needs to know about the data, without the data."""

    name: str
    label: str
    feature_names: list[str]
    classes: list[str]  # empty for regression
    image_shape: list[int] | None = None  # [channels, height, width] when features are pixels
    # per feature: numeric | categorical | boolean (mlplat.columns); empty = all numeric (older splits)
    column_types: dict[str, str] = field(default_factory=dict)
    # cells of numeric columns that are no number: {column, row_id, value}; the validator reports them
    bad_cells: list[dict[str, Any]] = field(default_factory=list)
    id_column: str | None = None  # the column whose values are the row ids, when the spec names one
    # the network input's layout (mlplat.columns.TabularPreprocessor.input_layout), set for the trainer only
    input_layout: dict[str, Any] | None = None
    task: Task = "classification"  # mlplat.tasks: inferred from the label or set as dataset.task
    # an image-file dataset (dataset.image): {"size": [H, W], "channels": C, "max_pixels": N}; the one feature
    # column is mlplat.images.IMAGE_COLUMN, each image's location (image_shape is then the network input [C, H, W])
    image: dict[str, Any] | None = None

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def image_files(self) -> bool:
        return self.image is not None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def as_row_ids(values: Any) -> np.ndarray:
    """Row ids as a table keeps them: int64 (positions or the user's whole numbers), or the user's text ids
    as an object array of str (dataset.id with string ids)."""
    ids = np.asarray(values)
    if ids.dtype.kind in "OUS":
        return ids.astype(str).astype(object)
    return ids.astype(np.int64)


def synthetic_row_id(row_ids: np.ndarray) -> int | str:
    """The row id of generated rows: -1 beside integer ids, "" beside text ids (neither is a user's id)."""
    return "" if row_ids.dtype == object else -1


@dataclass
class Table:
    """Labeled rows. `labels` are class indices into DatasetInfo.classes (int64), or a regression
    target's values (float64: a float array stays float)."""

    features: pd.DataFrame
    labels: np.ndarray
    row_ids: np.ndarray
    weights: np.ndarray = field(default=None)  # type: ignore[arg-type]
    synthetic: np.ndarray = field(default=None)  # type: ignore[arg-type]

    if TYPE_CHECKING:  # weights and synthetic may be left out (None): __post_init__ fills them in
        def __init__(self, features: pd.DataFrame, labels: np.ndarray, row_ids: np.ndarray, weights: np.ndarray | None = None,
                     synthetic: np.ndarray | None = None) -> None: ...

    def __post_init__(self) -> None:
        n = len(self.features)
        self.features = self.features.set_axis(pd.RangeIndex(n), copy=False)  # positions, without copying the data
        labels = np.asarray(self.labels)
        self.labels = labels.astype(np.float64 if labels.dtype.kind == "f" else np.int64)
        self.row_ids = as_row_ids(self.row_ids)
        self.weights = np.ones(n, np.float32) if self.weights is None else np.asarray(self.weights, np.float32)
        self.synthetic = np.zeros(n, bool) if self.synthetic is None else np.asarray(self.synthetic, bool)
        if not (len(self.labels) == len(self.row_ids) == len(self.weights) == len(self.synthetic) == n):
            raise ValueError("features, labels, row_ids, weights and synthetic must have the same length")

    def __len__(self) -> int:
        return len(self.features)

    def take(self, index: np.ndarray) -> Table:
        index = np.asarray(index)
        return Table(
            self.features.iloc[index], self.labels[index], self.row_ids[index], self.weights[index], self.synthetic[index]
        )

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(dict(self.features.items()), copy=False)  # the feature columns, not copied
        frame[LABEL], frame[ROW_ID], frame[WEIGHT], frame[SYNTHETIC] = self.labels, self.row_ids, self.weights, self.synthetic
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Table:
        features = frame.drop(columns=[c for c in RESERVED if c in frame.columns])
        return cls(features, frame[LABEL].to_numpy(), frame[ROW_ID].to_numpy(), frame[WEIGHT].to_numpy(), frame[SYNTHETIC].to_numpy())

    @classmethod
    def concat(cls, tables: list[Table]) -> Table:
        return cls.from_frame(pd.concat([t.to_frame() for t in tables], ignore_index=True))

    def with_synthetic(self, features: pd.DataFrame, labels: np.ndarray, weights: np.ndarray | None = None) -> Table:
        """This table plus generated rows, tagged synthetic with row id -1 (augmenters use it)."""
        n = len(features)
        labels = np.asarray(labels).astype(self.labels.dtype)  # generated rows keep the task's label type
        extra = Table(features[list(self.features.columns)], labels, np.full(n, synthetic_row_id(self.row_ids)), weights,
                      np.ones(n, bool))
        return Table.concat([self, extra]) if n else self


@dataclass
class Splits:
    info: DatasetInfo
    train: Table
    validation: Table
    test: Table

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in SPLIT_NAMES:
            getattr(self, name).to_frame().to_parquet(directory / f"{name}.parquet", index=False)
        (directory / "dataset.json").write_text(json.dumps(asdict(self.info), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Splits:
        info = DatasetInfo(**json.loads((directory / "dataset.json").read_text()))
        tables = {name: Table.from_frame(pd.read_parquet(directory / f"{name}.parquet")) for name in SPLIT_NAMES}
        return cls(info, **tables)

    def with_train(self, train: Table) -> Splits:
        return replace(self, train=train)


def load_source(source: str, label: str | None, features: list[str] | None, base_dir: Path,
                na_values: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Read a dataset source into one frame; return it with the label column's name."""
    frame, label, _ = read_source(source, label, features, base_dir, na_values=na_values)
    return frame, label


def read_source(source: str, label: str | None, features: list[str] | None, base_dir: Path,
                field: str = "dataset.source", na_values: list[str] | None = None) -> tuple[pd.DataFrame, str, Fingerprint]:
    """`load_source`, plus the fingerprint of what was read (see mlplat.sources). `source` is
    'sklearn:NAME', a path (relative to `base_dir`) or a URI; `field` names it in errors."""
    if source.startswith("sklearn:"):
        frame, label = _load_sklearn(source.removeprefix("sklearn:"))
        return _select_features(frame, label, features, source), label, fingerprint(source, base_dir, field)
    frame, fetched = read_frame(source, base_dir, field, na_values)
    label = label or (TENSOR_LABEL if fetched.suffix in TENSOR_SUFFIXES else None)
    if label is None:
        raise UsageError("dataset.label: required for file sources")
    if label not in frame.columns:
        raise UsageError(f"dataset.label: column {label!r} not in {fetched.name} (columns: {', '.join(map(str, frame.columns))})")
    return _select_features(frame, label, features, fetched.name), label, fetched.fingerprint


def read_frame(location: str, base_dir: Path, field: str = "dataset.source",
               na_values: list[str] | None = None) -> tuple[pd.DataFrame, Fetched]:
    """One CSV, Parquet or safetensors file (path or URI) as a frame, and what was fetched (name, fingerprint)."""
    fetched = fetch(location, base_dir, field)
    try:
        if fetched.suffix in TENSOR_SUFFIXES:
            return _load_tensor_file(fetched), fetched
        with fetched.open() as handle:
            if fetched.suffix in (".parquet", ".pq"):
                return pd.read_parquet(handle), fetched
            return pd.read_csv(handle, **csv_na_options(na_values)), fetched
    except UsageError:
        raise
    except Exception as exc:  # malformed file: name it, no traceback
        raise UsageError(f"{field}: cannot read {fetched.uri}: {exc}") from None


def csv_na_options(na_values: list[str] | None) -> dict[str, Any]:
    """read_csv options: only the listed cell texts (and empty cells) are missing, nothing else silently."""
    from mlplat.columns import DEFAULT_NA_VALUES

    return {"keep_default_na": False, "na_values": list(DEFAULT_NA_VALUES if na_values is None else na_values) + [""]}


def _select_features(frame: pd.DataFrame, label: str, features: list[str] | None, where: str) -> pd.DataFrame:
    if not features:
        return frame
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise UsageError(f"dataset.features: columns not in {where}: {', '.join(missing)}")
    return frame[[*features, label]]


TENSOR_SUFFIXES, TENSOR_LABEL = (".safetensors",), "label"


def _load_tensor_file(fetched: Fetched) -> pd.DataFrame:
    """An image dataset as tensors: `images` [N, C, H, W] (or [N, H, W]) and `labels` [N].

    Pixels become columns `pixel_0..` (C*H*W of them, row-major), the label column `label`;
    `image_shape` tells image trainers how to fold the rows back into images.
    """
    try:
        tensors = _tensors(fetched)
    except Exception as exc:
        raise UsageError(f"dataset.source: cannot read tensor file {fetched.uri}: {exc}") from None
    if "images" not in tensors or "labels" not in tensors:
        raise UsageError(f"dataset.source: {fetched.name} needs tensors 'images' [N, C, H, W] and 'labels' [N]; has: {', '.join(tensors)}")
    images, labels = tensors["images"], tensors["labels"]
    images = images[:, None] if images.ndim == 3 else images
    if images.ndim != 4 or labels.ndim != 1 or len(labels) != len(images):
        raise UsageError(f"dataset.source: {fetched.name}: images {list(tensors['images'].shape)} and labels {list(labels.shape)} "
                         "must be [N, C, H, W] (or [N, H, W]) and [N]")
    frame = pd.DataFrame(images.reshape(len(images), -1).astype(np.float32),
                         columns=[f"pixel_{i}" for i in range(int(np.prod(images.shape[1:])))])
    frame[TENSOR_LABEL] = labels
    return frame


def _tensors(fetched: Fetched) -> dict[str, np.ndarray]:
    from safetensors.numpy import load, load_file

    return load_file(str(fetched.local_path)) if fetched.local_path else load(fetched.read())


def is_image_source(source: str) -> bool:
    """Whether a dataset source holds images, from its name alone (no data read)."""
    if source.startswith("sklearn:"):
        return source.removeprefix("sklearn:") in IMAGE_SHAPES
    return Path(urlparse(source).path if is_remote(source) else source).suffix in TENSOR_SUFFIXES


def image_shape(source: str, base_dir: Path) -> list[int] | None:
    """[C, H, W] when the source's features are image pixels (scikit-learn digits, tensor files)."""
    if not is_image_source(source):
        return None
    if source.startswith("sklearn:"):
        return IMAGE_SHAPES[source.removeprefix("sklearn:")]
    if is_remote(source):  # no header-only read over fsspec: load the tensors (ingest read them already)
        images = _tensors(fetch(source, base_dir))["images"]
        return [1, *images.shape[1:]] if images.ndim == 3 else list(images.shape[1:])
    path = local_path(source, base_dir)
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        shape = list(handle.get_slice("images").get_shape())
    return [1, *shape[1:]] if len(shape) == 3 else shape[1:]


def _load_sklearn(name: str) -> tuple[pd.DataFrame, str]:
    if name not in SKLEARN_DATASETS:
        raise UsageError(f"dataset.source: unknown scikit-learn dataset {name!r}; available: {', '.join(SKLEARN_DATASETS)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    names = list(getattr(bunch, "target_names", []))
    if names and len(names) == frame["target"].nunique():
        frame["target"] = [str(names[i]) for i in frame["target"]]
    return frame, "target"


def split_frame(
    frame: pd.DataFrame, label: str, name: str, validation: float, test: float, seed: int, stratify: bool = True,
    image_shape: list[int] | None = None, held_out: Mapping[str, pd.DataFrame] | None = None, *,
    row_ids: np.ndarray | None = None, weights: np.ndarray | None = None, column_types: dict[str, str] | None = None,
    bad_cells: list[dict[str, Any]] | None = None, id_column: str | None = None, task: Task | None = None,
    image: dict[str, Any] | None = None,
) -> Splits:
    """Seeded train/validation/test split, stratified by class for a classification; row ids are
    `row_ids` (the id column) or positions. `task` is the spec's dataset.task (None: inferred, see mlplat.tasks).

    `held_out` maps "validation" and/or "test" to frames of their own (dataset.validation_source,
    dataset.test_source): those splits are exactly those rows, and `frame` is split into the rest
    only. Without an id column, held-out rows get the row ids after the source's, in the order
    validation, test. `row_ids` and `weights` cover the source rows, then the held-out ones, in that order."""
    from sklearn.model_selection import train_test_split

    held_out = dict(held_out or {})
    unknown = set(held_out) - set(HELD_OUT_FIELDS)
    if unknown:
        raise ValueError(f"held_out splits must be among {', '.join(HELD_OUT_FIELDS)}; got {', '.join(sorted(unknown))}")
    parts = [("source", frame)] + [(split, held_out[split]) for split in HELD_OUT_FIELDS if split in held_out]
    origin = np.concatenate([np.full(len(part), split) for split, part in parts])
    frame = pd.concat([part for _, part in parts], ignore_index=True) if held_out else frame
    # the feature columns as views (drop/astype would copy the whole frame twice: issue 13's scale target)
    features = pd.DataFrame({c: frame[c] for c in frame.columns if c != label}, copy=False)
    # Numeric (and bool) columns become float64; categorical ones stay text (mlplat.columns encodes them).
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c]) and features[c].dtype != np.float64]
    if numeric:
        features = features.astype({c: "float64" for c in numeric})
    if frame[label].isna().any():
        raise UsageError(f"dataset.label: column {label!r} has {int(frame[label].isna().sum())} missing values")
    task = resolve_task(frame[label], task, label)
    ids = np.arange(len(frame)) if row_ids is None else row_ids
    if task == "regression":
        classes: list[str] = []
        table = Table(features, frame[label].to_numpy(dtype=np.float64), ids, weights)
        stratify = False  # one stratum per distinct value would be one class per value
    else:
        classes = sorted(frame[label].astype(str).unique().tolist(), key=_natural_key)
        if len(classes) < 2:
            raise UsageError(f"dataset.label: column {label!r} needs at least 2 classes, found {len(classes)}")
        index = {c: i for i, c in enumerate(classes)}
        table = Table(features, frame[label].astype(str).map(index).to_numpy(), ids, weights)
    positions = np.flatnonzero(origin == "source")

    def split_off(pool: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
        return train_test_split(pool, test_size=size, random_state=seed, stratify=table.labels[pool] if stratify else None)

    rest, test_pos = (positions, np.flatnonzero(origin == "test")) if "test" in held_out else split_off(positions, test)
    if "validation" in held_out:
        train_pos, val_pos = rest, np.flatnonzero(origin == "validation")
    else:  # the validation fraction stays a fraction of the whole source, as without a held-out test file
        train_pos, val_pos = split_off(rest, validation if "test" in held_out else validation / (1 - test))
    info = DatasetInfo(name, label, [str(c) for c in features.columns], classes, image_shape, dict(column_types or {}),
                       list(bad_cells or []), id_column, task=task, image=image)
    return Splits(info, table.take(train_pos), table.take(val_pos), table.take(test_pos))


HELD_OUT_FIELDS = {"validation": "validation_source", "test": "test_source"}  # split -> dataset field naming its file


def check_same_columns(source: pd.DataFrame, other: pd.DataFrame, field: str) -> None:
    """A held-out file must have exactly the source's columns (after dataset.features selects them)."""
    missing = [str(c) for c in source.columns if c not in other.columns]
    extra = [str(c) for c in other.columns if c not in source.columns]
    if missing or extra:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"not in dataset.source: {', '.join(extra)}"] if extra else []
        raise UsageError(f"{field}: columns differ from dataset.source ({'; '.join(problems)})")


def require_numeric(frame: pd.DataFrame) -> None:
    """Training and augmentation need numeric features; name the columns that are not."""
    non_numeric = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise UsageError(f"dataset.features: non-numeric feature columns are not supported: {', '.join(non_numeric)}")


def _natural_key(value: str) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
