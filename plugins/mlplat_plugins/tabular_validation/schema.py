"""TFDV-style schema: infer it from the training split, then check any frame against it.

An anomaly names the column, the expectation and the observed value, like TFDV's
ExampleValidator. The schema is plain JSON so serving and monitoring can reuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts.validator import CheckResult, Severity

SCHEMA_VERSION = 1
MAX_DOMAIN = 100  # more distinct values than this: free text or ids, no domain is inferred (as TFDV)
SHOWN_DOMAIN = 10  # domain values an anomaly message lists


def column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "float"
    return "string"


def infer_schema(features: pd.DataFrame, classes: list[str], labels: np.ndarray,
                 kinds: dict[str, str] | None = None, regression: bool = False) -> dict[str, Any]:
    """Per column: storage `type` (float | bool | string), `kind` (numeric | categorical | boolean, mlplat.columns),
    missing-value rate and row count, range or domain, and `association` with the label (relations.py: what a
    shuffled column loses); the label's classes, or a regression target's range."""
    from mlplat.columns import infer_type

    from mlplat_plugins.tabular_validation.relations import schema_associations

    associations = schema_associations(features, labels, regression)
    columns = []
    for name in features.columns:
        s = features[name]
        entry: dict[str, Any] = {"name": str(name), "type": column_type(s), "kind": (kinds or {}).get(str(name)) or infer_type(s),
                                 "missing_rate": float(s.isna().mean()), "rows": int(len(s)),
                                 "association": associations[str(name)]}
        if entry["type"] == "float":
            entry.update(min=float(s.min()), max=float(s.max()), mean=float(s.mean()), std=float(s.std(ddof=0)))
        else:
            values = sorted(map(str, s.dropna().unique()))
            entry["domain"] = values if len(values) <= MAX_DOMAIN else None
        columns.append(entry)
    if regression:  # a target's range and spread, not classes
        y = np.asarray(labels, np.float64)
        label: dict[str, Any] = {"task": "regression", "min": float(y.min()), "max": float(y.max()),
                                 "mean": float(y.mean()), "std": float(y.std())}
    else:
        label = {"classes": list(classes), "counts": np.bincount(labels, minlength=len(classes)).tolist()}
    return {"version": SCHEMA_VERSION, "columns": columns, "label": label}


def check_against_schema(
    schema: dict[str, Any], frame: pd.DataFrame, split: str, severity: Callable[[str], Severity],
    max_missing_rate: float, range_tolerance: float, max_out_of_range_share: float, max_mean_shift: float,
    labels: np.ndarray | None = None, classes: list[str] | None = None, missing_alpha: float = 0.01,
    max_unseen_share: float = 0.0,
) -> list[CheckResult]:
    """Columns present, types, missing-value rates, ranges, mean shifts, categorical domains and label classes
    of `frame` vs `schema`. The range check catches gross errors (units, sign, sentinels) without false alarms;
    a moderate shift (+3 std keeps most values inside a range widened by `range_tolerance`) is the mean-shift
    check's: |mean - training mean| in training standard deviations, above `max_mean_shift`."""
    out: list[CheckResult] = []
    expected = [c["name"] for c in schema["columns"]]
    for name in expected:
        if name not in frame.columns:
            out.append(CheckResult("schema.columns", False, severity("schema.columns"), f"{split}: column {name} is missing",
                                   name, "present", "missing"))
    for name in frame.columns:
        if str(name) not in expected:
            out.append(CheckResult("schema.columns", False, severity("schema.columns"),
                                   f"{split}: column {name} is not in the schema", str(name), "absent", "present"))
    if not any(c.check == "schema.columns" for c in out):
        out.append(CheckResult("schema.columns", True, severity("schema.columns"), f"{split}: columns match the schema",
                               expected=len(expected), observed=len(frame.columns)))
    for col in schema["columns"]:
        name = col["name"]
        if name not in frame.columns:
            continue
        series = frame[name]
        observed_type = column_type(series)
        same_type = observed_type == col["type"]
        out.append(CheckResult("schema.dtype", same_type, severity("schema.dtype"), f"{split}: {name} type", name,
                               col["type"], observed_type if same_type else f"{observed_type} ({series.dtype})"))
        out.append(missing_rate_check(series, col, split, severity, max_missing_rate, missing_alpha))
        if not same_type or series.dropna().empty:
            continue
        if col["type"] != "float":
            if col.get("domain") is not None:
                out.append(_domain_check(col, series, split, severity, max_unseen_share))
            continue
        slack = range_tolerance * (col["max"] - col["min"])
        lo, hi = col["min"] - slack, col["max"] + slack
        values = series.dropna()
        outside = int(((values < lo) | (values > hi)).sum())
        share = outside / len(values)
        out.append(CheckResult("schema.range", share <= max_out_of_range_share, severity("schema.range"),
                               f"{split}: {name} range", name,
                               f"<= {max_out_of_range_share:.1%} outside [{lo:.4g}, {hi:.4g}]",
                               f"{outside} outside ({share:.1%}), observed [{values.min():.4g}, {values.max():.4g}]"))
        if col.get("std"):  # a constant column is the range check's
            mean = float(values.mean())
            shift = (mean - col["mean"]) / col["std"]
            out.append(CheckResult("schema.shift", abs(shift) <= max_mean_shift, severity("schema.shift"),
                                   f"{split}: {name} mean vs training mean", name,
                                   f"|shift| <= {max_mean_shift:g} training std", f"{shift:+.2f} std",
                                   details={"mean": mean, "training_mean": col["mean"], "training_std": col["std"]}))
    if labels is not None and classes is not None:
        out += _label_checks(schema, labels, classes, split, severity)
    return out


def missing_rate_check(series: pd.Series, col: dict[str, Any], split: str, severity: Callable[[str], Severity],
                       max_missing_rate: float, alpha: float) -> CheckResult:
    """A split's missing values vs training's: fails above `max_missing_rate`, or when a one-sided two-proportion
    z-test says the split misses values more often than training (p < `alpha`, already Bonferroni-corrected by
    the caller). Values missing at random at the training rate pass, whatever that rate and the split sizes."""
    from scipy.stats import norm

    n, missing = len(series), int(series.isna().sum())
    rate = missing / n if n else 0.0
    n_train = int(col.get("rows") or n)
    train_missing = col["missing_rate"] * n_train
    pooled = (missing + train_missing) / (n + n_train) if n else 0.0
    if 0 < pooled < 1:
        z = (rate - col["missing_rate"]) / np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n_train))
        p_value = float(norm.sf(z))
    else:
        p_value = 1.0
    passed = rate <= max_missing_rate and p_value >= alpha
    return CheckResult("schema.missing", passed, severity("schema.missing"),
                       f"{split}: {col['name']}: {missing} of {n} rows missing ({rate:.1%}; training {col['missing_rate']:.1%}, "
                       f"p = {p_value:.2g})", col["name"],
                       f"<= {max_missing_rate:.1%} and not above training (z-test p >= {alpha:.2g})", missing,
                       details={"rows": missing, "rate": rate, "training_rate": col["missing_rate"], "p_value": p_value})


def _domain_check(col: dict[str, Any], series: pd.Series, split: str, severity: Callable[[str], Severity],
                  max_unseen_share: float = 0.0) -> CheckResult:
    """TFDV's "unexpected string values": a categorical column's values must be in its domain, but for a share of
    at most `max_unseen_share` of its rows (the model predicts those through its unknown bucket)."""
    domain = col["domain"]
    values = series.dropna().astype(str)
    seen = values.unique()
    unexpected = sorted(set(seen) - set(domain))
    shown = domain[:SHOWN_DOMAIN] + ([f"... ({len(domain)} values)"] if len(domain) > SHOWN_DOMAIN else [])
    rows = int(values.isin(unexpected).sum())
    message = f"{split}: {col['name']} has {rows} values not in the domain" if unexpected else f"{split}: {col['name']} within its domain"
    return CheckResult("schema.domain", rows <= max_unseen_share * len(values), severity("schema.domain"), message, col["name"],
                       f"one of {shown}", unexpected[:SHOWN_DOMAIN] if unexpected else len(seen),
                       details={"unexpected": unexpected[:MAX_DOMAIN], "rows": rows})


def _label_checks(schema: dict[str, Any], labels: np.ndarray, classes: list[str], split: str,
                  severity: Callable[[str], Severity]) -> list[CheckResult]:
    expected = list(schema["label"]["classes"])
    seen = sorted({classes[i] for i in np.unique(labels)})
    unknown = [c for c in seen if c not in expected]
    absent = [c for c in expected if c not in seen]
    return [
        CheckResult("schema.label", not unknown, severity("schema.label"), f"{split}: label classes within the schema",
                    "label", expected, seen if unknown else len(seen), details={"unknown": unknown}),
        CheckResult("schema.label_coverage", not absent, severity("schema.label_coverage"),
                    f"{split}: every schema class present" if not absent else f"{split}: classes {absent} have no rows",
                    "label", len(expected), len(expected) - len(absent)),
    ]
