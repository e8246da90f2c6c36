"""A user's own mixed-type CSV (ids, string categories, a boolean, 5 % missing cells, a string label)
through `mlplat run` (validate, train, evaluate, explain, publish), then served in-process: a V1 row
with a string category, an unseen category and a null gets a prediction, and both are counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

N_ROWS = 800


def mixed_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    color = rng.choice(["red", "green", "blue"], n)
    city = rng.choice([f"city-{i}" for i in range(40)], n)  # more codes than one-hot allows: an embedding
    member = rng.choice(["yes", "no"], n)
    score = (age - 40) / 10 + 2.0 * (color == "red") + 1.5 * (member == "yes") \
        + np.array([int(c.split("-")[1]) % 3 for c in city]) + rng.normal(0, 0.3, n)
    frame = pd.DataFrame({"customer": np.arange(5000, 5000 + n), "age": age.round(1), "color": color, "city": city,
                          "member": member, "outcome": np.where(score > np.median(score), "churn", "stay")})
    for column in ("age", "color", "city", "member"):
        frame.loc[rng.random(n) < 0.05, column] = None  # 5 % missing completely at random
    return frame


def write_spec(tmp_path: Path, frame: pd.DataFrame, **dataset: object) -> Path:
    frame.to_csv(tmp_path / "customers.csv", index=False)
    spec = {"name": "customers", "seed": 0,
            "dataset": {"source": "customers.csv", "label": "outcome", "id": "customer", **dataset},
            "steps": {"validate": {"plugin": "tabular", "params": {"plot_columns": 2}},
                      "train": {"plugin": "mlp", "params": {"hidden": [32], "epochs": 40, "checkpoint_every": 0}},
                      "evaluate": {"params": {"min_accuracy": 0.75}},
                      "explain": {"plugin": "kernel_shap", "params": {"background_clusters": 5, "nsamples": 64, "importance_rows": 10}}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def mlplat(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "MLPLAT_RUNS_DIR": str(tmp_path / "runs")}
    return subprocess.run([sys.executable, "-m", "mlplat", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("columns")
    run = mlplat(tmp_path, "run", str(write_spec(tmp_path, mixed_frame())))
    assert run.returncode == 0, run.stderr + run.stdout
    return tmp_path / "runs" / "latest"


@pytest.mark.slow
def test_mixed_csv_trains_with_in_model_encoders_and_user_ids(published: Path) -> None:
    manifest = json.loads((published / "model" / "model.json").read_text())
    kinds = {f["name"]: f["kind"] for f in manifest["features"]}
    assert kinds == {"age": "numeric", "color": "categorical", "city": "categorical", "member": "boolean"}
    assert "customer" not in kinds  # the id column is a role, not a feature
    colors = next(f for f in manifest["features"] if f["name"] == "color")["categories"]
    assert sorted(colors) == ["blue", "green", "red"]
    encoder = manifest["architecture"]["encoder"]
    assert encoder["cardinalities"] == [4, 41]  # vocabulary + unknown bucket: one-hot for color, embedding for city
    assert manifest["preprocessing"]["indicators"] == [0, 1, 2, 3]  # every column had missing training values
    assert manifest["metrics"]["test"]["accuracy"] >= 0.75 and manifest["explainer"]["plugin"] == "kernel_shap"
    findings = json.loads((published / "steps" / "validate" / "findings.json").read_text())
    ids = findings["label_noise"]["row_ids"]
    assert ids and all(5000 <= i < 5000 + N_ROWS for i in ids)  # the user's ids, not file positions
    assert json.loads((published / "metrics.json").read_text())["evaluation_gate"]["passed"]


@pytest.mark.slow
def test_served_model_answers_string_categories_unknowns_and_nulls(published: Path) -> None:
    from mlplat.modeldir import LoadedModel
    from mlplat.monitoring.monitor import MonitorSettings
    from mlplat.serving.predictor import ServingOptions
    from mlplat.serving.server import build_app

    model = LoadedModel.load(published / "model")
    served = build_app(published / "model", ServingOptions(), 1 << 20, MonitorSettings(interval_s=3600))

    def counted(metric: str, feature: str) -> float:
        return REGISTRY.get_sample_value(metric, {"model": model.name, "feature": feature}) or 0.0

    unknown_before, imputed_before = counted("mlplat_unknown_categories_total", "city"), counted("mlplat_imputed_values_total", "age")
    rows = [{"age": None, "color": "red", "city": "city-7", "member": "yes"},
            {"age": 30.0, "color": "blue", "city": "atlantis", "member": False}]
    with TestClient(served.app, raise_server_exceptions=False) as client:
        reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": rows})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert set(body["predictions"]) <= {"churn", "stay"} and len(body["predictions"]) == 2
        expected = model.predict_proba(model.encode(pd.DataFrame(rows).astype({"member": object})))
        np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
        assert counted("mlplat_unknown_categories_total", "city") == unknown_before + 1
        assert counted("mlplat_imputed_values_total", "age") == imputed_before + 1
        v2 = {"inputs": [{"name": "age", "shape": [2], "datatype": "FP32", "data": [51.0, 22.0]},
                         {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "purple"]},
                         {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["city-1", "city-2"]},
                         {"name": "member", "shape": [2], "datatype": "BYTES", "data": ["no", "yes"]}]}
        reply = client.post(f"/v2/models/{model.name}/infer", json=v2)
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        assert outputs["probabilities"]["shape"] == [2, 2]
        bad = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{**rows[0], "color": 3.5}]})
        assert bad.status_code == 400 and "expected a category" in bad.json()["error"]


@pytest.mark.slow
def test_text_in_a_numeric_column_fails_the_gate_naming_column_row_and_value(tmp_path: Path) -> None:
    frame = mixed_frame(300, seed=1)
    frame["age"] = frame["age"].astype(object)
    frame.loc[7, "age"] = "n/a"  # not in na_values: never silently NaN
    run = mlplat(tmp_path, "run", str(write_spec(tmp_path, frame)))
    assert run.returncode == 1, run.stderr + run.stdout
    assert "schema.parse" in run.stderr + run.stdout
    report = json.loads(next((tmp_path / "runs").glob("customers-*/steps/validate/report.json")).read_text())
    (check,) = [c for c in report["checks"] if c["check"] == "schema.parse"]
    assert check["column"] == "age" and check["observed"] == [{"row_id": 5007, "value": "n/a"}]
    assert not (tmp_path / "runs" / "latest").exists()
    listed = write_spec(tmp_path, frame, na_values=["", "n/a"])  # declared as a missing-value marker, the run passes the gate
    again = mlplat(tmp_path, "run", str(listed))
    assert again.returncode == 0, again.stderr + again.stdout
