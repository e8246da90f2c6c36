"""Issue 13's "done when", from an S3 URI: a mixed-type CSV (text ids, categories, a boolean, missing
cells, a string label) and a regression CSV, each uploaded to moto's S3 server on 127.0.0.1 and run with
`mlplat run` (validate, train, evaluate, explain, publish), then served in-process: a V1 row with a
string category and a null gets a prediction. The regression model is published to the same S3 server
and served from there."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import mlplat, moto_bucket
from test_columns_e2e import mixed_frame

BUCKET = "tabular"
N_ROWS = 600


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with moto_bucket(BUCKET) as client:
        yield client


def customers() -> pd.DataFrame:
    frame = mixed_frame(N_ROWS, seed=4)
    frame["customer"] = [f"C-{i:05d}" for i in range(N_ROWS)]  # text ids, as a CRM exports them
    return frame


def houses(n: int = N_ROWS, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 200, n)
    district = rng.choice(["north", "south", "east", "west"], n)
    garden = rng.choice([True, False], n)
    price = 3.0 * area + np.select([district == "north", district == "south"], [120.0, -60.0], 0.0) \
        + 40.0 * garden + rng.normal(0, 10, n)
    frame = pd.DataFrame({"listing": [f"L{i}" for i in range(n)], "area": area.round(1), "district": district,
                          "garden": garden, "price": price.round(2)})
    for column in ("area", "district"):
        frame.loc[rng.random(n) < 0.04, column] = None
    return frame


def write_spec(tmp_path: Path, name: str, dataset: dict[str, Any], evaluate: dict[str, Any]) -> Path:
    spec = {"name": name, "seed": 0, "dataset": dataset,
            "steps": {"validate": {"plugin": "tabular", "params": {"plot_columns": 1}},
                      "train": {"plugin": "mlp", "params": {"hidden": [32], "epochs": 25, "lr": 0.01, "checkpoint_every": 0,
                                                            "early_stopping_patience": None}},
                      "evaluate": {"params": evaluate},
                      "explain": {"plugin": "kernel_shap", "params": {"background_clusters": 4, "nsamples": 32,
                                                                      "importance_rows": 5}}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def upload(s3: Any, key: str, frame: pd.DataFrame) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=frame.to_csv(index=False).encode())
    return f"s3://{BUCKET}/{key}"


def served(model_dir: Path) -> Any:
    from mlplat.monitoring.monitor import MonitorSettings
    from mlplat.serving.predictor import ServingOptions
    from mlplat.serving.server import build_app

    return build_app(model_dir, ServingOptions(), 1 << 20, MonitorSettings(interval_s=3600)).app


@pytest.mark.slow
def test_mixed_csv_from_s3_runs_end_to_end_with_text_ids(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = customers()
    source = upload(s3, "crm/customers.csv", frame)
    spec = write_spec(tmp_path, "customers-s3", {"source": source, "label": "outcome", "id": "customer"},
                      {"min_accuracy": 0.7})
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 0, capsys.readouterr()
    run = (tmp_path / "runs" / "latest").resolve()
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["source"]["uri"] == source and record["data"]["source"]["kind"] == "etag"
    manifest = json.loads((run / "model" / "model.json").read_text())
    assert {f["name"]: f["kind"] for f in manifest["features"]} == {
        "age": "numeric", "color": "categorical", "city": "categorical", "member": "boolean"}
    assert manifest["explainer"]["plugin"] == "kernel_shap" and manifest["metrics"]["test"]["accuracy"] >= 0.7
    findings = json.loads((run / "steps" / "validate" / "findings.json").read_text())
    known = set(frame["customer"])
    assert findings["label_noise"]["row_ids"] and set(findings["label_noise"]["row_ids"]) <= known  # the user's text ids
    predictions = pd.read_csv(run / "steps" / "evaluate" / "predictions.csv")
    scored = json.loads((run / "steps" / "evaluate" / "metrics.json").read_text())["test"]
    assert len(predictions) == scored["n"] and set(predictions["row_id"]) <= known
    truth = frame.set_index("customer")["outcome"]
    assert (predictions["label"] == truth[predictions["row_id"]].to_numpy()).all()  # each id's own label

    rows = [{"age": None, "color": "green", "city": "city-3", "member": "no"}]
    with TestClient(served(run / "model"), raise_server_exceptions=False) as client:
        reply = client.post(f"/v1/models/{manifest['name']}:predict", json={"instances": rows})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0] in {"churn", "stay"}


@pytest.mark.slow
def test_regression_from_s3_runs_end_to_end_and_serves_from_the_s3_store(
        s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlplat.modeldir import LoadedModel, resolve_model

    frame = houses()
    source = upload(s3, "homes/train.csv", frame.iloc[:480])
    test_source = upload(s3, "homes/test.csv", frame.iloc[480:])
    spec = write_spec(tmp_path, "houses-s3", {"source": source, "test_source": test_source, "label": "price", "id": "listing"},
                      {"min_r2": 0.8})
    store = f"s3://{BUCKET}/models"
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs"), "--publish-to", store) == 0, capsys.readouterr()
    run = (tmp_path / "runs" / "latest").resolve()
    manifest = json.loads((run / "model" / "model.json").read_text())
    assert manifest["task"] == "regression" and manifest["metrics"]["test"]["r2"] >= 0.8
    predictions = pd.read_csv(run / "steps" / "evaluate" / "predictions.csv")  # the held-out S3 file, all of it
    assert list(predictions["row_id"]) == list(frame["listing"].iloc[480:])

    model_dir = Path(resolve_model(store, None).path)  # downloaded from the S3 store, as KServe would
    model = LoadedModel.load(model_dir)
    rows = [{"area": None, "district": "north", "garden": True}, {"area": 120.0, "district": "nowhere", "garden": False}]
    with TestClient(served(model_dir), raise_server_exceptions=False) as client:
        reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": rows})
    assert reply.status_code == 200, reply.text
    values = reply.json()["predictions"]
    assert len(values) == 2 and all(isinstance(v, float) for v in values)
    np.testing.assert_allclose(values, model.predict_values(model.encode(pd.DataFrame(rows).astype({"garden": object}))),
                               rtol=1e-5)
    assert 150 < values[1] < 500  # 120 m² with no garden in an unknown district: about 3 * 120
