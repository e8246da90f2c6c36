"""Column roles, column types, and the input encoding a tabular model carries with it.

Roles (spec `dataset:`): `label`; `features` (default: every other column); `exclude` (dropped);
`weight` (per-row loss weight, never a feature); `id` (unique non-negative integers, used as the
row ids that reports and label-noise findings name; default: the row's position in the file).

Types, inferred per feature column by this rule, overridable with `dataset.column_types`:
  - boolean:     a bool column, or one whose non-missing values are exactly two of a known pair
                 (false/true, no/yes, n/y, f/t, 0/1, case-insensitive);
  - numeric:     a numeric column, or a text column whose non-missing values nearly all
                 (>= NUMERIC_SHARE) parse as numbers; the cells that do not are *bad cells*,
                 named (column, row id, value) in the validation report and refused by training;
  - categorical: any other column (strings, mixed values).
Missing values are the cells listed in `dataset.na_values` (DEFAULT_NA_VALUES) and empty cells.

Model input (what `LoadedModel.predict_proba`, explainers, the reference sample and the serving
window see): one float column per feature, in feature order; numeric as is, boolean 0/1,
categorical as a vocabulary code (1 + index into the training vocabulary; 0 = the unknown bucket)
and NaN for a missing value. `TabularPreprocessor` then imputes (training median for numeric,
most frequent value for boolean/categorical), adds a 0/1 missing indicator for each column that
had missing training values, standardizes the numeric and boolean columns, and lays the network
input out as [dense columns..., indicators..., categorical codes...] (`input_layout`); the
network's own encoders (one-hot / embeddings) turn the codes into vectors. A NaN never reaches
the network. Everything is fitted on real training rows only and saved as JSON in model.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlplat.errors import UsageError

COLUMN_TYPES = ("numeric", "categorical", "boolean")
DEFAULT_NA_VALUES = ["", "NA", "NaN", "nan", "null", "NULL", "None"]  # "n/a", "-", "?" are NOT missing: reported
NUMERIC_SHARE = 0.95  # a text column with at least this share of number-like cells is numeric with bad cells
BOOLEAN_PAIRS = [("false", "true"), ("no", "yes"), ("n", "y"), ("f", "t"), ("0", "1")]
MAX_BAD_CELLS = 100  # bad cells recorded per column (the count is always exact)
UNKNOWN_CODE = 0


# ---- roles and types ------------------------------------------------------------------------------
@dataclass
class RoleColumns:
    """A source frame split by role: typed features, label, row ids, weights, and what was found on the way."""

    features: pd.DataFrame
    label: pd.Series
    row_ids: np.ndarray
    weights: np.ndarray | None
    types: dict[str, str]
    bad_cells: list[dict[str, Any]] = field(default_factory=list)


def boolean_values(series: pd.Series) -> tuple[str, str] | None:
    """The (false, true) spelling of a two-valued bool-like column, or None."""
    if pd.api.types.is_bool_dtype(series):
        return ("False", "True")
    values = series.dropna()
    if values.empty:
        return None
    seen = {str(v).strip() for v in values.unique()}
    if pd.api.types.is_numeric_dtype(series):
        seen = {str(int(float(v))) if float(v).is_integer() else v for v in seen}
    if len(seen) != 2:
        return None
    for false, true in BOOLEAN_PAIRS:
        by_lower = {s.lower(): s for s in seen}
        if set(by_lower) == {false, true}:
            return by_lower[false], by_lower[true]
    return None


def infer_type(series: pd.Series) -> str:
    """The module docstring's rule: boolean, numeric or categorical."""
    if boolean_values(series) is not None:
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    values = series.dropna()
    if values.empty:
        return "numeric"
    parsed = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    return "numeric" if parsed.notna().mean() >= NUMERIC_SHARE else "categorical"


def parse_numeric(series: pd.Series, row_ids: np.ndarray, column: str) -> tuple[pd.Series, list[dict[str, Any]], int]:
    """The column as float64; cells that are not numbers become NaN *and* are returned as bad cells
    ({column, row_id, value}, at most MAX_BAD_CELLS) with their total count."""
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64", copy=False), [], 0  # no copy of a float column: ingest holds one frame
    text = series.astype("string").str.strip()
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = parsed.isna().to_numpy() & series.notna().to_numpy()
    positions = np.flatnonzero(bad)
    cells = [{"column": column, "row_id": row_id_value(row_ids[p]), "value": str(series.iloc[p])} for p in positions[:MAX_BAD_CELLS]]
    return parsed, cells, len(positions)


def split_roles(frame: pd.DataFrame, label: str, features: list[str] | None = None, exclude: list[str] | None = None,
                weight: str | None = None, id_column: str | None = None,
                column_types: dict[str, str] | None = None) -> RoleColumns:
    """Apply the spec's column roles and types to a source frame (see the module docstring)."""
    exclude, column_types = list(exclude or []), dict(column_types or {})
    named = {"dataset.exclude": exclude, "dataset.features": list(features or []),
             "dataset.column_types": list(column_types),
             "dataset.weight": [weight] if weight else [], "dataset.id": [id_column] if id_column else []}
    for where, names in named.items():
        absent = [n for n in names if n not in frame.columns]
        if absent:
            raise UsageError(f"{where}: columns not in the data: {', '.join(map(str, absent))} "
                             f"(columns: {', '.join(map(str, frame.columns))})")
    roles = {r for r in (label, weight, id_column) if r is not None}
    overlap = sorted(roles & set(features or [])) + sorted(roles & set(column_types))
    if overlap:
        raise UsageError(f"dataset.features: {', '.join(map(str, overlap))} is the label, weight or id column, not a feature")
    bad_types = {c: t for c, t in column_types.items() if t not in COLUMN_TYPES}
    if bad_types:
        raise UsageError(f"dataset.column_types: unknown types {bad_types}; use one of {', '.join(COLUMN_TYPES)}")
    names = list(features) if features else [c for c in frame.columns if c not in roles and c not in exclude]
    names = [c for c in names if c not in exclude]
    if not names:
        raise UsageError("dataset.features: no feature columns left")
    row_ids = row_ids_of(frame, id_column)
    weights = _weights(frame, weight) if weight else None
    out: dict[str, pd.Series] = {}
    types: dict[str, str] = {}
    cells: list[dict[str, Any]] = []
    for name in names:
        series = frame[name]
        kind = column_types.get(name) or infer_type(series)
        types[str(name)] = kind
        if kind == "numeric":
            series, found, _count = parse_numeric(series, row_ids, str(name))
            cells += found
        elif kind == "categorical" and not _is_object_text(series):  # object text columns are kept as read
            series = series.map(_category_text, na_action="ignore").astype(object)
        out[str(name)] = series
    return RoleColumns(pd.DataFrame(out, copy=False), frame[label], row_ids, weights, types, cells)


def _is_object_text(series: pd.Series) -> bool:
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "string"


def _category_text(value: Any) -> str:
    """One spelling per category: 3.0 read from a CSV is the category "3", as a request's 3 is."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_id_value(value: Any) -> int | str:
    """A row id as JSON names it: the user's integer, or the user's text."""
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def row_ids_of(frame: pd.DataFrame, id_column: str | None, where: str = "dataset.id") -> np.ndarray:
    """The id column as row ids: whole non-negative numbers stay int64 (-1 marks synthetic rows), any other
    column is text (object array of str; synthetic rows get ""). Every row needs one, unique."""
    if not id_column:
        return np.arange(len(frame))
    ids = frame[id_column]
    missing = np.flatnonzero(ids.isna().to_numpy())
    if len(missing):
        raise UsageError(f"{where}: column {id_column!r} has {len(missing)} rows without an id "
                         f"(first at row {int(missing[0])}); every row needs one")
    if pd.api.types.is_bool_dtype(ids) or not pd.api.types.is_numeric_dtype(ids):
        text = ids.astype(str).str.strip()
        if (text == "").any():
            raise UsageError(f"{where}: column {id_column!r} has empty ids (first at row {int(np.flatnonzero(text == '')[0])})")
        values = text.to_numpy(dtype=object)
    else:
        numbers = ids.to_numpy(dtype=np.float64)
        wrong = (numbers < 0) | (numbers != np.round(numbers))
        if wrong.any():
            raise UsageError(f"{where}: column {id_column!r} holds numbers that are no non-negative whole numbers, "
                             f"e.g. {ids[wrong].iloc[0]!r}; ids are whole numbers >= 0 or text")
        values = ids.to_numpy(dtype=np.int64)
    duplicated = ids[pd.Series(values).duplicated().to_numpy()]
    if len(duplicated):
        raise UsageError(f"{where}: column {id_column!r} has {len(duplicated)} duplicate ids, e.g. {duplicated.iloc[0]!r}")
    return values


def _weights(frame: pd.DataFrame, weight: str) -> np.ndarray:
    values = pd.to_numeric(frame[weight], errors="coerce")
    bad = values.isna() | (values < 0) | ~np.isfinite(values.fillna(0))
    if bad.any():
        raise UsageError(f"dataset.weight: column {weight!r} must hold finite non-negative numbers; "
                         f"{int(bad.sum())} rows do not (first at row {int(np.flatnonzero(bad.to_numpy())[0])})")
    return values.to_numpy(np.float32)


# ---- the model's input encoding -------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnEncoding:
    """How one feature becomes a model-input float (see the module docstring)."""

    name: str
    kind: str  # numeric | categorical | boolean
    categories: list[str] | None = None  # categorical: the vocabulary; boolean: [false, true] spellings

    def encode(self, series: pd.Series) -> np.ndarray:
        if self.kind == "numeric":
            return pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        assert self.categories is not None
        if self.kind == "boolean" and pd.api.types.is_bool_dtype(series):
            return series.astype("float64").to_numpy()
        codes = {c: float(i + (1 if self.kind == "categorical" else 0)) for i, c in enumerate(self.categories)}
        if self.kind == "boolean":
            codes.update({c.lower(): v for c, v in list(codes.items())} | {"False": 0.0, "True": 1.0, "0": 0.0, "1": 1.0})
        text = series.map(lambda v: _category_text(v).strip() if self.kind == "boolean" else _category_text(v),
                          na_action="ignore")
        out = text.map(lambda v: codes.get(v, codes.get(v.lower(), np.nan) if self.kind == "boolean" else UNKNOWN_CODE),
                       na_action="ignore")
        return out.to_numpy(np.float64, na_value=np.nan)

    def code(self, value: Any) -> float | None:
        """One request value as model input (serving); None when it is no value of a boolean column."""
        out = self.encode(pd.Series([value], dtype=object))[0]
        return None if np.isnan(out) else float(out)


def fit_encodings(features: pd.DataFrame, types: dict[str, str]) -> list[ColumnEncoding]:
    """Vocabularies from (real) training rows: categories sorted by frequency, then by name."""
    out = []
    for name in features.columns:
        kind = types.get(str(name)) or infer_type(features[name])
        categories = None
        if kind == "categorical":
            counts = features[name].dropna().map(_category_text).value_counts()
            categories = sorted(counts.index, key=lambda c: (-counts[c], c))
        elif kind == "boolean":
            categories = list(boolean_values(features[name]) or ("False", "True"))
        out.append(ColumnEncoding(str(name), kind, categories))
    return out


def encode_frame(frame: pd.DataFrame, encodings: list[ColumnEncoding]) -> np.ndarray:
    """Raw feature columns → the model input matrix (float64, codes for categories, NaN for missing)."""
    missing = [e.name for e in encodings if e.name not in frame.columns]
    if missing:
        raise UsageError(f"features missing from the data: {', '.join(missing)}")
    if not len(encodings):
        return np.zeros((len(frame), 0))
    return np.stack([e.encode(frame[e.name]) for e in encodings], axis=1)


@dataclass(frozen=True)
class TabularPreprocessor:
    """Imputation, missing indicators and standardization, fitted on encoded training rows."""

    kinds: list[str]
    fill: np.ndarray  # per feature, in model-input space
    indicators: list[int]  # feature positions that get a 0/1 missing-indicator input
    mean: np.ndarray  # per feature; 0 for categorical
    scale: np.ndarray  # per feature; 1 for categorical
    cardinalities: list[int] = field(default_factory=list)  # per categorical feature: vocabulary + unknown bucket

    @classmethod
    def fit(cls, X: np.ndarray, encodings: list[ColumnEncoding]) -> TabularPreprocessor:
        X = np.asarray(X, np.float64)
        kinds = [e.kind for e in encodings]
        fill = np.zeros(len(kinds))
        for j, kind in enumerate(kinds):
            values = X[:, j][~np.isnan(X[:, j])]
            if not len(values):
                continue  # an all-missing training column: 0 (the unknown bucket for a categorical)
            if kind == "numeric":
                fill[j] = float(np.median(values))
            else:
                uniques, counts = np.unique(values, return_counts=True)
                fill[j] = float(uniques[counts.argmax()])
        indicators = [j for j in range(len(kinds)) if np.isnan(X[:, j]).any()]
        filled = np.where(np.isnan(X), fill, X)
        dense = np.array([k != "categorical" for k in kinds], bool)
        std = filled.std(axis=0) if len(filled) else np.ones(len(kinds))
        mean = np.where(dense, filled.mean(axis=0) if len(filled) else 0.0, 0.0)
        scale = np.where(dense & (std > 1e-12), std, 1.0)
        cards = [len(e.categories or []) + 1 for e in encodings if e.kind == "categorical"]
        return cls(kinds, fill, indicators, mean, scale, cards)

    @property
    def dense_positions(self) -> list[int]:
        return [j for j, k in enumerate(self.kinds) if k != "categorical"]

    @property
    def categorical_positions(self) -> list[int]:
        return [j for j, k in enumerate(self.kinds) if k == "categorical"]

    @property
    def input_layout(self) -> dict[str, Any]:
        """What the network's input columns are: `dense` floats, then one code column per `cardinalities` entry."""
        return {"dense": len(self.dense_positions) + len(self.indicators), "cardinalities": list(self.cardinalities)}

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        missing = np.isnan(X)
        filled = np.where(missing, self.fill, X)
        z = (filled - self.mean) / self.scale
        dense, cats = self.dense_positions, self.categorical_positions
        parts = [z[:, dense], missing[:, self.indicators].astype(np.float64), filled[:, cats]]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "tabular", "kinds": list(self.kinds), "fill": self.fill.tolist(), "indicators": list(self.indicators),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "cardinalities": list(self.cardinalities)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TabularPreprocessor:
        if data.get("kind") != "tabular":
            raise ValueError(f"unknown preprocessing kind {data.get('kind')!r}")
        return cls(list(data["kinds"]), np.asarray(data["fill"], np.float64), [int(i) for i in data["indicators"]],
                   np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64),
                   [int(c) for c in data.get("cardinalities", [])])
