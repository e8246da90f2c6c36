"""The two drift severities: critical (a top-importance feature, or the output distribution) and warning
(the importance-weighted share); the per-feature critical gauge and the monitor options `mlplat serve` shares."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlplat import registry
from mlplat.contracts.drift_detector import PREDICTION_COLUMN, probability_columns
from mlplat.modeldir import LoadedModel, copy_model_dir
from mlplat.monitoring.monitor import Monitor, MonitorSettings
from mlplat_plugins.evidently_drift.detector import top_features

COLS = [f"f{i}" for i in range(10)]
# spread importance (correlated data): no single feature reaches the warning's 0.25 weighted share
IMPORTANCE = {"f0": 0.2, **{f"f{i}": 0.09 for i in range(1, 9)}, "f9": 0.08}


def _frame(n: int, seed: int, shift: dict[str, float] | None = None, proba_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(COLS))), columns=COLS)
    for column, delta in (shift or {}).items():
        frame[column] += delta
    p1 = np.clip(rng.beta(2, 2, n) + proba_shift, 0, 1)
    frame[probability_columns(2)] = np.column_stack([1 - p1, p1])
    frame[PREDICTION_COLUMN] = (p1 > 0.5).astype(np.int64)
    return frame


def test_top_features_carry_the_share_of_importance() -> None:
    assert top_features({"a": 0.6, "b": 0.3, "c": 0.1}, 0.8) == {"a", "b"}
    assert top_features({"a": 0.6, "b": 0.3, "c": 0.1}, 0.5) == {"a"}
    assert len(top_features({f"x{i}": 0.1 for i in range(10)}, 0.8)) == 8


def test_a_half_std_shift_of_a_top_feature_is_critical_without_reaching_the_warning_share() -> None:
    detector = registry.spec_of("drift_detector", "evidently").create({})
    state = detector.fit(_frame(3000, 0), None, IMPORTANCE)
    assert "probabilities" in state and not set(state["columns"]) & set(probability_columns(2))  # outputs are no features
    shifted = detector.detect(state, _frame(1000, 1, {"f0": 0.5}))
    f0 = next(f for f in shifted.features if f.feature == "f0")
    assert f0.critical and shifted.critical and not shifted.output_drift
    assert shifted.weighted_share is not None and shifted.weighted_share < 0.25 and not shifted.dataset_drift  # the old alert: silent
    low = detector.detect(state, _frame(1000, 1, {"f9": 1.0}))  # outside the top features: drifts, never critical
    assert next(f for f in low.features if f.feature == "f9").drifted and not low.critical
    clean = detector.detect(state, _frame(1000, 2))
    assert not clean.critical and not clean.dataset_drift


def test_output_distribution_drift_is_critical_and_needs_probabilities() -> None:
    detector = registry.spec_of("drift_detector", "evidently").create({})
    state = detector.fit(_frame(3000, 0), None, IMPORTANCE)
    moved = detector.detect(state, _frame(1000, 3, proba_shift=0.15))
    assert moved.output_drift and moved.critical and len(moved.probabilities) == 2
    assert all(o.p_value is not None and o.p_value < 0.01 for o in moved.probabilities)
    unknown = _frame(1000, 3, proba_shift=0.15)
    unknown[probability_columns(2)] = np.nan  # another server answered without probabilities
    assert not detector.detect(state, unknown).output_drift
    assert not detector.detect(state, _frame(100, 3, proba_shift=0.15)).output_drift  # below min_window


@pytest.fixture()
def model_dir(trained_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    copy_model_dir(trained_model_dir, target)
    return target


def test_monitor_raises_the_per_feature_critical_gauge_with_hysteresis(model_dir: Path, tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    loaded = LoadedModel.load(model_dir)
    reference = loaded.reference()
    assert set(probability_columns(len(loaded.class_names))) <= set(reference.columns)  # training stored them
    settings = MonitorSettings(capacity=300, consecutive=2, min_new_rows=50, state_dir=tmp_path / "state")
    monitor = Monitor(model_dir, settings)
    top = max(monitor.reference_state["importance"].items(), key=lambda item: item[1])[0]
    X = reference[loaded.feature_names].sample(300, replace=True, random_state=0).to_numpy(np.float32)
    X[:, loaded.feature_names.index(top)] += 1.5 * float(reference[top].std())
    probabilities = loaded.predict_proba(X)
    for i in range(2):
        monitor.window.record(X, probabilities.argmax(1), [f"w{i}"], probabilities)
        summary = monitor.evaluate()
        assert top in summary["critical_features"]
        assert (top in summary["critical_features_alert"]) == (i == 1) and summary["critical_drift_alert"] == (i == 1)
    gauge = REGISTRY.get_sample_value("mlplat_feature_drift_critical", {"model": monitor.name, "feature": top})
    assert gauge == 1.0 and REGISTRY.get_sample_value("mlplat_drift_critical", {"model": monitor.name}) == 1.0
    features = {s.labels["feature"] for metric in REGISTRY.collect() if metric.name == "mlplat_feature_drift_critical"
                for s in metric.samples if s.labels["model"] == monitor.name}
    assert features == set(loaded.feature_names)  # the label holds the model's own features only
    monitor.stop()
    assert Monitor(model_dir, settings).feature_flags[top].active  # the critical flag survives a restart


def test_serve_and_monitor_share_the_window_and_hysteresis_options() -> None:
    from mlplat.cli.monitor_cmd import monitor
    from mlplat.cli.serve_cmd import serve

    served, monitored = inspect.signature(serve).parameters, inspect.signature(monitor).parameters
    for name in ("window", "consecutive", "min_new_rows"):
        assert served[name].default is monitored[name].default, name  # one option definition
