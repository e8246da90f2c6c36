"""The compiled pipeline, run end to end by kfp.local (SubprocessRunner, use_venv=False) on CPU."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SMALL_DATA_STEPS, TINY_SPEC
from mlplat.errors import GateFailed
from mlplat.kfp.local import KFP_ROOT, run_kfp_local
from mlplat.runner import run_pipeline
from mlplat.runs import RunStore
from mlplat.spec import parse_spec, resolve

pytestmark = pytest.mark.slow


def executor_output(run_dir: Path, task: str) -> dict[str, Any]:
    [path] = (run_dir / KFP_ROOT).glob(f"*/{task}/executor_output.json")
    return json.loads(path.read_text())


def artifact_metadata(output: dict[str, Any], name: str) -> dict[str, Any]:
    return output["artifacts"][name]["artifacts"][0]["metadata"]


# Every step kind, each as small as it gets: the KFP components of all of them run here.
FULL_SPEC: dict[str, Any] = {
    "name": "tiny-full",
    "seed": 42,  # a split where the validator flags label-noise suspects, so the first augmenter drops rows
    "dataset": {"source": "sklearn:breast_cancer", "validation": 0.2, "test": 0.2},
    "steps": {
        **SMALL_DATA_STEPS,
        "train": {"plugin": "mlp", "params": {"depth": 1, "width": 32, "epochs": 3, "early_stopping_patience": None,
                                              "checkpoint_every": 0}},
        "explain": {"plugin": "integrated_gradients", "params": {"n_steps": 8, "importance_rows": 20, "background_clusters": 4}},
        "drift": {"plugin": "evidently"},
    },
}
VOLATILE = {"created_at", "training_wall_s"}  # model.json fields that record when and how long, not what


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def artifact_text(output: dict[str, Any], name: str) -> str:
    return Path(output["artifacts"][name]["artifacts"][0]["uri"]).read_text()


def test_kfp_local_runs_every_step_kind_like_the_in_process_runner(tmp_path: Path) -> None:
    spec = resolve(parse_spec(FULL_SPEC))
    in_process = run_pipeline(spec, REPO, RunStore(tmp_path / "in-process"))
    store = RunStore(tmp_path / "runs")
    result = run_kfp_local(spec, REPO, store)

    assert result.metrics["test"] == in_process.metrics["test"]  # same step functions, same numbers
    tuned, expected_tune = result.metrics["tune"], in_process.metrics["tune"]
    assert (tuned["best_params"], tuned["best_value"], tuned["trials"]) == \
        (expected_tune["best_params"], expected_tune["best_value"], expected_tune["trials"])
    assert result.metrics["validation"]["passed"] and result.metrics["evaluation_gate"]["passed"]
    assert set(result.step_seconds) == {"ingest", "validate", "augment", "tune", "train", "evaluate", "explain", "drift"}
    assert os.readlink(store.root / "latest") == result.run.id
    assert result.run.record()["status"] == "succeeded" and result.run.metrics()["test"] == result.metrics["test"]

    # the published model directory: the same files with the same bytes (weights, explainer, drift
    # reference, schema); model.json differs only in when it was written and how long training took
    assert result.model_dir == result.run.model_dir
    published, expected = files(result.model_dir), files(in_process.model_dir)
    assert set(published) == set(expected) >= {"weights.safetensors", "model.json", "schema.json", "reference.parquet",
                                               "explainer.safetensors", "drift_reference.json"}
    for name in sorted(set(published) - {"model.json"}):
        assert published[name] == expected[name], name
    manifest, expected_manifest = (json.loads(f["model.json"]) for f in (published, expected))
    assert manifest["explainer"]["plugin"] == "integrated_gradients" and manifest["trainer"]["params"]["width"] in (8, 16)
    assert {k: v for k, v in manifest.items() if k not in VOLATILE} == \
        {k: v for k, v in expected_manifest.items() if k not in VOLATILE}

    # what the Kubeflow UI renders
    evaluate = executor_output(result.run.dir, "evaluate")
    assert evaluate["parameterValues"]["Output"] is True
    assert artifact_metadata(evaluate, "metrics")["accuracy"] == result.metrics["test"]["accuracy"]
    cm = artifact_metadata(evaluate, "classification")
    assert [a["displayName"] for a in cm["confusionMatrix"]["annotationSpecs"]] == ["benign", "malignant"]
    assert sum(sum(r["row"]) for r in cm["confusionMatrix"]["rows"]) == result.metrics["test"]["n"]
    assert len(cm["confidenceMetrics"]) > 2  # ROC points (binary task)
    assert "Gate: **PASSED**" in artifact_text(evaluate, "summary")
    validate = executor_output(result.run.dir, "validate")
    assert artifact_text(validate, "report").startswith("<!doctype html>")
    assert "Gate: **PASSED**" in artifact_text(validate, "summary")
    augment = executor_output(result.run.dir, "augment")
    rows = json.loads((in_process.run.step_dir("augment") / "augment.json").read_text())
    assert [r["augmenter"] for r in rows] == ["input", "label_noise", "smote"] and rows[1]["rows"] < rows[0]["rows"] < rows[2]["rows"]
    summary = artifact_text(augment, "summary")
    assert all(f"| {r['augmenter']} | {r['rows']} | {r['synthetic']} |" in summary for r in rows), summary
    tune = executor_output(result.run.dir, "tune")
    assert artifact_metadata(tune, "metrics")["best_value"] == expected_tune["best_value"]
    assert artifact_metadata(tune, "metrics")["best_lr"] == expected_tune["best_params"]["lr"]
    train = executor_output(result.run.dir, "train")
    assert "<html" in artifact_text(train, "report")
    assert artifact_metadata(train, "metrics")["epochs_run"] == 3
    for task in ("tune", "explain", "drift"):
        assert "<html" in artifact_text(executor_output(result.run.dir, task), "report").lower(), task


def test_kfp_local_failed_gates_skip_the_rest_and_publish_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    strict = {**TINY_SPEC, "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 1}},
                                     "evaluate": {"params": {"min_accuracy": 0.999}}}}
    with pytest.raises(GateFailed, match="evaluation gate failed: test accuracy"):
        run_kfp_local(resolve(parse_spec(strict)), REPO, store)
    [run] = store.list()
    assert run.record()["status"] == "failed" and not run.model_dir.exists() and store.latest_id() is None
    assert not list((run.dir / KFP_ROOT).glob("*/publish"))  # the failed gate task stopped the graph
    assert run.record()["error"].startswith("evaluation gate failed: test accuracy")  # the in-process runner's words

    imbalanced = {**TINY_SPEC, "name": "tiny-imbalanced", "steps": {**TINY_SPEC["steps"], "validate": {
        "plugin": "tabular", "params": {"outlier_iqr": 0.01, "max_outlier_share": 0.0, "severity": {"outliers": "fail"},
                                        "label_noise": {"enabled": False}, "plot_columns": 0}}}}
    with pytest.raises(GateFailed, match="validation gate failed"):
        run_kfp_local(resolve(parse_spec(imbalanced)), REPO, store)
    blocked = next(r for r in store.list() if r.id.startswith("tiny-imbalanced"))
    assert blocked.metrics()["validation"]["passed"] is False
    assert not list((blocked.dir / KFP_ROOT).glob("*/train"))  # the failed gate task stopped training
    assert list((blocked.dir / KFP_ROOT).glob("*/validate/report"))  # the deciding step's report is still there


def test_mlplat_run_kfp_local_exits_1_with_the_in_process_runners_words(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    strict = {**TINY_SPEC, "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 1}},
                                     "evaluate": {"params": {"min_accuracy": 0.999}}}}
    spec_file = tmp_path / "strict.yaml"
    spec_file.write_text(yaml.safe_dump(strict))
    messages = {}
    for runner in ("in-process", "kfp-local"):
        done = subprocess.run([sys.executable, "-m", "mlplat", "run", str(spec_file), "--runner", runner,
                               "--runs-dir", str(tmp_path / runner)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, (runner, done.stderr[-2000:])
        line = next(text for text in done.stderr.splitlines() if "gate failed" in text)
        messages[runner] = line[line.index("evaluation gate failed"):]
    assert messages["kfp-local"] == messages["in-process"], messages
