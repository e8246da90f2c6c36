"""Regression task units: the inference rule, splits, metrics and gate, resolve-time refusals, the
trainer's objective and the model directory's target scaling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlplat.errors import SpecError, UsageError
from mlplat.tasks import MAX_INFERRED_CLASSES, infer_task


@pytest.mark.parametrize(("values", "task"), [
    (["a", "b", "a"], "classification"),
    ([True, False, True], "classification"),
    ([0, 1, 1, 0], "classification"),
    ([1.0, 2.0, 3.0], "classification"),  # integer-valued floats: class codes
    (list(range(MAX_INFERRED_CLASSES)), "classification"),
    (list(range(MAX_INFERRED_CLASSES + 1)), "regression"),  # many distinct integers: a count or an amount
    ([0.5, 1.0, 2.0], "regression"),  # a non-integer value
])
def test_task_inference_rule(values: list[Any], task: str) -> None:
    assert infer_task(pd.Series(values)) == task


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": 3 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=n)})


def test_a_continuous_label_splits_as_regression_without_stratification() -> None:
    from mlplat.data import split_frame

    splits = split_frame(_frame(), "y", "r", 0.2, 0.2, seed=1, stratify=True)  # stratify asked, not possible
    assert splits.info.task == "regression" and splits.info.classes == []
    assert splits.train.labels.dtype == np.float64 and len(np.unique(splits.train.labels)) == len(splits.train)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 300


def test_declared_task_overrides_and_a_string_regression_label_is_refused() -> None:
    from mlplat.data import split_frame

    frame = _frame()
    frame["y"] = np.round(frame["y"]).clip(-2, 2)  # 5 integer values: inferred as a classification
    assert split_frame(frame, "y", "r", 0.2, 0.2, seed=1).info.task == "classification"
    assert split_frame(frame, "y", "r", 0.2, 0.2, seed=1, task="regression").info.task == "regression"
    frame["y"] = frame["y"].map(str)
    with pytest.raises(UsageError, match="regression needs a numeric label"):
        split_frame(frame, "y", "r", 0.2, 0.2, seed=1, task="regression")


def test_splits_round_trip_keeps_float_targets(tmp_path: Path) -> None:
    from mlplat.data import Splits, split_frame

    splits = split_frame(_frame(), "y", "r", 0.2, 0.2, seed=1)
    splits.save(tmp_path)
    again = Splits.load(tmp_path)
    assert again.info.task == "regression"
    assert np.array_equal(again.test.labels, splits.test.labels)


def test_regression_metrics_and_gate() -> None:
    from mlplat.evaluation import gate_failures, regression_metrics
    from mlplat.spec import EvaluateGate

    y = np.array([1.0, 2.0, 3.0, 4.0])
    metrics = regression_metrics(y, y + np.array([1.0, -1.0, 1.0, -1.0]))
    assert metrics["rmse"] == pytest.approx(1.0) and metrics["mae"] == pytest.approx(1.0)
    assert metrics["r2"] == pytest.approx(1 - 4 / 5)
    assert gate_failures(metrics, EvaluateGate(max_rmse=1.5, min_r2=0.1)) == []
    failures = gate_failures(metrics, EvaluateGate(max_rmse=0.5, min_r2=0.5))
    assert failures == ["test rmse 1.0000 > max_rmse 0.5", "test r2 0.2000 < min_r2 0.5"]


def _spec(**overrides: Any) -> dict[str, Any]:
    steps: dict[str, Any] = {"train": {"plugin": "mlp", "params": {"epochs": 2}}}
    steps.update(overrides)
    return {"name": "r", "dataset": {"source": "sklearn:diabetes"}, "steps": steps}


@pytest.mark.parametrize(("steps", "path", "message"), [
    ({"augment": {"plugin": "random_oversample"}}, "steps.augment.0.plugin", "works for classification only"),
    ({"augment": [{"plugin": "label_noise"}], "validate": {"plugin": "tabular"}}, "steps.augment.0.plugin", "classification only"),
    ({"evaluate": {"params": {"min_accuracy": 0.9}}}, "steps.evaluate.params.min_accuracy", "max_rmse, max_mae, min_r2"),
    ({"train": {"plugin": "mlp", "params": {"loss": "cross_entropy"}}}, "steps.train.params.loss", "classification option"),
    ({"train": {"plugin": "mlp", "params": {"early_stopping_metric": "val_accuracy"}}}, "steps.train.params.early_stopping_metric",
     "classification option"),
    ({"validate": {"plugin": "tabular", "params": {"severity": {"imbalance": "fail"}}}},
     "steps.validate.params.severity.imbalance", "regression skips it"),
    ({"tune": {"plugin": "random", "search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}},
     "steps.tune.metric", "val_rmse (minimize)"),
])
def test_resolve_refuses_classification_parts_for_a_regression(steps: dict[str, Any], path: str, message: str) -> None:
    from mlplat.spec import parse_spec, resolve

    with pytest.raises(SpecError) as caught:
        resolve(parse_spec(_spec(**steps)))
    assert caught.value.exit_code == 2
    assert any(p == path and message in m for p, m in caught.value.problems), caught.value.problems


def test_regression_thresholds_refused_for_a_classification_and_tune_directions() -> None:
    from mlplat.spec import parse_spec, resolve, tune_direction

    spec = {**_spec(evaluate={"params": {"max_rmse": 3}}), "dataset": {"source": "sklearn:iris"}}
    with pytest.raises(SpecError, match="rmse is a regression metric"):
        resolve(parse_spec(spec))
    space = {"lr": {"type": "float", "low": 0.001, "high": 0.01}}
    for metric, direction in (("val_rmse", "minimize"), ("val_mae", "minimize"), ("val_r2", "maximize")):
        resolved = resolve(parse_spec(_spec(tune={"plugin": "random", "metric": metric, "search_space": space})))
        assert tune_direction(resolved, "regression") == direction


def test_an_inferred_task_is_checked_at_ingest(tmp_path: Path) -> None:
    from mlplat.spec import parse_spec, resolve
    from mlplat.steps import ingest

    _frame().to_csv(tmp_path / "data.csv", index=False)
    spec = resolve(parse_spec({"name": "r", "dataset": {"source": "data.csv", "label": "y"},
                               "steps": {"train": {"plugin": "mlp"}, "evaluate": {"params": {"min_f1": 0.5}}}}))
    with pytest.raises(SpecError) as caught:  # resolve could not know the task; ingest refuses before training
        ingest(spec, tmp_path, tmp_path / "out")
    assert caught.value.problems[0][0] == "steps.evaluate.params.min_f1"
    assert not (tmp_path / "out").exists()


def test_trainer_learns_a_linear_target_and_the_model_destandardizes(tmp_path: Path) -> None:
    from mlplat.data import split_frame
    from mlplat.modeldir import LoadedModel
    from mlplat.spec import parse_spec, resolve
    from mlplat.steps import train

    frame = _frame(600)
    frame["y"] = 1000 + 50 * frame["y"]  # far from standardized: the model must de-standardize
    splits = split_frame(frame, "y", "r", 0.2, 0.2, seed=0)
    splits.save(tmp_path / "data")
    for loss in ("mse", "huber"):
        spec = resolve(parse_spec({"name": "r", "dataset": {"source": "x.csv", "label": "y", "task": "regression"},
                                   "steps": {"train": {"plugin": "mlp", "params": {
                                       "epochs": 60, "lr": 0.01, "hidden": [32], "dropout": 0.0, "loss": loss,
                                       "checkpoint_every": 0, "early_stopping_patience": None}}}}))
        model = LoadedModel.load(train(spec, tmp_path / "data", tmp_path / loss))
        history = json.loads((tmp_path / loss / "metrics.json").read_text())["history"]
        assert {"val_rmse", "val_mae", "val_r2"} <= set(history[-1]) and "train_accuracy" not in history[-1]
        X = frame[["a", "b", "c"]].to_numpy()
        errors = model.predict_values(X) - frame["y"].to_numpy()
        assert np.sqrt(np.mean(errors**2)) < 0.2 * frame["y"].std()  # R² above 0.96
        assert model.manifest.target is not None  # fitted on the training rows, saved as JSON
        assert model.manifest.target.mean == pytest.approx(splits.train.labels.mean())
        assert model.manifest.target.scale == pytest.approx(splits.train.labels.std())
        with pytest.raises(UsageError, match="is a regression"):
            model.predict_proba(X)


def test_a_manifest_without_task_loads_as_classification() -> None:
    from mlplat.manifest import ModelManifest

    data = {"format_version": 2, "name": "m", "label": "y", "features": [{"name": "a"}], "classes": ["0", "1"],
            "preprocessing": {"kind": "standardize", "mean": [0.0], "scale": [1.0]}, "trainer": {"plugin": "mlp"},
            "architecture": {}, "seed": 0, "created_at": 0.0}
    manifest = ModelManifest.from_json(json.dumps(data))
    assert manifest.task == "classification" and manifest.target is None
