"""Column roles, the type inference rule, the input encoding, the missing-rate test and categorical drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlplat.columns import TabularPreprocessor, encode_frame, fit_encodings, infer_type, split_roles
from mlplat.errors import UsageError


@pytest.mark.parametrize(("values", "kind"), [
    (["a", "b", None, "c"], "categorical"),
    (["yes", "no", None, "yes"], "boolean"),
    ([True, False, True, True], "boolean"),
    ([0, 1, 1, 0], "boolean"),
    ([1.5, 2.0, np.nan, 3.0], "numeric"),
    (["1", "2", "3", "4"] * 10, "numeric"),
    (["1", "2", "3", "x"], "categorical"),  # 75 % numbers: text, not a numeric column with bad cells
])
def test_type_inference_rule(values: list, kind: str) -> None:
    assert infer_type(pd.Series(values)) == kind


def test_roles_types_and_bad_cells() -> None:
    frame = pd.DataFrame({"uid": [7, 3, 9, 12] * 10, "drop_me": 1, "w": 2.0, "zip": [101, 102, 103, 104] * 10,
                          "x": ["1.5", "2", "n/a", "4"] * 10, "y": ["a", "b"] * 20})
    frame["uid"] = np.arange(40) * 10
    roles = split_roles(frame, "y", exclude=["drop_me"], weight="w", id_column="uid", column_types={"zip": "categorical", "x": "numeric"})
    assert list(roles.features.columns) == ["zip", "x"] and roles.types == {"zip": "categorical", "x": "numeric"}
    assert roles.features["zip"].iloc[0] == "101" and roles.weights.tolist() == [2.0] * 40
    assert roles.bad_cells[0] == {"column": "x", "row_id": 20, "value": "n/a"} and len(roles.bad_cells) == 10
    with pytest.raises(UsageError, match="dataset.id: column 'y' has 38 duplicate ids"):  # text ids are fine; repeats are not
        split_roles(frame, "x", id_column="y")
    with pytest.raises(UsageError, match="dataset.exclude: columns not in the data: nope"):
        split_roles(frame, "y", exclude=["nope"])
    with pytest.raises(UsageError, match="uid is the label, weight or id column"):
        split_roles(frame, "y", features=["uid", "x"], id_column="uid")


def test_encoding_imputes_indicates_and_keeps_nan_from_the_network() -> None:
    train = pd.DataFrame({"n": [1.0, np.nan, 3.0, 5.0], "c": ["b", "a", "b", None], "f": ["yes", "no", None, "yes"]})
    encodings = fit_encodings(train, {"n": "numeric", "c": "categorical", "f": "boolean"})
    assert encodings[1].categories == ["b", "a"]  # most frequent first: code 1
    X = encode_frame(train, encodings)
    prep = TabularPreprocessor.fit(X, encodings)
    assert prep.fill.tolist() == [3.0, 1.0, 1.0] and prep.indicators == [0, 1, 2]
    served = encode_frame(pd.DataFrame({"n": [np.nan], "c": ["never-seen"], "f": [None]}), encodings)
    assert served[0, 1] == 0  # the unknown bucket
    out = prep.transform(served)
    assert np.isfinite(out).all() and out.shape == (1, 2 + 3 + 1)  # dense n, f; 3 indicators; one code
    assert out[0, 2:5].tolist() == [1.0, 0.0, 1.0] and out[0, -1] == 0.0
    assert TabularPreprocessor.from_json(prep.to_json()).transform(served).tolist() == out.tolist()


def test_missing_rate_check_does_not_fail_by_chance_on_values_missing_at_random() -> None:
    from mlplat_plugins.tabular_validation.schema import missing_rate_check

    rng = np.random.default_rng(0)
    false_alarms = 0
    for _ in range(300):
        train = pd.Series(np.where(rng.random(600) < 0.03, np.nan, 1.0))
        split = pd.Series(np.where(rng.random(200) < 0.03, np.nan, 1.0))
        col = {"name": "x", "missing_rate": float(train.isna().mean()), "rows": 600}
        false_alarms += not missing_rate_check(split, col, "validation", lambda _: "fail", 0.3, 0.01 / 10).passed
    assert false_alarms <= 1
    col = {"name": "x", "missing_rate": 0.03, "rows": 600}
    worse = missing_rate_check(pd.Series([np.nan] * 30 + [1.0] * 170), col, "test", lambda _: "fail", 0.3, 0.001)
    assert not worse.passed and worse.details["rows"] == 30 and "30 of 200 rows missing" in worse.message
    capped = missing_rate_check(pd.Series([np.nan] * 50 + [1.0] * 50), {**col, "missing_rate": 0.5}, "test",
                                lambda _: "fail", 0.3, 0.001)
    assert not capped.passed  # not above training, but above max_missing_rate


def test_categorical_drift_uses_a_test_for_categories(tmp_path: Path) -> None:
    from mlplat.contracts.context import StepContext
    from mlplat.data import DatasetInfo
    from mlplat_plugins.evidently_drift import EvidentlyDriftConfig
    from mlplat_plugins.evidently_drift.detector import EvidentlyDriftDetector

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=3000), "c": rng.integers(1, 30, 3000).astype(float)})
    info = DatasetInfo("m", "y", ["x", "c"], ["a", "b"], None, {"x": "numeric", "c": "categorical"})
    detector = EvidentlyDriftDetector(EvidentlyDriftConfig())
    state = detector.fit(reference, StepContext(step="monitor", work_dir=tmp_path, info=info, seed=0))
    same = pd.DataFrame({"x": rng.normal(size=500), "c": rng.integers(1, 30, 500).astype(float)})
    moved = same.assign(c=np.where(rng.random(500) < 0.5, 3.0, same["c"]))  # half the rows become one category
    quiet, drifted = (detector.detect(state, f).features[1] for f in (same, moved))
    assert "Jensen-Shannon" in quiet.test and not quiet.drifted and not quiet.library_drifted
    assert drifted.drifted and drifted.library_drifted and drifted.effect_size > 0.3
