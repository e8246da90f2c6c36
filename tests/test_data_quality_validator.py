"""The tabular validator: every check fires on data built to trip it and stays quiet on clean data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlplat import registry
from mlplat.contracts import StepContext
from mlplat.data import Splits, Table, split_frame
from mlplat.errors import UsageError
from mlplat.registry import StageKind
from mlplat.validation_report import write_validation_report


def clean_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two well separated gaussian classes, 5 continuous features: nothing to complain about."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 5)) + 4.0 * y[:, None]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    frame["target"] = np.where(y == 1, "pos", "neg")
    return frame


@pytest.fixture(scope="module")
def clean() -> Splits:
    return split_frame(clean_frame(), "target", "clean", 0.2, 0.2, seed=1)


def run(splits: Splits, tmp_path: Path, **params) -> object:
    params.setdefault("plot_columns", 0)  # plots are tested once; keep the rest fast
    validator = registry.spec_of(StageKind.VALIDATOR, "tabular").create(params)
    return validator.validate(splits, StepContext("validate", tmp_path, splits.info, seed=0))


def failed(report, check: str) -> list:
    return [c for c in report.checks if c.check == check and not c.passed]


def with_train(splits: Splits, features: pd.DataFrame | None = None, labels: np.ndarray | None = None) -> Splits:
    t = splits.train
    return splits.with_train(Table(t.features if features is None else features, t.labels if labels is None else labels, t.row_ids))


def test_clean_data_passes_every_check(clean, tmp_path):
    report = run(clean, tmp_path)
    assert [(c.check, c.column, c.message) for c in report.checks if not c.passed] == []
    assert report.passed
    assert {c["name"] for c in report.schema["columns"]} == {f"f{i}" for i in range(5)}
    assert report.schema["label"]["classes"] == ["neg", "pos"]
    assert report.findings["label_noise"]["row_ids"] == []


def test_duplicate_rows(clean, tmp_path):
    f = clean.train.features.copy()
    f.iloc[1:6] = f.iloc[0].to_numpy()
    (check,) = failed(run(with_train(clean, f), tmp_path), "duplicates")
    assert check.observed == 5 and check.severity == "warn"


def test_train_test_leakage(clean, tmp_path):
    test = clean.test
    f = test.features.copy()
    f.iloc[:3] = clean.train.features.iloc[:3].to_numpy()
    leaky = Splits(clean.info, clean.train, clean.validation, Table(f, test.labels, test.row_ids))
    (check,) = failed(run(leaky, tmp_path), "leakage")
    assert check.observed == 3 and check.details["split"] == "test"


def test_constant_column(clean, tmp_path):
    f = clean.train.features.assign(f2=1.0)
    checks = failed(run(with_train(clean, f), tmp_path), "constant")
    assert [c.column for c in checks] == ["f2"]


def test_extreme_outliers(clean, tmp_path):
    f = clean.train.features.copy()
    f.loc[f.index[:10], "f3"] = 1e6
    checks = failed(run(with_train(clean, f), tmp_path), "outliers")
    assert [c.column for c in checks] == ["f3"]


def test_label_feature_identity(clean, tmp_path):
    def leak(t: Table) -> Table:
        return Table(t.features.assign(leak=t.labels * 3.0), t.labels, t.row_ids)

    leaky = Splits(clean.info, leak(clean.train), leak(clean.validation), leak(clean.test))
    report = run(leaky, tmp_path)
    assert [c.column for c in failed(report, "label_leak")] == ["leak"]
    assert not report.passed  # a label leak blocks by default


def test_class_imbalance_ratio_share_and_level(clean, tmp_path):
    t = clean.train
    keep = np.flatnonzero((t.labels == 0) | (np.cumsum(t.labels == 1) <= 6))
    (check,) = failed(run(clean.with_train(t.take(keep)), tmp_path), "imbalance")
    counts = check.details["counts"]
    assert counts["pos"] == 6 and check.details["level"] == "severe"
    assert check.details["ratio"] == pytest.approx(counts["neg"] / 6)
    assert check.observed == pytest.approx(6 / (counts["neg"] + 6), abs=1e-4)


@pytest.mark.parametrize("model,method", [("logistic", "prune_by_noise_rate"), ("mlp", "prune_by_noise_rate"),
                                          ("forest", "confident_joint")])
def test_label_noise_finds_flipped_labels(clean, tmp_path, model, method):
    rng = np.random.default_rng(0)
    labels = clean.train.labels.copy()
    flipped = rng.choice(len(labels), size=len(labels) // 10, replace=False)
    labels[flipped] = 1 - labels[flipped]
    report = run(with_train(clean, labels=labels), tmp_path, label_noise={"model": model, "method": method, "max_noise_share": 0.05})
    (check,) = failed(report, "label_noise")
    noise = report.findings["label_noise"]
    truth = set(clean.train.row_ids[flipped].tolist())
    found = set(noise["row_ids"])
    assert len(found & truth) >= 0.75 * len(truth) and len(found - truth) <= 0.1 * len(found)
    assert noise["scores"] == sorted(noise["scores"], reverse=True) and noise["members"] == [model]
    assert sum(map(sum, noise["confident_joint"])) > 0 and check.observed == pytest.approx(len(found) / len(labels), abs=1e-4)


def test_schema_anomalies_name_column_expectation_and_observation(clean, tmp_path):
    v, t = clean.validation, clean.test
    vf = v.features.assign(f0=v.features["f0"].astype(str))  # wrong type
    vf.loc[vf.index[:20], "f1"] = np.nan  # missing values
    tf = t.features.drop(columns=["f4"]).assign(f3=t.features["f3"] + 100.0)  # missing column, shifted range
    bad = Splits(clean.info, clean.train, Table(vf, v.labels, v.row_ids), Table(tf, t.labels, t.row_ids))
    report = run(bad, tmp_path)
    got = {(c.check, c.column) for c in report.blocking}
    assert {("schema.dtype", "f0"), ("schema.missing", "f1"), ("schema.columns", "f4"), ("schema.range", "f3")} <= got
    dtype = next(c for c in report.blocking if c.check == "schema.dtype")
    assert dtype.expected == "float" and dtype.observed.startswith("string")
    assert not report.passed


def test_expected_schema_checks_train_and_label_classes(clean, tmp_path):
    import json

    schema = run(clean, tmp_path).schema
    schema["label"]["classes"] = ["neg", "other"]
    schema["columns"][0]["max"] = schema["columns"][0]["min"] + 0.01  # narrower than today's train
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    report = run(clean, tmp_path, schema_path=str(path))
    got = {(c.check, c.message.split(":")[0]) for c in report.blocking}
    assert ("schema.label", "train") in got and ("schema.range", "train") in got


def test_train_serve_skew_uses_evidently(clean, tmp_path):
    rng = np.random.default_rng(3)
    serving = clean_frame(200, seed=5).drop(columns=["target"])
    serving.to_csv(tmp_path / "same.csv", index=False)
    quiet = run(clean, tmp_path, serving_sample=str(tmp_path / "same.csv"), label_noise={"enabled": False})
    assert failed(quiet, "skew") == [] and failed(quiet, "skew.share") == []
    assert set(quiet.findings["skew"]["columns"]) == {f"f{i}" for i in range(5)}
    shifted = serving.assign(f0=serving["f0"] * 1.0 + 2.5, f1=serving["f1"] + rng.normal(2.0, 1.0, len(serving)))
    shifted.to_parquet(tmp_path / "shifted.parquet")
    report = run(clean, tmp_path, serving_sample=str(tmp_path / "shifted.parquet"), label_noise={"enabled": False})
    assert {c.column for c in failed(report, "skew")} >= {"f0", "f1"}
    assert failed(report, "skew.share") and not report.passed


def test_severity_is_configurable(clean, tmp_path):
    f = clean.train.features.copy()
    f.iloc[1] = f.iloc[0].to_numpy()
    assert run(with_train(clean, f), tmp_path).passed
    blocked = run(with_train(clean, f), tmp_path, severity={"duplicates": "fail"})
    assert [c.check for c in blocked.blocking] == ["duplicates"]
    with pytest.raises(UsageError, match="unknown checks"):
        run(clean, tmp_path, severity={"duplicatez": "fail"})


def test_report_in_three_forms_with_plots(clean, tmp_path):
    f = clean.train.features.copy()
    f.loc[f.index[:10], "f3"] = 1e6
    report = run(with_train(clean, f), tmp_path, plot_columns=5)
    write_validation_report(report, tmp_path / "out", "validation")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Distributions per column" in html
    assert "outliers" in (tmp_path / "out" / "report.md").read_text()
    assert '"passed": true' in (tmp_path / "out" / "report.json").read_text()


def test_confident_learning_by_hand():
    from mlplat_plugins.tabular_validation.label_noise import confident_learning

    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.95, 0.05]])
    given = np.array([0, 0, 0, 1, 1, 1])  # rows 2 and 5 look mislabelled
    result = confident_learning(proba, given, "confident_joint")
    assert result.thresholds == pytest.approx([(0.9 + 0.8 + 0.2) / 3, (0.9 + 0.7 + 0.05) / 3])
    assert result.joint.tolist() == [[2, 1], [1, 2]]  # off-diagonal: row 2 (0 -> 1) and row 5 (1 -> 0)
    assert result.suspects.tolist() == [5, 2] and result.scores == pytest.approx([0.9, 0.6])
    assert result.suggested.tolist() == [0, 1]
    pruned = confident_learning(proba, given)
    assert sorted(pruned.suspects.tolist()) == [2, 5]


def test_skew_comparison_is_reusable_with_a_chosen_evidently_method():
    from mlplat.skew import compare_columns

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "name": ["x"] * 300})
    current = pd.DataFrame({"a": rng.normal(size=150) + 1.0, "b": rng.normal(size=150), "name": ["y"] * 150})
    drifts = {d.feature: d for d in compare_columns(reference, current, method="wasserstein", threshold=0.3)}
    assert set(drifts) == {"a", "b"}  # non-numeric columns are left to the schema checks
    assert drifts["a"].drifted and not drifts["b"].drifted
    assert drifts["a"].p_value is None and "wasserstein" in drifts["a"].test and drifts["a"].score > 0.3 > drifts["b"].score


def test_categorical_value_not_in_domain(clean, tmp_path):
    """TFDV's unexpected string values: the anomaly names the column, the (truncated) domain and the new values."""
    def with_colour(t: Table, values: list[str]) -> Table:
        return Table(t.features.assign(colour=[values[i % len(values)] for i in range(len(t))]), t.labels, t.row_ids)

    shades = [f"shade{i:02d}" for i in range(12)]
    quiet = Splits(clean.info, with_colour(clean.train, shades), with_colour(clean.validation, shades[::-1]),
                   with_colour(clean.test, shades[:5]))
    report = run(quiet, tmp_path)
    assert failed(report, "schema.domain") == []
    assert [c.column for c in report.checks if c.check == "schema.domain"] == ["colour", "colour"]  # validation, test
    bad = Splits(clean.info, quiet.train, with_colour(clean.validation, [*shades, "purple", "teal"]), quiet.test)
    (check,) = failed(run(bad, tmp_path), "schema.domain")
    assert check.column == "colour" and check.severity == "fail" and check.message.startswith("validation: colour")
    assert check.observed == ["purple", "teal"] and check.details["rows"] == sum(
        [*shades, "purple", "teal"][i % 14] in ("purple", "teal") for i in range(len(clean.validation)))
    assert check.expected == f"one of {shades[:10] + ['... (12 values)']}"


def test_moderate_shift_is_flagged_in_a_new_batch(clean, tmp_path):
    """+3 std on one column: inside the tolerated range (the range check is for gross errors), so the mean-shift
    check flags it against the schema, and Evidently's skew check against a serving sample."""
    std = clean.train.features["f2"].std(ddof=0)
    t = clean.test
    shifted = Splits(clean.info, clean.train, clean.validation,
                     Table(t.features.assign(f2=t.features["f2"] + 3 * std), t.labels, t.row_ids))
    report = run(shifted, tmp_path, label_noise={"enabled": False})
    assert failed(report, "schema.range") == []  # documented: a +3 std shift is not a range anomaly
    (check,) = failed(report, "schema.shift")
    assert check.column == "f2" and check.message.startswith("test:") and check.severity == "warn"
    assert float(check.observed.split()[0]) == pytest.approx(3.0, abs=0.5)
    serving = clean_frame(200, seed=5).drop(columns=["target"])
    serving.assign(f2=serving["f2"] + 3 * std).to_csv(tmp_path / "batch.csv", index=False)
    report = run(clean, tmp_path, serving_sample=str(tmp_path / "batch.csv"), label_noise={"enabled": False})
    assert {c.column for c in failed(report, "skew")} == {"f2"}
    assert [c.column for c in failed(report, "schema.shift")] == ["f2"]
