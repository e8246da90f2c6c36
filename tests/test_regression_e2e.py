"""A regression through the real CLI and the real server: sklearn diabetes → validate, train (MSE on
the standardized target), evaluate (RMSE/MAE/R², gated), explain, drift, publish → serve V1 and V2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from conftest import REPO
from serving_server import running_server

SPEC: dict[str, Any] = {
    "name": "diabetes-e2e",
    "seed": 3,
    "dataset": {"source": "sklearn:diabetes"},  # the task is inferred: many distinct numeric values
    "steps": {
        "validate": {"plugin": "tabular"},
        "train": {"plugin": "mlp", "params": {"hidden": [32], "epochs": 40, "lr": 0.01, "batch_size": 64,
                                              "cv_folds": 2, "checkpoint_every": 0, "early_stopping_patience": None}},
        "evaluate": {"params": {"max_rmse": 80, "min_r2": 0.2}},
        "explain": {"plugin": "integrated_gradients", "params": {"importance_rows": 20}},
        "drift": {"plugin": "evidently"},
    },
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("regression")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    env = {**os.environ, "COLUMNS": "200", "MLPLAT_RUNS_DIR": str(tmp / "runs")}
    run = subprocess.run([sys.executable, "-m", "mlplat", "run", str(spec)], capture_output=True, text=True, env=env,
                         timeout=400)
    assert run.returncode == 0, run.stderr + run.stdout
    return tmp / "runs" / "latest"


def test_run_trains_evaluates_and_publishes_a_regression(run_dir: Path) -> None:
    from mlplat.data import Splits
    from mlplat.modeldir import LoadedModel

    manifest = json.loads((run_dir / "model" / "model.json").read_text())
    assert manifest["task"] == "regression" and manifest["classes"] == []
    assert manifest["target"]["scale"] > 1  # diabetes progression spans ~25..346: the target was standardized
    test = manifest["metrics"]["test"]
    assert set(test) >= {"rmse", "mae", "r2"} and test["rmse"] <= 80 and test["r2"] >= 0.2
    assert set(manifest["cv"]["bands"]) >= {"val_rmse", "val_r2", "gap_rmse"}
    assert manifest["global_importance"] and max(manifest["global_importance"].values()) > 0

    # the model's predictions are in the label's units and score as the evaluate step reported
    loaded = LoadedModel.load(run_dir / "model")
    splits = Splits.load(run_dir / "steps" / "ingest")
    predicted = loaded.predict_values(splits.test.features[loaded.feature_names].to_numpy())
    rmse = float(np.sqrt(np.mean((predicted - splits.test.labels) ** 2)))
    assert rmse == pytest.approx(test["rmse"], rel=1e-5)
    assert splits.info.task == "regression" and splits.train.labels.dtype == np.float64


def test_server_answers_numbers_v1_and_an_fp32_tensor_v2(run_dir: Path) -> None:
    from mlplat.data import Splits
    from mlplat.modeldir import LoadedModel

    loaded = LoadedModel.load(run_dir / "model")
    rows = Splits.load(run_dir / "steps" / "ingest").test.features[loaded.feature_names].to_numpy()[:4]
    expected = loaded.predict_values(rows)
    with running_server(run_dir / "model") as base, httpx.Client(base_url=base, timeout=60) as client:
        v1 = client.post(f"/v1/models/{loaded.name}:predict", json={"instances": rows.tolist()})
        assert v1.status_code == 200, v1.text
        assert np.allclose(v1.json()["predictions"], expected, rtol=1e-4)
        assert all(isinstance(v, float) for v in v1.json()["predictions"])
        v2 = client.post(f"/v2/models/{loaded.name}/infer", json={"inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]})
        assert v2.status_code == 200, v2.text
        (output,) = v2.json()["outputs"]
        assert output["datatype"] == "FP32" and output["shape"] == [4]
        assert np.allclose(output["data"], expected, rtol=1e-4)
        explained = client.post(f"/v1/models/{loaded.name}:explain", json={"instances": rows[:2].tolist()})
        assert explained.status_code == 200, explained.text
        first = explained.json()["explanations"][0]
        assert first["prediction"] == pytest.approx(expected[0], rel=1e-4)
        # integrated gradients: the attributions add up to prediction - baseline prediction
        assert sum(first["attributions"].values()) == pytest.approx(first["prediction"] - first["base_value"], abs=1.0)


def test_classification_plugins_are_refused_for_a_regression_spec(tmp_path: Path) -> None:
    spec = {**SPEC, "steps": {**SPEC["steps"], "augment": {"plugin": "smote"},
                              "evaluate": {"params": {"min_accuracy": 0.9}}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = subprocess.run([sys.executable, "-m", "mlplat", "run", str(path)], capture_output=True, text=True,
                         env={**os.environ, "MLPLAT_RUNS_DIR": str(tmp_path / "runs")}, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "steps.augment.0.plugin" in run.stderr and "'smote' works for classification only" in run.stderr
    assert "steps.evaluate.params.min_accuracy" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/model"))


def test_pipeline_diabetes_regression_spec_resolves_as_regression() -> None:
    from mlplat.spec import declared_task, load_spec, resolve

    spec = resolve(load_spec(REPO / "pipelines" / "diabetes_regression.yaml"))
    assert declared_task(spec) == "regression"
    assert spec.steps.train.params["loss"] == "mse"


def test_monitor_scores_delayed_values_in_rmse_and_sees_prediction_drift(run_dir: Path) -> None:
    from mlplat.data import Splits
    from mlplat.errors import BadFeedback
    from mlplat.modeldir import LoadedModel
    from mlplat.monitoring.monitor import Monitor, MonitorSettings

    model_dir = run_dir / "model"
    loaded = LoadedModel.load(model_dir)
    test = Splits.load(run_dir / "steps" / "ingest").test
    rows = test.features[loaded.feature_names].to_numpy()
    monitor = Monitor(model_dir, MonitorSettings(min_labels=10, min_new_rows=1))
    predicted = loaded.predict_values(rows)
    keys = [f"r{i}" for i in range(len(rows))]
    monitor.window.record(rows.astype(np.float32), predicted, keys)
    assert monitor.feedback(keys, [float(v) for v in test.labels]).accepted == len(rows)
    with pytest.raises(BadFeedback, match="not a finite number"):
        monitor.feedback(keys[:1], ["high"])
    summary = monitor.evaluate()
    assert summary["live"]["rmse"] == pytest.approx(loaded.manifest.metrics.test["rmse"], rel=1e-4)
    assert "rmse" in summary["generalization_gap"] and "accuracy" not in summary["live"]

    # every prediction shifted far up: the predicted-value distribution drifts
    shifted = Monitor(model_dir, MonitorSettings(min_labels=10, min_new_rows=1))
    big = np.repeat(rows, 3, axis=0).astype(np.float32)
    shifted.window.record(big, loaded.predict_values(big) + 3 * loaded.target.scale, [f"s{i}" for i in range(len(big))])
    result = shifted.detector.detect(shifted.reference_state, shifted.window.frame()[[*loaded.feature_names, "__prediction__"]])
    assert result.prediction is not None and result.prediction.drifted
    assert result.prediction.effect_size > 1


def test_mlplat_evaluate_scores_a_regression_file_as_the_evaluate_step(run_dir: Path, tmp_path: Path) -> None:
    from mlplat.data import Splits

    splits = Splits.load(run_dir / "steps" / "ingest")
    data = splits.test.features.assign(**{splits.info.label: splits.test.labels})
    data.to_csv(tmp_path / "test.csv", index=False)
    env = {**os.environ, "COLUMNS": "200", "MLPLAT_RUNS_DIR": str(run_dir.parent)}
    out = tmp_path / "eval"
    scored = subprocess.run([sys.executable, "-m", "mlplat", "evaluate", str(run_dir / "model"), str(tmp_path / "test.csv"),
                             "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert scored.returncode == 0, scored.stderr + scored.stdout
    step = json.loads((run_dir / "steps" / "evaluate" / "metrics.json").read_text())["test"]
    found = json.loads((out / "metrics.json").read_text())
    for key in ("rmse", "mae", "r2"):
        assert found["test"][key] == pytest.approx(step[key], rel=1e-5)
    assert found["test"]["n"] == len(splits.test) and "accuracy" not in found["test"]

    # a target that is no number is refused, naming the column and the row
    data.astype({splits.info.label: object}).assign(**{splits.info.label: "high"}).iloc[:3].to_csv(tmp_path / "bad.csv", index=False)
    refused = subprocess.run([sys.executable, "-m", "mlplat", "evaluate", str(run_dir / "model"), str(tmp_path / "bad.csv"),
                              "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "needs a finite number in every row" in refused.stderr + refused.stdout


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(target=None), "target: a regression model needs its target scaling"),
    (lambda m: m["target"].update(scale=0.0), "target: mean must be finite and scale finite and positive"),
    (lambda m: m.update(classes=["low", "high"]), "classes: a regression model has no classes"),
])
def test_integrity_refuses_a_regression_manifest_that_does_not_fit_its_task(run_dir: Path, tmp_path: Path,
                                                                          change: Any, message: str) -> None:
    import shutil

    from mlplat.errors import ModelDirError
    from mlplat.modeldir import LoadedModel

    model = tmp_path / "model"
    shutil.copytree(run_dir / "model", model)
    manifest = json.loads((model / "model.json").read_text())
    change(manifest)
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match=message):
        LoadedModel.load(model)


def test_monitor_service_takes_a_regressions_numeric_feedback_once(run_dir: Path) -> None:
    from fastapi.testclient import TestClient
    from mlplat.modeldir import LoadedModel
    from mlplat.monitoring.inputs import InputPolicy
    from mlplat.monitoring.monitor import Monitor, MonitorSettings
    from mlplat.monitoring.service import create_app

    monitor = Monitor(run_dir / "model", MonitorSettings(min_labels=1, min_new_rows=1))
    loaded = LoadedModel.load(run_dir / "model")
    rows = np.zeros((2, len(loaded.feature_names)), np.float32)
    monitor.window.record(rows, loaded.predict_values(rows), ["req"])
    client = TestClient(create_app({monitor.name: monitor}, InputPolicy(token="t")), headers={"authorization": "Bearer t"})
    url = f"/v1/models/{monitor.name}/feedback"
    ok = client.post(url, json={"request_id": "req", "labels": [151.0, 75]})
    assert ok.status_code == 200 and ok.json() == {"accepted": 2, "unknown_ids": []}, ok.text
    assert monitor.window.labels_received == 2 and list(monitor.window.frame()["__label__"]) == [151.0, 75.0]
    again = client.post(url, json={"ids": ["req/0"], "labels": [151.0]})  # the same label again: counted once
    assert again.status_code == 200 and monitor.window.labels_received == 2
    assert client.post(url, json={"ids": ["req/0"], "labels": [9.0]}).status_code == 409  # another label: a conflict
    for body in ({"ids": ["req/1"], "labels": ["high"]}, {"ids": ["req/1"], "label_indices": [0]}):
        refused = client.post(url, json=body)
        assert refused.status_code == 422, refused.text
