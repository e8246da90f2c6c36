"""Checks of each feature's relation to the label: a feature that predicts the label on its own (a leak),
and, against a schema that recorded it, a feature that lost its relation (a shuffled or misaligned column,
whose own distribution is unchanged, so no range or distribution test can see it).

The association of one feature with the label is a share of explained variation in [0, 1], adjusted for
its chance level so that an unrelated column scores about 0 whatever its cardinality:
  numeric feature, classification   eta²: variance of the class means of the feature / its variance;
  numeric feature, regression       rho²: squared Spearman correlation;
  categorical, classification       Cramér's V² with the chi-square's degrees of freedom subtracted;
  categorical, regression           eta² of the target by category.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts.validator import CheckResult, Severity

SAMPLE_ROWS = 20_000  # rows a measurement uses at most (seeded): the checks stay cheap on a million rows
MIN_ASSOCIATION = 0.05  # below this the schema's association is too weak to miss
LOST_SHARE = 0.25  # a feature keeping less than this share of its association lost it...
LOST_Z = 4.0  # ...and by more than this many sampling standard deviations (no alarm on small splits)
LEAK_BALANCED_ACCURACY = 0.98  # one feature alone scoring this on held-out rows is the label in disguise
LEAK_LOWER_BOUND = 0.95


def _sample(n: int, seed: int = 0) -> np.ndarray:
    return np.arange(n) if n <= SAMPLE_ROWS else np.sort(np.random.default_rng(seed).choice(n, SAMPLE_ROWS, replace=False))


def _eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of `values` explained by `groups`, adjusted like R² for the number of groups."""
    n = len(values)
    codes, group = np.unique(groups, return_inverse=True)
    k = len(codes)
    total = float(((values - values.mean()) ** 2).sum())
    if n <= k or k < 2 or total == 0:
        return 0.0
    means = np.bincount(group, values) / np.bincount(group)
    within = float(((values - means[group]) ** 2).sum())
    return max(0.0, 1.0 - (within / (n - k)) / (total / (n - 1)))


def association(series: pd.Series, target: np.ndarray, regression: bool) -> float:
    """The feature's association with the label (see the module docstring); 0 with too few rows."""
    rows = _sample(len(series))
    values, target = series.iloc[rows], np.asarray(target)[rows]
    present = values.notna().to_numpy()
    values, target = values[present], target[present]
    if len(values) < 10:
        return 0.0
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        x = values.to_numpy(np.float64)
        if regression:
            rho = pd.Series(x).rank().corr(pd.Series(target).rank())
            return 0.0 if np.isnan(rho) else float(rho**2)
        return _eta_squared(x, target)
    text = values.astype(str).to_numpy()
    if regression:
        return _eta_squared(target.astype(np.float64), text)
    from scipy.stats import chi2_contingency

    table = pd.crosstab(text, target).to_numpy()
    if min(table.shape) < 2:
        return 0.0
    chi2, _, dof, _ = chi2_contingency(table, correction=False)
    return max(0.0, float(chi2 - dof)) / (table.sum() * (min(table.shape) - 1))


def schema_associations(features: pd.DataFrame, target: np.ndarray, regression: bool) -> dict[str, float]:
    """Each column's association with the label, as the schema records it (`association`)."""
    return {str(name): round(association(features[name], target, regression), 6) for name in features.columns}


def association_checks(schema: dict[str, Any], frame: pd.DataFrame, target: np.ndarray, split: str, regression: bool,
                       severity: Callable[[str], Severity]) -> list[CheckResult]:
    """`schema.association`: a column whose association with the label fell below LOST_SHARE of the schema's
    (and significantly so) no longer matches its rows: shuffled, sorted apart or joined on the wrong key."""
    out = []
    for col in schema["columns"]:
        reference, name = col.get("association"), col["name"]
        if reference is None or reference < MIN_ASSOCIATION or name not in frame.columns:
            continue
        observed = association(frame[name], target, regression)
        n = min(len(frame), SAMPLE_ROWS)
        z = (reference - observed) / np.sqrt(4 * reference / max(n, 1))  # the estimate's spread near `reference`
        if observed < LOST_SHARE * reference and z > LOST_Z:
            out.append(CheckResult("schema.association", False, severity("schema.association"),
                                   f"{split}: {name} lost its relation to the label (association {reference:.3f} in the schema, "
                                   f"{observed:.3f} here): a shuffled or misaligned column?", name,
                                   f">= {LOST_SHARE:g} x {reference:.3f}", round(observed, 4),
                                   details={"reference": reference, "observed": observed, "z": float(z)}))
    if not out:
        out.append(CheckResult("schema.association", True, severity("schema.association"),
                               f"{split}: every feature keeps its relation to the label"))
    return out


def single_feature_leaks(train: pd.DataFrame, train_labels: np.ndarray, held_out: pd.DataFrame, held_out_labels: np.ndarray,
                         severity: Callable[[str], Severity]) -> list[CheckResult]:
    """`label_leak` failures for features that alone predict the held-out rows' class with balanced accuracy
    >= LEAK_BALANCED_ACCURACY: a small tree on a numeric feature, the majority class per category for a text one,
    both fitted on training rows. (A label copied into a feature, a post-outcome field, an id sorted by class.)"""
    from scipy.stats import beta
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    fit_rows, score_rows = _sample(len(train)), _sample(len(held_out), seed=1)
    train, held_out = train.iloc[fit_rows], held_out.iloc[score_rows]
    y_fit, y_score = np.asarray(train_labels)[fit_rows], np.asarray(held_out_labels)[score_rows]
    if len(np.unique(y_score)) < 2:
        return []
    out = []
    for name in train.columns:
        if name not in held_out.columns:
            continue
        fit, score = train[name], held_out[name]
        if pd.api.types.is_numeric_dtype(fit) and not pd.api.types.is_bool_dtype(fit):
            fill = float(fit.median()) if fit.notna().any() else 0.0
            tree = DecisionTreeClassifier(max_leaf_nodes=2 * len(np.unique(y_fit)) + 2, random_state=0)
            tree.fit(fit.fillna(fill).to_numpy(np.float64)[:, None], y_fit)
            predicted = tree.predict(pd.to_numeric(score, errors="coerce").fillna(fill).to_numpy(np.float64)[:, None])
        else:
            majority = pd.Series(y_fit).groupby(fit.astype(str).to_numpy()).agg(lambda s: s.value_counts().index[0])
            fallback = pd.Series(y_fit).value_counts().index[0]
            predicted = score.astype(str).map(majority).fillna(fallback).to_numpy().astype(y_fit.dtype)
        accuracy = float(balanced_accuracy_score(y_score, predicted))
        errors = int((predicted != y_score).sum())
        # and surely so: the 95 % lower bound of plain accuracy >= LEAK_LOWER_BOUND (30 perfect rows are no proof)
        lower = float(beta.ppf(0.05, len(y_score) - errors, errors + 1)) if errors < len(y_score) else 0.0
        if accuracy >= LEAK_BALANCED_ACCURACY and lower >= LEAK_LOWER_BOUND:
            out.append(CheckResult("label_leak", False, severity("label_leak"),
                                   f"{name} alone predicts the label (balanced accuracy {accuracy:.3f} on held-out rows)",
                                   str(name), f"< {LEAK_BALANCED_ACCURACY:g} from one feature", round(accuracy, 4)))
    return out
