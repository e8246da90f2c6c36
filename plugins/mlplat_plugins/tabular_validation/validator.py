"""Infer a schema from the training split and check every split against it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlplat.contracts import StepContext
from mlplat.contracts.validator import CheckResult, Severity, ValidationReport
from mlplat.data import Splits
from mlplat_plugins.tabular_validation import TabularValidatorConfig

DEFAULT_SEVERITY: dict[str, Severity] = {
    "schema.columns": "fail",
    "schema.dtype": "fail",
    "schema.range": "fail",
    "schema.missing": "fail",
    "duplicates": "warn",
    "constant": "warn",
    "imbalance": "warn",
}


class TabularValidator:
    def __init__(self, config: TabularValidatorConfig) -> None:
        self.config = config

    def severity(self, check: str) -> Severity:
        return self.config.severity.get(check, DEFAULT_SEVERITY.get(check, "warn"))

    def validate(self, splits: Splits, context: StepContext) -> ValidationReport:
        schema = infer_schema(splits.train.features, splits.info.classes, splits.train.labels)
        checks: list[CheckResult] = []
        for name in ("validation", "test"):
            checks += self.check_against_schema(schema, getattr(splits, name).features, name)
        checks += self.quality_checks(splits.train.features, splits.train.labels, splits.info.classes)
        return ValidationReport(checks, schema)

    def check_against_schema(self, schema: dict[str, Any], frame: pd.DataFrame, split: str) -> list[CheckResult]:
        out: list[CheckResult] = []
        expected = [c["name"] for c in schema["columns"]]
        missing, unknown = set(expected) - set(frame.columns), set(frame.columns) - set(expected)
        out.append(CheckResult("schema.columns", not missing and not unknown, self.severity("schema.columns"),
                               f"{split}: columns match the training schema" if not (missing or unknown)
                               else f"{split}: missing {sorted(missing)}, unexpected {sorted(unknown)}",
                               expected=len(expected), observed=len(frame.columns)))
        for col in schema["columns"]:
            name = col["name"]
            if name not in frame.columns:
                continue
            series = frame[name]
            numeric = pd.api.types.is_numeric_dtype(series)
            out.append(CheckResult("schema.dtype", numeric, self.severity("schema.dtype"), f"{split}: {name} dtype",
                                   name, "numeric", str(series.dtype)))
            if not numeric:
                continue
            rate = float(series.isna().mean())
            out.append(CheckResult("schema.missing", rate <= max(self.config.max_missing_rate, col["missing_rate"]),
                                   self.severity("schema.missing"), f"{split}: {name} missing-value rate", name,
                                   f"<= {max(self.config.max_missing_rate, col['missing_rate']):.3f}", round(rate, 4)))
            slack = self.config.range_tolerance * (col["max"] - col["min"])
            lo, hi = float(series.min()), float(series.max())
            inside = lo >= col["min"] - slack and hi <= col["max"] + slack
            out.append(CheckResult("schema.range", inside, self.severity("schema.range"), f"{split}: {name} range",
                                   name, f"[{col['min'] - slack:.4g}, {col['max'] + slack:.4g}]", f"[{lo:.4g}, {hi:.4g}]"))
        return out

    def quality_checks(self, features: pd.DataFrame, labels: np.ndarray, classes: list[str]) -> list[CheckResult]:
        dup = int(features.assign(__y=labels).duplicated().sum())
        out = [CheckResult("duplicates", dup == 0, self.severity("duplicates"), f"{dup} duplicate training rows",
                           expected=0, observed=dup)]
        for name in features.columns:
            distinct = int(features[name].nunique(dropna=True))
            if distinct <= 1:
                out.append(CheckResult("constant", False, self.severity("constant"), f"{name} is constant", name, "> 1 distinct", distinct))
        counts = np.bincount(labels, minlength=len(classes))
        share = float(counts.min() / counts.sum())
        out.append(CheckResult("imbalance", share >= self.config.min_minority_share, self.severity("imbalance"),
                               f"minority class {classes[int(counts.argmin())]!r} is {share:.1%} of training rows",
                               expected=f">= {self.config.min_minority_share:.1%}", observed=round(share, 4),
                               details={"counts": dict(zip(classes, counts.tolist())), "ratio": float(counts.max() / max(counts.min(), 1))}))
        return out


def infer_schema(features: pd.DataFrame, classes: list[str], labels: np.ndarray) -> dict[str, Any]:
    columns = []
    for name in features.columns:
        s = features[name]
        columns.append({"name": str(name), "type": "float" if pd.api.types.is_float_dtype(s) else str(s.dtype),
                        "min": float(s.min()), "max": float(s.max()), "mean": float(s.mean()), "std": float(s.std(ddof=0)),
                        "missing_rate": float(s.isna().mean())})
    return {"columns": columns, "label": {"classes": classes, "counts": np.bincount(labels, minlength=len(classes)).tolist()}}
