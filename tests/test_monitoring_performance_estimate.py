"""Label-free performance estimation: temperature calibration (fitted at training, saved in model.json),
CBPE accuracy / macro-F1 per window, the exported gauges and the realized figures beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlplat.contracts.drift_detector import PREDICTION_COLUMN
from mlplat.errors import BadEvent
from mlplat.manifest import ModelManifest
from mlplat.modeldir import LoadedModel, ModelDir, copy_model_dir
from mlplat.monitoring.monitor import Monitor, MonitorSettings
from mlplat.monitoring.performance_estimate import (
    apply_temperature,
    estimate,
    expected_confusion,
    fit_temperature,
    improves_significantly,
    macro_f1,
    negative_log_likelihood,
)
from mlplat.monitoring.service import response_probabilities
from mlplat.monitoring.window import Window


def _overconfident(n: int, classes: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose labels are drawn from softmax(logits), served as softmax(logits * temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in true])
    served = np.exp(logits * temperature) / np.exp(logits * temperature).sum(1, keepdims=True)
    return served, labels


def test_fit_temperature_recovers_the_overconfidence_and_lowers_the_nll() -> None:
    served, labels = _overconfident(4000, 4, temperature=2.5)
    fitted = fit_temperature(served, labels)
    assert fitted == pytest.approx(2.5, rel=0.1)
    assert negative_log_likelihood(served, labels, fitted) < negative_log_likelihood(served, labels) - 0.05
    assert np.array_equal(apply_temperature(served, fitted).argmax(1), served.argmax(1))  # classes unchanged
    assert improves_significantly(served, labels, fitted)
    calibrated, labels = _overconfident(300, 4, temperature=1.0, seed=3)  # already calibrated, few rows: T stays 1
    assert not improves_significantly(calibrated, labels, fit_temperature(calibrated, labels))


def test_cbpe_matches_realized_accuracy_of_calibrated_probabilities() -> None:
    served, labels = _overconfident(20000, 3, temperature=1.0, seed=1)
    found = estimate(served)
    assert found is not None and found.rows == 20000
    realized = float((served.argmax(1) == labels).mean())
    assert found.accuracy == pytest.approx(realized, abs=0.01)
    raw = estimate(*(_overconfident(20000, 3, temperature=3.0, seed=1)[:1]))  # overconfident: the estimate is too high
    assert raw is not None and raw.accuracy > realized + 0.05
    assert estimate(np.zeros((0, 3))) is None


def test_expected_f1_of_one_hot_probabilities_is_sklearn_macro_f1() -> None:
    from sklearn.metrics import confusion_matrix, f1_score

    rng = np.random.default_rng(2)
    truth, predicted = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    one_hot = np.eye(4)[truth] * 0.7 + 0.3 / 4  # argmax = truth; the expected matrix of one-hot rows...
    assert macro_f1(confusion_matrix(truth, predicted, labels=range(4)).astype(float)) == pytest.approx(
        f1_score(truth, predicted, average="macro"))
    assert np.allclose(expected_confusion(np.eye(4)[truth]), np.diag(np.bincount(truth, minlength=4)))
    assert expected_confusion(one_hot).sum() == pytest.approx(500)


def test_older_manifest_without_calibration_still_loads(trained_model_dir: Path) -> None:
    data = json.loads((trained_model_dir / "model.json").read_text())
    data.pop("calibration", None)
    assert ModelManifest.from_json(json.dumps(data)).calibration is None


@pytest.fixture()
def model_dir(trained_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    copy_model_dir(trained_model_dir, target)
    return target


def test_training_saves_a_temperature_fitted_on_validation(trained_model_dir: Path) -> None:
    calibration = ModelDir(trained_model_dir).read().calibration
    assert calibration is not None and calibration.rows > 0 and calibration.fitted_temperature is not None
    assert calibration.temperature in (1.0, calibration.fitted_temperature)
    assert calibration.nll_after is not None and calibration.nll_before is not None
    assert calibration.nll_after <= calibration.nll_before + 1e-9


def test_monitor_exports_the_estimate_and_the_realized_accuracy_beside_it(model_dir: Path) -> None:
    from prometheus_client import REGISTRY

    loaded = LoadedModel.load(model_dir)
    reference = pd.read_parquet(model_dir / "reference.parquet")
    X = reference[loaded.feature_names].to_numpy(np.float32)
    probabilities = loaded.predict_proba(X)
    monitor = Monitor(model_dir, MonitorSettings(min_estimate_rows=50, min_labels=30))
    monitor.window.record(X, probabilities.argmax(1), ["r"], probabilities)
    summary = monitor.evaluate()["performance"]
    calibrated = apply_temperature(probabilities, loaded.manifest.calibration.temperature)  # type: ignore[union-attr]
    assert summary["estimated_accuracy"] == pytest.approx(calibrated.max(1).mean())
    assert summary["estimate_rows"] == len(X) and math.isnan(summary["realized_accuracy"])
    assert REGISTRY.get_sample_value("mlplat_estimated_accuracy", {"model": monitor.name}) == pytest.approx(
        summary["estimated_accuracy"])
    gap = REGISTRY.get_sample_value("mlplat_estimated_accuracy_gap", {"model": monitor.name})
    assert gap == pytest.approx(summary["estimated_accuracy"] - summary["band_lower_edge"])

    # labels arrive: the realized accuracy sits beside the estimate
    keys = [f"r/{i}" for i in range(len(X))]
    monitor.feedback(keys, [int(v) for v in probabilities.argmax(1)])
    summary = monitor.evaluate()["performance"]
    assert summary["realized_accuracy"] == 1.0 and summary["labeled_rows"] == len(X)

    # rows without probabilities (another server answered) are left out of the estimate
    fresh = Monitor(model_dir, MonitorSettings(min_estimate_rows=50))
    fresh.window.record(X, probabilities.argmax(1), ["x"])
    assert math.isnan(fresh.evaluate()["performance"]["estimated_accuracy"])


def test_window_persists_probabilities(tmp_path: Path) -> None:
    window = Window(["a"], capacity=4, n_classes=2)
    window.record(np.zeros((3, 1), np.float32), np.array([0, 1, 1]), ["q"], np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]))
    window.record(np.zeros((2, 1), np.float32), np.array([0, 0]), ["w"])  # no probabilities: NaN; wraps the ring
    window.save(tmp_path / "w.parquet")
    again = Window(["a"], capacity=4, n_classes=2)
    again.load(tmp_path / "w.parquet")
    frame = again.frame()
    assert frame[PREDICTION_COLUMN].tolist() == [1, 1, 0, 0]
    assert np.allclose(frame[window.probability_columns].iloc[:2].to_numpy(), [[0.2, 0.8], [0.4, 0.6]])
    assert frame[window.probability_columns].iloc[2:].isna().all().all()


def test_logged_responses_carry_their_probabilities() -> None:
    v1 = {"predictions": ["a", "b"], "probabilities": [[0.7, 0.3], [0.1, 0.9]]}
    assert np.allclose(response_probabilities(v1, 2, 2), [[0.7, 0.3], [0.1, 0.9]])  # type: ignore[arg-type]
    v2 = {"outputs": [{"name": "probabilities", "shape": [1, 2], "data": [0.2, 0.8]}]}
    assert np.allclose(response_probabilities(v2, 2, 1), [[0.2, 0.8]])  # type: ignore[arg-type]
    assert response_probabilities({"predictions": [0]}, 2, 1) is None
    for bad in ({"probabilities": [[0.5]]}, {"probabilities": [[2.0, -1.0]]}, {"probabilities": "x"}):
        with pytest.raises(BadEvent, match="probabilities"):
            response_probabilities(bad, 2, 1)
