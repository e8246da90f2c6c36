"""Warm start / transfer learning from a published model: by path, run id and `latest`; freezing; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat import modeldir
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat.errors import UsageError
from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.mlp import MLPTrainer
from safetensors.torch import load_file

# tests/conftest.py TINY_SPEC: breast cancer, mlp hidden [16]
BASE = dict(hidden=[16], epochs=3, lr=1e-2, early_stopping_patience=None, checkpoint_every=0)


def breast_cancer(model_dir: Path, classes: list[str] | None = None, features: list[str] | None = None) -> TrainingData:
    """The trainer's own input: breast cancer scaled with the source model's statistics, as the train step does."""
    from sklearn.datasets import load_breast_cancer

    manifest = modeldir.ModelDir(model_dir).read()
    bunch = load_breast_cancer()
    X = modeldir.preprocessor_from_json(manifest.preprocessing.model_dump()).transform(bunch.data)
    y = np.array([manifest.classes.index(bunch.target_names[t]) for t in bunch.target])  # the model's class order
    info = DatasetInfo("bc", "target", features or manifest.feature_names, classes or manifest.classes)
    return TrainingData(ArrayData(X[:300], y[:300]), ArrayData(X[300:450], y[300:450]), info)


def fit(config: MLPConfig, data: TrainingData, work: Path, runs_root: Path | None = None):
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    return MLPTrainer(config).fit(data, StepContext("train", work, data.info, seed=1, runs_root=runs_root))


def test_warm_start_freezes_body_and_fine_tunes_head(trained_model_dir: Path, tmp_path: Path) -> None:
    source = load_file(str(trained_model_dir / modeldir.WEIGHTS))
    data = breast_cancer(trained_model_dir)
    model = fit(MLPConfig(init_from=str(trained_model_dir), freeze=["body"], **BASE), data, tmp_path)
    state = model.network.state_dict()
    body = [k for k in state if k.startswith("body.")]
    assert body and all(torch.equal(state[k], source[k]) for k in body)  # frozen: unchanged
    assert not torch.equal(state["head.weight"], source["head.weight"])  # fine-tuned
    warm = model.extras["warm_start"]
    assert warm["model_dir"] == str(trained_model_dir) and warm["frozen"] == ["body"]
    assert set(warm["frozen_parameters"]) == set(body)
    # starting from trained weights (body frozen) beats training every layer from scratch for as long
    scratch = fit(MLPConfig(**{**BASE, "epochs": 1}), data, tmp_path / "scratch")
    warm_1 = fit(MLPConfig(init_from=str(trained_model_dir), freeze=["body"], **{**BASE, "epochs": 1}), data, tmp_path / "w1")
    assert warm_1.history[0]["val_loss"] < scratch.history[0]["val_loss"]


def test_warm_start_by_run_id_and_latest(trained_run, tmp_path: Path) -> None:
    runs_root = trained_run.run.dir.parent
    data = breast_cancer(trained_run.model_dir)
    for i, ref in enumerate((trained_run.run.id, "latest", trained_run.model_dir.resolve().as_uri())):
        model = fit(MLPConfig(init_from=ref, **BASE), data, tmp_path / f"ref{i}", runs_root=runs_root)
        assert Path(model.extras["warm_start"]["model_dir"]).resolve() == trained_run.model_dir.resolve()
    with pytest.raises(UsageError, match="init_from: run not found: nope"):
        fit(MLPConfig(init_from="nope", **BASE), data, tmp_path / "x", runs_root=runs_root)
    with pytest.raises(UsageError, match="init_from: no model directory"):
        fit(MLPConfig(init_from=str(tmp_path / "missing" / "dir"), **BASE), data, tmp_path / "y")
    # the plugin reads no environment: without the runner's run store, a run id cannot be looked up
    with pytest.raises(UsageError, match="init_from: 'latest' is not a path, and no run store"):
        fit(MLPConfig(init_from="latest", **BASE), data, tmp_path / "z")


def test_warm_start_refuses_incompatible_models(trained_model_dir: Path, tmp_path: Path) -> None:
    ref = str(trained_model_dir)
    good = breast_cancer(trained_model_dir)
    renamed = good.info.feature_names[:-1] + ["something_else"]
    with pytest.raises(UsageError, match=r"feature schema mismatch.*something_else"):
        fit(MLPConfig(init_from=ref, **BASE), breast_cancer(trained_model_dir, features=renamed), tmp_path / "a")
    with pytest.raises(UsageError, match="class mismatch"):
        fit(MLPConfig(init_from=ref, **BASE), breast_cancer(trained_model_dir, classes=["no", "yes"]), tmp_path / "b")
    with pytest.raises(UsageError, match=r"network shape mismatch.*body.0.0.weight"):
        fit(MLPConfig(init_from=ref, **{**BASE, "hidden": [32]}), good, tmp_path / "c")
    with pytest.raises(UsageError, match="freeze: no module 'trunk'"):
        fit(MLPConfig(init_from=ref, freeze=["trunk"], **BASE), good, tmp_path / "d")
    with pytest.raises(UsageError, match="every parameter is frozen"):
        fit(MLPConfig(init_from=ref, freeze=["body", "head"], **BASE), good, tmp_path / "e")


def test_train_step_reuses_the_source_models_standardization(trained_model_dir: Path, tmp_path: Path) -> None:
    """Through the real train step: a warm start keeps the source's preprocessing, so a frozen body sees
    inputs scaled as in its training, even when the new data's own statistics differ a lot."""
    from mlplat import steps
    from mlplat.data import load_source, split_frame
    from mlplat.spec import parse_spec, resolve

    frame, label = load_source("sklearn:breast_cancer", None, None, Path(__file__).parent)
    larger = frame[frame["mean radius"] > frame["mean radius"].quantile(0.4)]  # a shifted sub-population
    splits = split_frame(larger, label, "bc-large", 0.2, 0.2, seed=3)
    splits.save(tmp_path / "data")
    params = {**BASE, "init_from": str(trained_model_dir), "freeze": ["body"], "epochs": 1, "lr": 1e-9}  # ~no update
    spec = resolve(parse_spec({"name": "warm", "dataset": {"source": "sklearn:breast_cancer"},
                               "steps": {"train": {"plugin": "mlp", "params": params}}}))
    model_dir = steps.train(spec, tmp_path / "data", tmp_path / "train")
    source, warm = modeldir.LoadedModel.load(trained_model_dir), modeldir.LoadedModel.load(model_dir)
    assert warm.manifest.preprocessing == source.manifest.preprocessing
    X = splits.test.features[source.feature_names].to_numpy()
    np.testing.assert_allclose(warm.predict_proba(X), source.predict_proba(X), atol=1e-4)  # the same function of raw inputs
