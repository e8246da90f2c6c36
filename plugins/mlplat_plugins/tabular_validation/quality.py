"""Data quality checks on the training split: duplicates, leakage, constants, outliers,
label-feature identity and class imbalance. Each returns CheckResults; none modifies data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from mlplat.contracts.validator import CheckResult, Severity

SevFn = Callable[[str], Severity]
IMBALANCE_LEVELS = ((1.5, "none"), (3.0, "mild"), (10.0, "moderate"))  # max/min count ratio below -> level


def duplicates(features: pd.DataFrame, labels: np.ndarray, severity: SevFn) -> list[CheckResult]:
    dup = features.duplicated(keep="first")
    conflicting = int(features.assign(__y=labels).loc[features.duplicated(keep=False)].groupby(list(features.columns),
                      dropna=False)["__y"].nunique().gt(1).sum()) if dup.any() else 0
    n = int(dup.sum())
    return [CheckResult("duplicates", n == 0, severity("duplicates"),
                        f"{n} duplicate training rows ({conflicting} groups with conflicting labels)", None, 0, n,
                        details={"conflicting_groups": conflicting})]


def _row_hashes(frame: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)


def leakage(train: pd.DataFrame, other: pd.DataFrame, split: str, severity: SevFn) -> list[CheckResult]:
    """Rows of `split` whose features are identical to a training row."""
    shared = [c for c in train.columns if c in other.columns]
    if not shared or other.empty:
        return []
    try:
        leaked = _row_hashes(other[shared]).isin(set(_row_hashes(train[shared])))
    except TypeError:  # unhashable cells: leave it to the type checks
        return []
    n = int(leaked.sum())
    return [CheckResult("leakage", n == 0, severity("leakage"), f"{n} {split} rows are identical to training rows",
                        None, 0, n, details={"split": split, "positions": np.flatnonzero(leaked.to_numpy())[:50].tolist()})]


def constant_columns(features: pd.DataFrame, severity: SevFn) -> list[CheckResult]:
    out = []
    for name in features.columns:
        distinct = int(features[name].nunique(dropna=True))
        if distinct <= 1:
            out.append(CheckResult("constant", False, severity("constant"), f"{name} is constant", str(name), "> 1 distinct", distinct))
    if not out:
        out.append(CheckResult("constant", True, severity("constant"), "no constant columns", expected="> 1 distinct"))
    return out


def extreme_outliers(features: pd.DataFrame, k: float, max_share: float, severity: SevFn) -> list[CheckResult]:
    """Values beyond Tukey fences widened to k*IQR; columns with zero IQR are judged by their std."""
    out = []
    numeric = features.select_dtypes("number")
    for name in numeric.columns:
        s = numeric[name].dropna()
        if s.empty:
            continue
        q1, q3 = float(s.quantile(0.25)), float(s.quantile(0.75))
        spread = q3 - q1 or float(s.std(ddof=0))
        if spread == 0:
            continue
        extreme = (s < q1 - k * spread) | (s > q3 + k * spread)
        share = float(extreme.mean())
        if share > max_share:
            out.append(CheckResult("outliers", False, severity("outliers"),
                                   f"{name}: {int(extreme.sum())} extreme values beyond {k:g}x IQR", str(name),
                                   f"<= {max_share:.2%} extreme", round(share, 4),
                                   details={"fence": [q1 - k * spread, q3 + k * spread], "max": float(s.max()), "min": float(s.min())}))
    if not out:
        out.append(CheckResult("outliers", True, severity("outliers"), f"no column has more than {max_share:.2%} extreme values"))
    return out


def label_feature_identity(features: pd.DataFrame, labels: np.ndarray, n_classes: int, severity: SevFn) -> list[CheckResult]:
    """A column with few distinct values, each mapping to one class, is the label in disguise."""
    out = []
    for name in features.columns:
        s = features[name]
        distinct = s.nunique(dropna=False)
        if distinct < 2 or distinct > 2 * n_classes:
            continue
        per_value = pd.Series(labels).groupby(s.astype(str).to_numpy()).nunique()
        if bool((per_value == 1).all()):
            out.append(CheckResult("label_leak", False, severity("label_leak"),
                                   f"{name} determines the label exactly ({distinct} values -> {n_classes} classes)",
                                   str(name), "not a function of the label", "identical to the label"))
    if not out:
        out.append(CheckResult("label_leak", True, severity("label_leak"), "no feature determines the label"))
    return out


# The remedy for a rare class (benchmarks/effectiveness/imbalance.py): the trainer's logit-adjusted loss, the
# decision offsets chosen out of fold and the fold networks' averaged logits. Below this max/min ratio the argmax
# of a plain network does as well.
REMEDY_FROM_RATIO = 3.0
REMEDY_PARAM, REMEDY = "imbalance", "logit_adjust"  # steps.train.params.<REMEDY_PARAM>: <REMEDY>
REMEDY_SPEC = f"steps:\n  train:\n    params:\n      {REMEDY_PARAM}: {REMEDY}"


def recommended_remedy(ratio: float, minority_count: int) -> dict[str, str]:
    """{"remedy", "why", "spec"}: what the imbalance check recommends for this class ratio and minority size."""
    if ratio < REMEDY_FROM_RATIO:
        return {"remedy": "none", "why": f"ratio 1:{ratio:.1f} is below 1:{REMEDY_FROM_RATIO:.0f}: plain training serves it", "spec": ""}
    few = f"; with {minority_count} minority rows the offsets use min(5, {minority_count}) folds" if minority_count < 10 else ""
    return {"remedy": REMEDY,
            "why": "logit-adjusted loss (tau 1), per-class decision offsets chosen on out-of-fold predictions "
                   f"(model.json `decision`) and the fold networks' logits averaged with the final one's{few}",
            "spec": REMEDY_SPEC}


def imbalance(labels: np.ndarray, classes: list[str], min_share: float, severity: SevFn) -> list[CheckResult]:
    counts = np.bincount(labels, minlength=len(classes))
    share = float(counts.min() / counts.sum())
    ratio = float(counts.max() / max(counts.min(), 1))
    level = next((name for bound, name in IMBALANCE_LEVELS if ratio < bound), "severe")
    minority = classes[int(counts.argmin())]
    min_share = min(min_share, 0.5 / len(classes))  # with many classes a balanced share is already small
    remedy = recommended_remedy(ratio, int(counts.min()))
    advice = f"; recommended remedy: {remedy['remedy']} (steps.train.params.{REMEDY_PARAM}: {REMEDY})" \
        if remedy["remedy"] != "none" else ""
    return [CheckResult("imbalance", share >= min_share, severity("imbalance"),
                        f"imbalance {level}: minority class {minority!r} is {share:.1%} of training rows "
                        f"({int(counts.min())} rows, ratio 1:{ratio:.1f}){advice}",
                        "label", f">= {min_share:.1%}", round(share, 4),
                        details={"counts": dict(zip(classes, counts.tolist(), strict=True)), "ratio": ratio, "minority_share": share,
                                 "minority_class": minority, "minority_count": int(counts.min()), "level": level,
                                 "recommendation": remedy})]
