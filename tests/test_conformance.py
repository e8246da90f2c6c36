"""Conformance: every discovered plugin of every kind, with its default config, honours its contract
on small data. New plugins (built-in or third-party) are picked up automatically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlplat import registry
from mlplat.contracts import StepContext
from mlplat.contracts.augmenter import Augmenter
from mlplat.contracts.drift_detector import DriftDetector, DriftResult
from mlplat.contracts.explainer import BoundExplainer, Explainer, ExplainerState
from mlplat.contracts.trainer import TrainedModel, Trainer
from mlplat.contracts.tuner import Tuner, TuneResult
from mlplat.contracts.validator import ValidationReport, Validator
from mlplat.data import Splits, Table, load_source, split_frame
from mlplat.registry import StageKind
from mlplat.steps import prepare_training

from conftest import REPO


def names(kind: StageKind) -> list[str]:
    return sorted(registry.discover(kind))


@pytest.fixture(scope="module")
def tabular_splits() -> Splits:
    frame, label = load_source("sklearn:breast_cancer", None, None, REPO)
    return split_frame(frame.sample(240, random_state=0), label, "conformance", 0.25, 0.25, seed=0)


@pytest.fixture(scope="module")
def image_splits() -> Splits:
    frame, label = load_source("sklearn:digits", None, None, REPO)
    return split_frame(frame.sample(400, random_state=0), label, "conformance", 0.25, 0.25, seed=0, image_shape=[1, 8, 8])


@pytest.fixture
def splits(request: pytest.FixtureRequest, tabular_splits: Splits) -> Splits:
    """Small data a plugin can take: digits images for plugins that need images, else tabular rows."""
    kind = {"test_augmenter": "augmenter", "test_trainer": "trainer"}.get(request.node.originalname)
    name = request.node.callspec.params.get("name") if hasattr(request.node, "callspec") else None
    if kind and name and "image" in registry.get(kind, name).needs:
        return request.getfixturevalue("image_splits")
    return tabular_splits


def context(tmp_path: Path, splits: Splits, **extra) -> StepContext:
    return StepContext(step="conformance", work_dir=tmp_path, info=splits.info, seed=0, **extra)


def test_every_kind_has_a_builtin_plugin() -> None:
    for kind in StageKind:
        builtin = [n for n, d in registry.discover(kind).items() if d.distribution == "mlplat"]
        assert builtin, f"no built-in {kind.value} plugin"


def test_every_config_is_constructible_with_defaults_and_json_round_trips() -> None:
    for kind in StageKind:
        for name, found in registry.discover(kind).items():
            config = found.spec.parse_config({})
            again = found.spec.parse_config(json.loads(json.dumps(config.model_dump(mode="json"))))
            assert again == config, (kind, name)


@pytest.mark.parametrize("name", names(StageKind.VALIDATOR))
def test_validator(name: str, splits: Splits, tmp_path: Path) -> None:
    validator = registry.get("validator", name).create({})
    assert isinstance(validator, Validator)
    before = splits.train.to_frame().copy()
    report = validator.validate(splits, context(tmp_path, splits))
    assert isinstance(report, ValidationReport) and report.checks
    assert all(c.severity in ("info", "warn", "fail") for c in report.checks)
    json.dumps(report.to_dict(), default=float)
    assert splits.train.to_frame().equals(before), "validators must not modify the data"


@pytest.mark.parametrize("name", names(StageKind.AUGMENTER))
def test_augmenter(name: str, splits: Splits, tmp_path: Path) -> None:
    augmenter = registry.get("augmenter", name).create({})
    assert isinstance(augmenter, Augmenter)
    validator = registry.get("validator", names(StageKind.VALIDATOR)[0]).create({})
    findings = {"validate": validator.validate(splits, context(tmp_path, splits)).findings}
    before = splits.train.to_frame().copy()
    out = augmenter.augment(splits.train, context(tmp_path, splits, findings=findings))
    assert isinstance(out, Table)
    assert list(out.features.columns) == list(splits.train.features.columns)
    assert splits.train.to_frame().equals(before), "augmenters must not mutate their input"
    assert set(np.unique(out.labels)) <= set(range(splits.info.n_classes))
    assert np.all(out.row_ids[out.synthetic] == -1)
    assert set(out.row_ids[~out.synthetic]) <= set(splits.train.row_ids)
    assert np.isfinite(out.features.to_numpy(dtype=float)).all()


@pytest.mark.parametrize("name", names(StageKind.TRAINER))
def test_trainer(name: str, splits: Splits, tmp_path: Path) -> None:
    import torch

    spec = registry.get("trainer", name)
    trainer = spec.create({"epochs": 3} if "epochs" in spec.config_model.model_fields else {})
    assert isinstance(trainer, Trainer)
    data, _ = prepare_training(splits)
    epochs: list[int] = []
    trained = trainer.fit(data, context(tmp_path, splits, on_epoch=lambda e, m: epochs.append(e)))
    assert isinstance(trained, TrainedModel) and epochs
    json.dumps(trained.architecture)
    rebuilt = trainer.build_network(trained.architecture)
    rebuilt.load_state_dict(trained.network.state_dict())
    rebuilt.eval()
    trained.network.eval()
    X = torch.from_numpy(data.validation.X)
    with torch.no_grad():
        assert torch.allclose(rebuilt(X), trained.network(X), atol=1e-5)
        assert rebuilt(X).shape == (len(X), splits.info.n_classes)


@pytest.mark.parametrize("name", names(StageKind.TUNER))
def test_tuner(name: str, splits: Splits, tmp_path: Path) -> None:
    tuner = registry.get("tuner", name).create({"n_trials": 4} if "n_trials" in registry.get("tuner", name).config_model.model_fields else {})
    assert isinstance(tuner, Tuner)
    seen: list[dict] = []

    def objective(params: dict, report) -> float:
        seen.append(params)
        for epoch in range(3):
            report(epoch, 1.0 - (params["x"] - 0.3) ** 2)
        return 1.0 - (params["x"] - 0.3) ** 2

    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    result = tuner.tune(objective, space, context(tmp_path, splits))
    assert isinstance(result, TuneResult) and seen
    assert 0.0 <= result.best_params["x"] <= 1.0
    assert result.best_value == pytest.approx(max(1.0 - (p["x"] - 0.3) ** 2 for p in seen))


@pytest.mark.parametrize("name", names(StageKind.EXPLAINER))
def test_explainer(name: str, splits: Splits, trained_model_dir: Path, tmp_path: Path) -> None:
    from mlplat.modeldir import LoadedModel

    model = LoadedModel.load(trained_model_dir)
    explainer = registry.get("explainer", name).create({})
    assert isinstance(explainer, Explainer)
    X = splits.test.features[model.feature_names].to_numpy()
    state = explainer.fit(model, splits.train.features[model.feature_names].to_numpy(), context(tmp_path, splits))
    assert isinstance(state, ExplainerState)
    json.dumps(state.config)
    assert all(isinstance(v, np.ndarray) for v in state.arrays.values())
    bound = explainer.load(model, state)
    assert isinstance(bound, BoundExplainer)
    explanations = bound.explain(X[:2])
    assert len(explanations) == 2 and all(isinstance(e, dict) for e in explanations)
    json.dumps(explanations, default=float)


@pytest.mark.parametrize("name", names(StageKind.DRIFT_DETECTOR))
def test_drift_detector(name: str, splits: Splits, tmp_path: Path) -> None:
    import pandas as pd

    detector = registry.get("drift_detector", name).create({})
    assert isinstance(detector, DriftDetector)
    rng = np.random.default_rng(0)
    columns = [f"x{i}" for i in range(5)]
    reference = pd.DataFrame(rng.normal(size=(1000, 5)), columns=columns)
    state = detector.fit(reference, context(tmp_path, splits))
    json.dumps(state, default=float)
    same = detector.detect(state, pd.DataFrame(rng.normal(size=(500, 5)), columns=columns))
    moved = detector.detect(state, pd.DataFrame(rng.normal(size=(500, 5)) + 2.0, columns=columns))
    assert isinstance(same, DriftResult) and isinstance(moved, DriftResult)
    assert 0.0 <= same.share <= 1.0 and {f.feature for f in moved.features} == set(columns)
    assert not same.dataset_drift and moved.dataset_drift and moved.share > same.share
