"""Per-column distribution comparison with Evidently: train/serve skew and production drift.

The validator's skew check and monitoring call this one function, so both judge a column
by the same Evidently test (method and threshold resolved by Evidently when not given).
Evidently is imported inside the function: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mlplat.contracts.drift_detector import FeatureDrift


def compare_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None = None,
    method: str | None = None, threshold: float | None = None,
) -> list[FeatureDrift]:
    """One Evidently `ValueDrift` test per numeric column shared by both frames.

    `score` is Evidently's drift score (a p-value for K-S/chi-square, a distance for
    Wasserstein/PSI/...); `drifted` is Evidently's own verdict against its threshold.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    names = [str(c) for c in (columns if columns is not None else reference.columns)
             if c in current.columns and pd.api.types.is_numeric_dtype(reference[c]) and pd.api.types.is_numeric_dtype(current[c])]
    if not names:
        return []
    definition = DataDefinition(numerical_columns=names)
    report = Report([ValueDrift(column=c, method=method, threshold=threshold) for c in names], include_tests=True)
    snapshot = report.run(Dataset.from_pandas(current[names].astype(float), data_definition=definition),
                          Dataset.from_pandas(reference[names].astype(float), data_definition=definition))
    result = snapshot.dict()
    verdicts = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in result.get("tests", [])}
    out = []
    for metric in result["metrics"]:
        config = metric["config"]
        score = float(metric["value"])
        is_p_value = "p_value" in str(config.get("method", "")).lower()
        out.append(FeatureDrift(feature=config["column"], score=score, drifted=bool(verdicts.get(metric["id"], False)),
                                test=f"{config.get('method')} (threshold {config.get('threshold')})",
                                p_value=score if is_p_value else None))
    return out
