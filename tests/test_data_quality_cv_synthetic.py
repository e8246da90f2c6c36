"""Synthetic rows never reach a cross-validation held-out fold: the CV band is scored on real rows only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlplat import registry
from mlplat.contracts import StepContext
from mlplat.data import Splits, load_source, split_frame
from mlplat.registry import StageKind
from mlplat.steps import prepare_training
from mlplat_plugins.torch_trainers.trainer import cv_folds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoted(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    frame, label = load_source("sklearn:breast_cancer", None, None, REPO)
    splits = split_frame(frame, label, "bc", 0.2, 0.2, seed=0)
    smote = registry.spec_of(StageKind.AUGMENTER, "smote").create({})
    ctx = StepContext("augment.0", tmp_path_factory.mktemp("augment"), splits.info, seed=0)
    return splits.with_train(smote.augment(splits.train, ctx))


def test_folds_hold_out_real_rows_only(smoted: Splits) -> None:
    training, _ = prepare_training(smoted)
    synthetic = training.train.synthetic
    assert np.array_equal(synthetic, smoted.train.synthetic) and synthetic.sum() > 50  # the tag reaches the trainer
    real, generated = np.flatnonzero(~synthetic), np.flatnonzero(synthetic)
    folds = cv_folds(training.train, 5, seed=0)
    held_all = np.concatenate([held for _, held in folds])
    assert not synthetic[held_all].any()  # no synthetic row is ever held out
    assert np.array_equal(np.sort(held_all), real)  # the held-out parts partition the real rows
    for fit, held in folds:
        assert set(generated) <= set(fit) and not set(fit) & set(held)  # synthetic rows train in every fold
        counts = np.bincount(training.train.y[held], minlength=2)
        expected = np.bincount(training.train.y[real]) / 5
        assert np.all(np.abs(counts - expected) <= 1)  # still stratified (over the real rows)


@pytest.mark.slow
def test_cv_band_of_an_oversampled_run_is_scored_on_real_rows(tmp_path: Path) -> None:
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    spec = resolve(parse_spec({
        "name": "cv-smote", "seed": 0, "dataset": {"source": "sklearn:breast_cancer"},
        "steps": {"augment": [{"plugin": "smote"}],
                  "train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 2, "early_stopping_patience": None,
                                                        "cv_folds": 3}}},
    }))
    result = run_pipeline(spec, REPO, RunStore(tmp_path / "runs"))
    train = Splits.load(result.run.dir / "steps" / "augment").train
    n_real, n_synthetic = int((~train.synthetic).sum()), int(train.synthetic.sum())
    folds = json.loads((result.model_dir / "model.json").read_text())["cv"]["per_fold"]
    assert n_synthetic > 0 and sum(f["n_val"] for f in folds) == n_real
    assert all(f["n_train"] == n_real - f["n_val"] + n_synthetic for f in folds)
