"""Request validation against the model's feature schema.

Every rejection is an `mlplat.errors.InvalidInput` (HTTP 400) carrying a short machine-readable
`reason` for the rejected-requests metric and a message that names the problem: which instance,
which feature, what was expected and what came.

Rows come out in model-input space (mlplat.columns): numbers for numeric features, 0/1 for
boolean ones (JSON true/false, 0/1 or the training spellings such as "yes"/"no"), a vocabulary code
for categorical ones (sent as strings; a value not seen in training is code 0, the unknown bucket)
and NaN for a null, which the model imputes (a model that learned no imputation answers 400).
The predictor counts unknown categories and imputed values per feature.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from mlplat.columns import UNKNOWN_CODE, ColumnEncoding
from mlplat.errors import InvalidInput
from mlplat.serving.v2_decoding import flat_values as _flat

_NUMBER_TYPES = frozenset({int, float})  # exact types: bool, an int subclass, is not a number here
_ALL_NUMBERS = object()  # sentinel: no offending value found
_NUMERIC_V2 = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


MAX_REQUEST_ID = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_REQUEST_ID}}}")


def checked_request_id(value: Any, where: str) -> str | None:
    """A client's request id (V2 `id`, header x-request-id), refused unless short and plain: it is copied into
    every row's id, the monitoring window and the response, so its size must not be the client's to choose."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        shown = _show(value) if isinstance(value, str) else _kind(value)
        raise InvalidInput(reason="request_id", message=f"{where}: a request id is 1-{MAX_REQUEST_ID} characters of "
                                                        f"letters, digits and '_.:-', got {shown}")
    return value


class FeatureSchema:
    """The model's feature names and order; turns V1 instances or V2 tensors into float32 rows."""

    def __init__(self, feature_names: list[str], max_rows: int, encodings: list[ColumnEncoding] | None = None,
                 impute: bool = False) -> None:
        self.names = feature_names
        self.index = {name: i for i, name in enumerate(feature_names)}
        self.max_rows = max_rows
        self.encodings = encodings or [ColumnEncoding(n, "numeric") for n in feature_names]
        self.impute = impute  # nulls become NaN for the model to impute, instead of a 400
        self.all_numeric = all(e.kind == "numeric" for e in self.encodings)
        self.categorical = [j for j, e in enumerate(self.encodings) if e.kind == "categorical"]
        self._codes = [{c: float(i + 1) for i, c in enumerate(e.categories or [])} for e in self.encodings]

    @property
    def width(self) -> int:
        return len(self.names)

    # ---- V1: {"instances": [[...], ...]} or [{"feature": value, ...}, ...] ----------------------
    def v1_rows(self, payload: Any) -> np.ndarray:
        if not isinstance(payload, dict):
            raise InvalidInput(reason="malformed", message=f"request body must be a JSON object with 'instances', got {_kind(payload)}")
        if "instances" not in payload:
            unknown = sorted(set(payload) - {"instances", "parameters"})
            raise InvalidInput(reason="malformed", message="missing 'instances'" + (f" (got keys {unknown})" if unknown else ""))
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(reason="malformed", message=f"'instances' must be a list of rows, got {_kind(instances)}")
        self._check_count(len(instances))
        rows = np.empty((len(instances), self.width), dtype=np.float32)
        for i, instance in enumerate(instances):
            if isinstance(instance, list):
                self._fill_row(rows[i], instance, i)
            elif isinstance(instance, dict):
                self._fill_record(rows[i], instance, i)
            else:
                raise InvalidInput(reason="shape", message=f"instances[{i}] must be a list of {self.width} numbers or an object "
                                             f"keyed by feature name, got {_kind(instance)}")
        return rows

    def _fill_row(self, out: np.ndarray, values: list[Any], i: int) -> None:
        if len(values) != self.width:
            raise InvalidInput(reason="shape", message=f"instances[{i}] has {len(values)} values, the model expects {self.width} "
                                         f"features ({self.names[0]!r} ... {self.names[-1]!r})")
        if self.all_numeric and set(map(type, values)) <= _NUMBER_TYPES:  # the common case, checked in C
            with np.errstate(over="ignore"):
                out[:] = values
            if np.isfinite(out).all():
                return
        for j, value in enumerate(values):  # find and name the offending value
            out[j] = self._value(j, value, f"instances[{i}][{j}] (feature {self.names[j]!r})")

    def _fill_record(self, out: np.ndarray, record: dict[str, Any], i: int) -> None:
        if len(record) != self.width or any(k not in self.index for k in record):
            unknown = sorted(k for k in record if k not in self.index)
            missing = [n for n in self.names if n not in record]
            parts = [f"unknown feature(s) {unknown[:5]}" if unknown else "", f"missing feature(s) {missing[:5]}" if missing else ""]
            raise InvalidInput(reason="unknown_feature" if unknown else "missing_feature",
                                message=f"instances[{i}]: " + "; ".join(p for p in parts if p))
        for name, value in record.items():
            out[self.index[name]] = self._value(self.index[name], value, f"instances[{i}] feature {name!r}")

    def _value(self, j: int, value: Any, where: str) -> float:
        """One request value of feature j in model-input space."""
        if value is None and self.impute:
            return math.nan
        kind = self.encodings[j].kind
        if kind == "numeric":
            return self._number(value, where)
        if kind == "categorical":
            if isinstance(value, str) or type(value) is int:
                return self._codes[j].get(str(value), float(UNKNOWN_CODE))
            raise InvalidInput(reason="null" if value is None else "dtype",
                               message=f"{where}: expected a category (a string), got {_kind(value)} {_show(value)}")
        code = self.encodings[j].code(value) if isinstance(value, (bool, int, str)) else None
        if code is None:
            raise InvalidInput(reason="null" if value is None else "dtype",
                               message=f"{where}: expected a boolean (true/false or one of "
                                       f"{self.encodings[j].categories}), got {_kind(value)} {_show(value)}")
        return code

    @staticmethod
    def _number(value: Any, where: str) -> float:
        # bool is an int subclass: a JSON true must not become 1.0 silently
        if type(value) not in _NUMBER_TYPES:
            reason = "null" if value is None else "dtype"
            raise InvalidInput(reason=reason, message=f"{where}: expected a number, got {_kind(value)} {_show(value)}")
        if not math.isfinite(value) or abs(value) > 3.4e38:
            raise InvalidInput(reason="non_finite", message=f"{where}: {value!r} is not a finite float32 number")
        return value

    # ---- V2: one [n, F] tensor, or one [n] / [n, 1] tensor per feature ----------------------------
    def v2_rows(self, request: Any) -> np.ndarray:
        inputs = list(request.inputs)
        if not inputs:
            raise InvalidInput(reason="empty", message="the request has no inputs")
        if len(inputs) == 1 and inputs[0].name not in self.index:
            if not self.all_numeric:
                raise InvalidInput(reason="shape", message=f"this model has categorical or boolean features; send one input "
                                   f"per feature, named by feature (categorical: BYTES), not one [N, {self.width}] tensor")
            rows = self._tensor(inputs[0])
            if rows.ndim == 1 and self.width == 1:
                rows = rows.reshape(-1, 1)
            if rows.ndim != 2 or rows.shape[1] != self.width:
                raise InvalidInput(reason="shape", message=f"input {inputs[0].name!r} has shape {list(rows.shape)}, "
                                             f"expected [N, {self.width}]")
            self._check_count(rows.shape[0])
            data = inputs[0].data
            if self.impute and isinstance(data, list):  # nulls are NaN now, to impute; a NaN literal is still refused
                nulls = np.array([v is None for v in _flat(data)]).reshape(rows.shape)
                self._finite(np.where(nulls, 0.0, rows), inputs[0].name)
                return rows
            return self._finite(rows, inputs[0].name)
        names = [i.name for i in inputs]
        unknown = sorted(set(names) - set(self.index))
        missing = [n for n in self.names if n not in names]
        if unknown or missing or len(names) != len(set(names)):
            raise InvalidInput(reason="unknown_feature" if unknown else "missing_feature",
                                message=f"per-feature inputs must name each feature once: unknown {unknown[:5]}, missing {missing[:5]}")
        columns = {i.name: self._feature_tensor(i) for i in inputs}
        lengths = {len(c) for c in columns.values()}
        if len(lengths) != 1:
            raise InvalidInput(reason="shape", message=f"per-feature inputs have different lengths {sorted(lengths)}")
        self._check_count(lengths.pop())
        return np.stack([columns[n] for n in self.names], axis=1).astype(np.float32)

    def _feature_tensor(self, tensor: Any) -> np.ndarray:
        """One feature's [n] / [n, 1] input: numbers (nulls imputed when the model can), or BYTES categories."""
        j = self.index[tensor.name]
        if self.encodings[j].kind == "numeric" and tensor.datatype in _NUMERIC_V2 and not (
                self.impute and isinstance(tensor.data, list)):
            return self._finite(self._tensor(tensor).reshape(-1, 1), tensor.name).reshape(-1)
        if self.encodings[j].kind == "categorical" and tensor.datatype != "BYTES":
            raise InvalidInput(reason="dtype", message=f"input {tensor.name!r}: a categorical feature is a BYTES tensor "
                                                       f"of strings, got {tensor.datatype}")
        if self.encodings[j].kind == "numeric" and tensor.datatype not in _NUMERIC_V2:
            raise InvalidInput(reason="dtype", message=f"input {tensor.name!r}: datatype {tensor.datatype} is not numeric")
        values = list(_flat(tensor.data)) if isinstance(tensor.data, list) else tensor.as_numpy().reshape(-1).tolist()
        decoded = [v.decode() if isinstance(v, bytes) else v for v in values]
        return np.array([self._value(j, v, f"input {tensor.name!r}[{k}]") for k, v in enumerate(decoded)], np.float64)

    def _tensor(self, tensor: Any) -> np.ndarray:
        if tensor.datatype not in _NUMERIC_V2:
            raise InvalidInput(reason="dtype", message=f"input {tensor.name!r}: datatype {tensor.datatype} is not numeric "
                                         f"(use FP32, FP64 or an INT type)")
        try:
            data = tensor.data
            if isinstance(data, list) and any(type(v) not in _NUMBER_TYPES for v in _flat(data)):
                allowed = (*_NUMBER_TYPES, type(None)) if self.impute else tuple(_NUMBER_TYPES)
                bad = next((v for v in _flat(data) if type(v) not in allowed), _ALL_NUMBERS)
                if bad is _ALL_NUMBERS:  # numbers and nulls: nulls become NaN, imputed by the model
                    values = np.array([np.nan if v is None else v for v in _flat(data)], np.float64)
                    return values.reshape(tensor.shape).astype(np.float32)
                raise InvalidInput(reason="null" if bad is None else "dtype",
                                    message=f"input {tensor.name!r}: expected numbers, got {_kind(bad)} {_show(bad)}")
            return tensor.as_numpy().astype(np.float32, copy=False)
        except InvalidInput:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidInput(reason="shape", message=f"input {tensor.name!r}: data does not match shape {tensor.shape}: {exc}") from None

    def _finite(self, rows: np.ndarray, where: str) -> np.ndarray:
        bad = ~np.isfinite(rows)
        if bad.any():
            r, c = map(int, np.argwhere(bad)[0])
            raise InvalidInput(reason="non_finite", message=f"{where}[{r}][{c}] (feature {self.names[c]!r}) is not finite: {rows[r, c]}")
        return rows

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise InvalidInput(reason="empty", message="empty batch: send at least one instance")
        if n > self.max_rows:
            raise InvalidInput(reason="too_many_rows", message=f"{n} instances in one request; the limit is {self.max_rows}")



def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
