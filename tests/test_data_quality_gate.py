"""The validation gate: a corrupted dataset stops the run, the report is written, nothing is published."""

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
from mlplat.errors import GateFailed
from mlplat.runner import run_pipeline
from mlplat.runs import RunStore
from mlplat.spec import parse_spec, resolve

REPO = Path(__file__).resolve().parents[1]


def clean_csv_frame() -> pd.DataFrame:
    import sklearn.datasets

    frame = sklearn.datasets.load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 30]]
    return frame.rename(columns=lambda c: c.replace(" ", "_"))


@pytest.fixture(scope="module")
def expected_schema(tmp_path_factory) -> Path:
    """The schema a good run would have saved with its model (TFDV's curated schema)."""
    from mlplat.data import split_frame
    from mlplat_plugins.tabular_validation.schema import infer_schema

    splits = split_frame(clean_csv_frame(), "target", "x", 0.2, 0.2, seed=0)
    path = tmp_path_factory.mktemp("schema") / "schema.json"
    path.write_text(json.dumps(infer_schema(splits.train.features, splits.info.classes, splits.train.labels)))
    return path


def corrupt(kind: str) -> pd.DataFrame:
    frame = clean_csv_frame()
    if kind == "wrong_types":
        frame["mean_radius"] = frame["mean_radius"].astype(object)
        frame.loc[::7, "mean_radius"] = "twelve"  # not an NA marker: read_csv keeps the column as strings
    elif kind == "missing_column":
        frame = frame.drop(columns=["mean_texture"])
    elif kind == "shifted_ranges":
        frame["mean_area"] = frame["mean_area"] * 100.0
    return frame


def spec_for(tmp_path: Path, frame: pd.DataFrame, schema: Path) -> dict:
    frame.to_csv(tmp_path / "data.csv", index=False)
    return {
        "name": "gate",
        "seed": 0,
        "dataset": {"source": str(tmp_path / "data.csv"), "label": "target"},
        "steps": {
            "validate": {"plugin": "tabular", "params": {"schema_path": str(schema), "plot_columns": 4,
                                                         "label_noise": {"enabled": False}}},
            "train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 2, "early_stopping_patience": None}},
        },
    }


@pytest.mark.parametrize("kind,check,column", [
    ("wrong_types", "schema.dtype", "mean_radius"),
    ("missing_column", "schema.columns", "mean_texture"),
    ("shifted_ranges", "schema.range", "mean_area"),
])
def test_gate_blocks_corrupted_data_and_publishes_nothing(tmp_path, expected_schema, kind, check, column):
    store = RunStore(tmp_path / "runs")
    spec = resolve(parse_spec(spec_for(tmp_path, corrupt(kind), expected_schema)))
    with pytest.raises(GateFailed, match="validation gate failed") as err:
        run_pipeline(spec, tmp_path, store)
    assert check in str(err.value)
    (run,) = store.list()
    assert not run.model_dir.exists() and not (store.root / "latest").exists()
    assert run.record()["status"] == "failed"
    out = run.dir / "steps" / "validate"
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False
    assert any(c["check"] == check and c["column"] == column and not c["passed"] for c in report["checks"])
    assert "FAILED" in (out / "report.md").read_text() and "<img" in (out / "report.html").read_text()
    assert not (run.dir / "steps" / "train").exists()


def test_gate_passes_clean_data_and_publishes(tmp_path, expected_schema):
    store = RunStore(tmp_path / "runs")
    result = run_pipeline(resolve(parse_spec(spec_for(tmp_path, clean_csv_frame(), expected_schema))), tmp_path, store)
    assert result.metrics["validation"]["passed"] and (store.root / "latest").is_symlink()
    assert json.loads((result.model_dir / "schema.json").read_text())["columns"][0]["name"] == "mean_radius"


def test_training_without_a_validator_refuses_text_in_a_numeric_column(tmp_path, expected_schema):
    """Issue 13: a column that is text throughout is categorical now (encoded in the model); a numeric column
    with a few cells that are no number is refused, naming column, row id and value, never silently NaN."""
    from mlplat.errors import UsageError

    frame = clean_csv_frame()
    frame["mean_radius"] = frame["mean_radius"].astype(object)
    frame.loc[7, "mean_radius"] = "twelve"
    spec = spec_for(tmp_path, frame, expected_schema)
    del spec["steps"]["validate"]
    with pytest.raises(UsageError, match="1 cells of numeric columns are not numbers \\(mean_radius row 7: 'twelve'\\)"):
        run_pipeline(resolve(parse_spec(spec)), tmp_path, RunStore(tmp_path / "runs"))


@pytest.mark.slow
def test_cli_exits_1_when_the_gate_fails(tmp_path, expected_schema):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_for(tmp_path, corrupt("shifted_ranges"), expected_schema)))
    mlplat = Path(sys.executable).parent / "mlplat"
    done = subprocess.run([str(mlplat), "run", str(spec_path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "validation gate failed" in done.stderr
    assert not (tmp_path / "runs" / "latest").exists()
    assert np.all([not (p / "model").exists() for p in (tmp_path / "runs").iterdir()])


@pytest.mark.parametrize("steps,field,message", [
    ({"validate": {"plugin": "tabular", "params": {"severity": {"duplicatez": "fail"}}}},
     "steps.validate.params.severity", "unknown checks ['duplicatez']"),
    ({"augment": [{"plugin": "label_noise"}]}, "steps.augment.0.plugin", "'label_noise' needs a validate step"),
    ({"augment": [{"plugin": "image_augment"}]}, "steps.augment.0.plugin", "'image_augment' needs an image dataset"),
])
def test_cli_rejects_inconsistent_data_steps_before_any_run(tmp_path, steps, field, message):
    """Exit 2 naming the field, and no run directory: the spec is refused when it is resolved, not mid-run."""
    spec = {"name": "bad", "dataset": {"source": "sklearn:breast_cancer"},
            "steps": {**steps, "train": {"plugin": "mlp", "params": {"epochs": 1}}}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    mlplat = Path(sys.executable).parent / "mlplat"
    done = subprocess.run([str(mlplat), "run", str(spec_path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{field}: " in done.stderr and message in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
