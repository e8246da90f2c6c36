"""The compiled pipeline, run end to end by kfp.local (SubprocessRunner, use_venv=False) on CPU."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TINY_SPEC
from mlplat.errors import GateFailed
from mlplat.kfp.local import KFP_ROOT, run_kfp_local
from mlplat.runs import RunStore
from mlplat.spec import parse_spec, resolve

pytestmark = pytest.mark.slow


def executor_output(run_dir: Path, task: str) -> dict[str, Any]:
    [path] = (run_dir / KFP_ROOT).glob(f"*/{task}/executor_output.json")
    return json.loads(path.read_text())


def artifact_metadata(output: dict[str, Any], name: str) -> dict[str, Any]:
    return output["artifacts"][name]["artifacts"][0]["metadata"]


def test_kfp_local_matches_in_process_and_publishes_to_the_run_store(trained_run: Any, tmp_path: Path) -> None:
    spec = resolve(parse_spec(TINY_SPEC))  # the spec conftest's in-process run used, same seed
    store = RunStore(tmp_path / "runs")
    result = run_kfp_local(spec, REPO, store)

    assert result.metrics["test"] == trained_run.metrics["test"]  # same step functions, same numbers
    assert result.metrics["validation"]["passed"] and result.metrics["evaluation_gate"]["passed"]
    assert set(result.step_seconds) == {"ingest", "validate", "train", "evaluate"}
    assert os.readlink(store.root / "latest") == result.run.id
    assert result.model_dir == result.run.model_dir and (result.model_dir / "model.json").is_file()
    manifest = json.loads((result.model_dir / "model.json").read_text())
    assert manifest["metrics"]["test"]["accuracy"] == trained_run.metrics["test"]["accuracy"]
    assert result.run.record()["status"] == "succeeded" and result.run.metrics()["test"] == result.metrics["test"]

    # what the Kubeflow UI renders
    evaluate = executor_output(result.run.dir, "evaluate")
    assert evaluate["parameterValues"]["Output"] is True
    assert artifact_metadata(evaluate, "metrics")["accuracy"] == result.metrics["test"]["accuracy"]
    cm = artifact_metadata(evaluate, "classification")
    assert [a["displayName"] for a in cm["confusionMatrix"]["annotationSpecs"]] == ["benign", "malignant"]
    assert sum(sum(r["row"]) for r in cm["confusionMatrix"]["rows"]) == result.metrics["test"]["n"]
    assert len(cm["confidenceMetrics"]) > 2  # ROC points (binary task)
    summary = Path(evaluate["artifacts"]["summary"]["artifacts"][0]["uri"]).read_text()
    assert "Gate: **PASSED**" in summary
    validate = executor_output(result.run.dir, "validate")
    assert Path(validate["artifacts"]["report"]["artifacts"][0]["uri"]).read_text().startswith("<!doctype html>")
    assert "Gate: **PASSED**" in Path(validate["artifacts"]["summary"]["artifacts"][0]["uri"]).read_text()
    train = executor_output(result.run.dir, "train")
    assert "<html" in Path(train["artifacts"]["report"]["artifacts"][0]["uri"]).read_text()
    assert artifact_metadata(train, "metrics")["epochs_run"] == 8


def test_kfp_local_failed_gates_skip_the_rest_and_publish_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    strict = {**TINY_SPEC, "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 1}},
                                     "evaluate": {"params": {"min_accuracy": 0.999}}}}
    with pytest.raises(GateFailed, match="evaluation gate failed: test accuracy"):
        run_kfp_local(resolve(parse_spec(strict)), REPO, store)
    [run] = store.list()
    assert run.record()["status"] == "failed" and not run.model_dir.exists() and store.latest_id() is None
    assert not list((run.dir / KFP_ROOT).glob("*/publish"))  # dsl.If skipped publish

    imbalanced = {**TINY_SPEC, "name": "tiny-imbalanced", "steps": {**TINY_SPEC["steps"], "validate": {
        "plugin": "tabular", "params": {"outlier_iqr": 0.01, "max_outlier_share": 0.0, "severity": {"outliers": "fail"},
                                        "label_noise": {"enabled": False}, "plot_columns": 0}}}}
    with pytest.raises(GateFailed, match="validation gate failed"):
        run_kfp_local(resolve(parse_spec(imbalanced)), REPO, store)
    blocked = next(r for r in store.list() if r.id.startswith("tiny-imbalanced"))
    assert blocked.metrics()["validation"]["passed"] is False
    assert not list((blocked.dir / KFP_ROOT).glob("*/train"))  # dsl.If skipped training
