"""Evidently's default drift tests, computed on cached reference statistics, plus noise control.

Evidently re-sorts and re-summarizes the reference on every report. Here `fit` stores each
column's sorted reference values and std once, and `detect` computes Evidently's own default
statistic per column (normed Wasserstein for references over 1000 rows, K-S otherwise; low-
cardinality and categorical columns go straight to Evidently's registered stat test), so the
library verdicts are the ones a plain `DataDriftPreset` gives. The same pass yields the K-S
distance, from which the alerting verdict adds a Benjamini-Hochberg correction across
features, an effect-size floor and importance weights.

Two severities: a window is **critical** when any top-importance feature (the fewest features carrying
`top_importance_share` of the importance) passes that noise control, or when the model's output
distribution moved (a K-S test per class on the predicted probabilities against the reference's,
Benjamini-Hochberg across classes, a K-S distance floor); it is a **warning** (`dataset_drift`) when
the importance-weighted share of drifted features reaches `alert_share`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts.context import StepContext
from mlplat.contracts.drift_detector import PREDICTION_COLUMN, PROBABILITY_PREFIX, DriftResult, FeatureDrift, is_feature_column
from mlplat.errors import UsageError
from scipy import stats

from mlplat_plugins.evidently_drift import EvidentlyDriftConfig

STATE_VERSION = 1
SMALL_REFERENCE = 1000  # Evidently switches from K-S / chi2 / z to Wasserstein / Jensen-Shannon above this
LOW_CARDINALITY = 5  # Evidently treats numeric columns with <= 5 distinct values with count-based tests
WASSERSTEIN_THRESHOLD, KS_THRESHOLD = 0.1, 0.05  # Evidently's defaults


class EvidentlyDriftDetector:
    def __init__(self, config: EvidentlyDriftConfig) -> None:
        self.config = config
        self._arrays: tuple[int, dict[str, np.ndarray]] | None = None

    # ---- fit -------------------------------------------------------------------------------
    def fit(
        self, reference: pd.DataFrame, context: StepContext | None = None, importance: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        features = [c for c in reference.columns if is_feature_column(c)]
        # categorical features hold vocabulary codes (mlplat.columns): compared as categories, never as numbers
        kinds = context.info.column_types if context is not None else {}
        columns = {c: {**_column_state(reference[c]), "categorical": kinds.get(c) == "categorical"} for c in features}
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "reference_rows": int(len(reference)),
            "columns": columns,
            "importance": _normalized_importance(features, importance),
        }
        probabilities = [c for c in reference.columns if c.startswith(PROBABILITY_PREFIX)]
        if probabilities:  # a classifier's output distribution, for the output-drift (critical) test
            state["probabilities"] = {c: _column_state(reference[c]) for c in probabilities}
        if PREDICTION_COLUMN in reference:
            state["prediction"] = _column_state(reference[PREDICTION_COLUMN])
            # a regression's predictions are float values (class predictions are int64 indices): tested like a numeric feature
            if pd.api.types.is_float_dtype(reference[PREDICTION_COLUMN]):
                state["prediction"]["kind"] = "numeric"
        return state

    # ---- detect ----------------------------------------------------------------------------
    def detect(self, reference_state: dict[str, Any], current: pd.DataFrame) -> DriftResult:
        cfg = self.config
        columns: dict[str, Any] = reference_state["columns"]
        missing = [c for c in columns if c not in current]
        if missing:
            raise UsageError(f"drift window lacks reference columns: {', '.join(missing[:10])}")
        arrays = self._reference_arrays(reference_state)
        small = reference_state["reference_rows"] <= SMALL_REFERENCE
        n = len(current)
        rows = [_column_drift(name, arrays[name], columns[name], current[name], small) for name in columns]

        ks_p = np.array([r["ks_p"] for r in rows])
        adjusted = stats.false_discovery_control(ks_p, method="bh") if len(ks_p) else ks_p
        importance = reference_state["importance"]
        top = top_features(importance, cfg.top_importance_share)
        features: list[FeatureDrift] = []
        for r, p_adj in zip(rows, adjusted, strict=True):
            weight = float(importance.get(r["name"], 0.0))
            alerting = (n >= cfg.min_window and p_adj <= cfg.fdr and r["effect"] >= cfg.min_effect_size
                        and weight >= cfg.importance_floor)
            features.append(FeatureDrift(r["name"], r["score"], bool(alerting), r["test"], float(p_adj),
                                         r["effect"], bool(r["library_drifted"]), weight,
                                         critical=bool(alerting and r["name"] in top)))
        outputs = _output_drift(arrays, reference_state.get("probabilities", {}), current, cfg)

        prediction = None
        if "prediction" in reference_state and PREDICTION_COLUMN in current:
            if reference_state["prediction"].get("kind") == "numeric":
                prediction = _value_drift(arrays[PREDICTION_COLUMN], reference_state["prediction"],
                                          current[PREDICTION_COLUMN], small, n, cfg)
            else:
                prediction = _prediction_drift(arrays[PREDICTION_COLUMN], current[PREDICTION_COLUMN], small, n, cfg)

        total_weight = sum(f.importance or 0.0 for f in features) or 1.0
        weighted = sum(f.importance or 0.0 for f in features if f.drifted) / total_weight
        share = sum(f.drifted for f in features) / max(len(features), 1)
        library = [f.library_drifted for f in features] + ([prediction.library_drifted] if prediction else [])
        library_share = sum(bool(x) for x in library) / max(len(library), 1)
        return DriftResult(
            features=features, share=share, dataset_drift=bool(n >= cfg.min_window and weighted >= cfg.alert_share),
            prediction=prediction, rows=n, weighted_share=weighted,
            library_dataset_drift=bool(library_share >= cfg.drift_share),
            details={"library_share": library_share, "reference_rows": reference_state["reference_rows"],
                     "top_features": sorted(top)},
            probabilities=outputs, output_drift=any(o.drifted for o in outputs),
        )

    def _reference_arrays(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        # JSON lists -> float arrays once per state object, not once per window
        if self._arrays is None or self._arrays[0] != id(state):
            arrays = {c: np.asarray(s["values"], dtype=np.float64) for c, s in state["columns"].items()}
            if "prediction" in state:
                arrays[PREDICTION_COLUMN] = np.asarray(state["prediction"]["values"], dtype=np.float64)
            for c, s in state.get("probabilities", {}).items():
                arrays[c] = np.asarray(s["values"], dtype=np.float64)
            self._arrays = (id(state), arrays)
        return self._arrays[1]

    # ---- report ----------------------------------------------------------------------------
    def write_report(self, reference: pd.DataFrame, current: pd.DataFrame, path: Path) -> None:
        snapshot = evidently_report(reference, current, self.config.drift_share)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        snapshot.save_html(str(tmp))
        tmp.replace(path)


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, drift_share: float = 0.5,
                     categorical: list[str] | None = None) -> Any:
    """A plain Evidently DataDriftPreset run (features numerical unless named `categorical`, prediction categorical)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [c for c in categorical or [] if c in reference.columns]
    features = [c for c in reference.columns if c != PREDICTION_COLUMN and c not in categorical]
    definition = DataDefinition(numerical_columns=features,
                                categorical_columns=categorical + ([PREDICTION_COLUMN] if PREDICTION_COLUMN in reference else []))
    report = Report([DataDriftPreset(drift_share=drift_share)])
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(reference, data_definition=definition))


def _column_state(series: pd.Series) -> dict[str, Any]:
    values = np.sort(series.dropna().to_numpy(dtype=np.float64))
    return {"values": values.tolist(), "std": float(np.std(values)), "nunique": int(len(np.unique(values)))}


def top_features(importance: Mapping[str, float], share: float) -> set[str]:
    """The fewest features, most important first, whose normalized importance adds up to `share`: the ones
    that carry most of what the model uses (with uniform importance: that share of the features)."""
    ranked = sorted(importance.items(), key=lambda item: -item[1])
    top: set[str] = set()
    carried = 0.0
    for name, weight in ranked:
        if carried >= share - 1e-12:
            break
        top.add(name)
        carried += weight
    return top


def _output_drift(arrays: Mapping[str, np.ndarray], states: Mapping[str, Any], current: pd.DataFrame,
                  cfg: EvidentlyDriftConfig) -> list[FeatureDrift]:
    """K-S test per class of the served probabilities against the reference's, BH-corrected across classes;
    a class drifts with an adjusted p <= fdr and a K-S distance >= min_output_ks. Rows without
    probabilities (NaN: another server answered) are left out, and fewer than min_window rows never drift."""
    tested = []
    for column in states:
        if column not in current:
            continue
        cur = np.sort(current[column].to_numpy(dtype=np.float64))
        cur = cur[~np.isnan(cur)]
        _, d = _wasserstein_and_ks(arrays[column], cur)
        m, k = sorted((len(arrays[column]), len(cur)), reverse=True)
        p = float(stats.kstwo.sf(d, np.round(m * k / (m + k)))) if len(cur) else 1.0
        tested.append((column, d, p, len(cur)))
    if not tested:
        return []
    adjusted = stats.false_discovery_control([t[2] for t in tested], method="bh")
    return [FeatureDrift(column, p, bool(rows >= cfg.min_window and p_adj <= cfg.fdr and d >= cfg.min_output_ks),
                         "K-S p_value", float(p_adj), d) for (column, d, p, rows), p_adj in zip(tested, adjusted, strict=True)]


def _normalized_importance(features: list[str], importance: Mapping[str, float] | None) -> dict[str, float]:
    raw = {f: abs(float((importance or {}).get(f, 0.0))) for f in features}
    total = sum(raw.values())
    if not importance or total <= 0:
        return {f: 1.0 / len(features) for f in features} if features else {}
    return {f: v / total for f, v in raw.items()}


def _evidently_test(reference: np.ndarray, current: pd.Series, categorical: bool) -> tuple[str, float, bool]:
    """Evidently's own default test for a (low-cardinality or categorical) column."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    ref = pd.Series(reference)
    cur = pd.Series(current.to_numpy(dtype=np.float64))
    test = get_stattest(ref, cur, kind, None)
    result = test(ref, cur, kind, None)
    return test.display_name, float(result.drift_score), bool(result.drifted)


def _column_drift(name: str, ref: np.ndarray, ref_state: dict[str, Any], current: pd.Series, small: bool) -> dict[str, Any]:
    cur = np.sort(current.to_numpy(dtype=np.float64))
    cur = cur[~np.isnan(cur)]
    wd, d = _wasserstein_and_ks(ref, cur)
    effect = wd / max(ref_state["std"], 0.001)
    m, k = sorted((len(ref), len(cur)), reverse=True)
    ks_p = float(stats.kstwo.sf(d, np.round(m * k / (m + k)))) if len(cur) else 1.0
    low_card = (ref_state["nunique"] <= LOW_CARDINALITY
                and len(np.unique(np.concatenate([np.unique(ref), np.unique(cur)]))) <= LOW_CARDINALITY)
    if ref_state.get("categorical"):  # Evidently's test for categories (chi-square / Jensen-Shannon by size)
        test, score, drifted = _evidently_test(ref, current.dropna(), categorical=True)
        effect, ks_p = _total_variation(ref, cur), _chi_square_p(ref, cur)  # BH-corrected like the K-S p-values
    elif low_card:
        test, score, drifted = _evidently_test(ref, current, categorical=False)
    elif small:  # Evidently: K-S p-value <= 0.05; same scipy call, so the same p-value
        score = float(stats.ks_2samp(ref, cur)[1])
        test, drifted, ks_p = "K-S p_value", score <= KS_THRESHOLD, score
    else:
        test, score, drifted = "Wasserstein distance (normed)", effect, effect >= WASSERSTEIN_THRESHOLD
    return {"name": name, "test": test, "score": score, "library_drifted": drifted, "effect": effect, "ks_p": ks_p}


def _total_variation(ref: np.ndarray, cur: np.ndarray) -> float:
    """Half the L1 distance of two category frequency tables: a categorical column's effect size."""
    if not len(ref) or not len(cur):
        return 0.0
    categories = np.union1d(np.unique(ref), np.unique(cur))
    return float(0.5 * np.abs(np.array([(ref == c).mean() - (cur == c).mean() for c in categories])).sum())


def _chi_square_p(ref: np.ndarray, cur: np.ndarray) -> float:
    """Chi-square test of homogeneity of the reference and current category counts."""
    categories = np.union1d(np.unique(ref), np.unique(cur))
    if len(categories) < 2 or not len(cur) or not len(ref):
        return 1.0
    table = np.array([[(ref == c).sum() for c in categories], [(cur == c).sum() for c in categories]])
    return float(stats.chi2_contingency(table)[1])


def _wasserstein_and_ks(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """scipy's 1-D CDF distance (p=1) and the K-S statistic from one merge of sorted samples."""
    if not len(cur_sorted) or not len(ref_sorted):
        return 0.0, 0.0
    merged = np.concatenate([ref_sorted, cur_sorted])
    merged.sort(kind="mergesort")
    deltas = np.diff(merged)
    u_cdf = np.searchsorted(ref_sorted, merged[:-1], "right") / len(ref_sorted)
    v_cdf = np.searchsorted(cur_sorted, merged[:-1], "right") / len(cur_sorted)
    gap = np.abs(u_cdf - v_cdf)
    return float(np.sum(gap * deltas)), float(gap.max()) if len(gap) else 0.0


def _value_drift(ref: np.ndarray, ref_state: dict[str, Any], current: pd.Series, small: bool, n: int,
                 cfg: EvidentlyDriftConfig) -> FeatureDrift:
    """A regression's predicted values: the numeric feature test; the effect is the normed Wasserstein distance."""
    r = _column_drift(PREDICTION_COLUMN, ref, ref_state, current, small)
    alerting = n >= cfg.min_window and r["library_drifted"] and r["effect"] >= cfg.min_effect_size
    return FeatureDrift(PREDICTION_COLUMN, r["score"], bool(alerting), r["test"], effect_size=r["effect"],
                        library_drifted=bool(r["library_drifted"]))


def _prediction_drift(ref: np.ndarray, current: pd.Series, small: bool, n: int, cfg: EvidentlyDriftConfig) -> FeatureDrift:
    test, score, library = _evidently_test(ref, current, categorical=True)
    cur = current.to_numpy(dtype=np.float64)
    classes = np.union1d(np.unique(ref), np.unique(cur))
    p = np.array([(ref == c).mean() for c in classes])
    q = np.array([(cur == c).mean() for c in classes]) if len(cur) else p
    tvd = float(0.5 * np.abs(p - q).sum())
    alerting = n >= cfg.min_window and library and tvd >= cfg.min_prediction_effect
    return FeatureDrift(PREDICTION_COLUMN, score, bool(alerting), test, effect_size=tvd, library_drifted=library)
