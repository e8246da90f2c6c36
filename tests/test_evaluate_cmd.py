"""`mlplat evaluate MODEL DATA`: any published model on any labeled file, with the evaluate step's own metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlplat.data import Splits
from s3_server import mlplat


def run_test_rows_as_csv(trained_run, path: Path) -> Path:
    """The run's own test split, written as a user's file: feature columns and the label by class name."""
    splits = Splits.load(trained_run.run.dir / "steps" / "ingest")
    frame = splits.test.features.copy()
    frame[splits.info.label] = [splits.info.classes[i] for i in splits.test.labels]
    frame.to_csv(path, index=False)
    return path


def test_evaluate_on_the_test_split_file_reproduces_the_evaluate_step(trained_run, tmp_path: Path) -> None:
    data = run_test_rows_as_csv(trained_run, tmp_path / "test.csv")
    before = trained_run.model_dir.joinpath("model.json").read_text()
    out = tmp_path / "eval"
    runs = str(trained_run.run.dir.parent)
    assert mlplat("evaluate", trained_run.run.id, str(data), "--out", str(out), "--runs-dir", runs) == 0
    step = json.loads((trained_run.run.dir / "steps" / "evaluate" / "metrics.json").read_text())
    found = json.loads((out / "metrics.json").read_text())
    assert found["test"]["confusion_matrix"] == step["test"]["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "f1", "roc_auc", "n"):
        assert found["test"][key] == pytest.approx(step["test"][key], abs=1e-9)
    assert found["gate"] == {"passed": True, "failures": []}
    assert found["data"]["kind"] == "sha256"
    assert "## Evaluation gate" in (out / "report.md").read_text()
    assert (trained_run.run.dir / "steps" / "evaluate" / "report.md").read_text().startswith("## Evaluation gate")
    assert trained_run.model_dir.joinpath("model.json").read_text() == before  # a published model is never amended
    # the same model by path and as `latest`, on a subset: scored again, not copied
    subset = pd.read_csv(data).iloc[:40]
    subset.to_csv(tmp_path / "subset.csv", index=False)
    for ref in (str(trained_run.model_dir), "latest"):
        assert mlplat("evaluate", ref, str(tmp_path / "subset.csv"), "--out", str(tmp_path / "sub"), "--runs-dir", runs) == 0
        assert json.loads((tmp_path / "sub" / "metrics.json").read_text())["test"]["n"] == 40


def test_missing_columns_exit_2_naming_them(trained_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_test_rows_as_csv(trained_run, tmp_path / "test.csv")
    pd.read_csv(data).drop(columns=["mean radius", "target"]).to_csv(tmp_path / "partial.csv", index=False)
    assert mlplat("evaluate", str(trained_run.model_dir), str(tmp_path / "partial.csv"), "--out", str(tmp_path / "o")) == 2
    assert "partial.csv lacks the model's columns: mean radius, target" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_unknown_label_values_exit_2(trained_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_test_rows_as_csv(trained_run, tmp_path / "test.csv")
    pd.read_csv(data).assign(target="dunno").to_csv(tmp_path / "bad.csv", index=False)
    assert mlplat("evaluate", str(trained_run.model_dir), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")) == 2
    assert "values that are no class of the model: dunno" in capsys.readouterr().err


def test_predictions_csv_names_rows_by_the_id_column(trained_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlplat.modeldir import LoadedModel

    data = run_test_rows_as_csv(trained_run, tmp_path / "test.csv")
    frame = pd.read_csv(data)
    frame.insert(0, "patient", [f"P-{i:04d}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "ids.csv", index=False)
    out = tmp_path / "eval"
    assert mlplat("evaluate", str(trained_run.model_dir), str(tmp_path / "ids.csv"), "--out", str(out), "--id", "patient") == 0
    rows = pd.read_csv(out / "predictions.csv")
    assert list(rows.columns) == ["row_id", "label", "predicted"] and list(rows["row_id"]) == list(frame["patient"])
    assert list(rows["label"]) == list(frame["target"].astype(str))
    model = LoadedModel.load(trained_run.model_dir)
    expected = [model.class_names[i] for i in model.predict_proba(model.encode(frame[model.feature_names])).argmax(1)]
    assert list(rows["predicted"].astype(str)) == expected
    correct = (rows["label"].astype(str) == rows["predicted"].astype(str)).mean()
    assert correct == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["accuracy"])
    frame.assign(patient="same").to_csv(tmp_path / "dup.csv", index=False)
    assert mlplat("evaluate", str(trained_run.model_dir), str(tmp_path / "dup.csv"), "--out", str(tmp_path / "o"), "--id", "patient") == 2
    assert "--id: column 'patient' has" in capsys.readouterr().err
