"""Class imbalance (issue 17.4): the decision rule chosen out of fold, saved in model.json and applied
by evaluation, serving, explanation and monitoring; the validator's recommendation; regression refusal."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from conftest import TINY_SPEC
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat.decision import balanced_accuracy, choose_offsets, decide
from mlplat.errors import ModelDirError, SpecError
from mlplat.manifest import Decision, ModelManifest
from mlplat.registry import StageKind, spec_of
from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.engine import logit_offset
from mlplat_plugins.torch_trainers.networks import AveragedLogits
from serving_server import running_server

QUIET = {"checkpoint_every": 0, "device": "cpu"}


def imbalanced_data(seed: int, n: int = 630, minority_share: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping gaussian classes; class 1 is rare."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < minority_share).astype(np.int64)
    X = rng.normal(0, 1, (n, 4)).astype(np.float32)
    X[:, :2] += 1.6 * y[:, None]
    return X, y


def test_logit_offset_is_tau_times_the_log_prior() -> None:
    y = np.array([0] * 18 + [1] * 2)
    np.testing.assert_allclose(logit_offset(y, MLPConfig(logit_adjustment=0.5), 2), 0.5 * np.log([0.9, 0.1]), rtol=1e-6)
    assert logit_offset(y, MLPConfig(), 2) is None


def test_imbalance_preset_sets_the_loss_and_the_out_of_fold_decision() -> None:
    preset = MLPConfig(imbalance="logit_adjust")
    assert preset.logit_adjustment == 1.0 and preset.decision == "out_of_fold" and preset.ensemble == "out_of_fold"
    assert MLPConfig(imbalance="logit_adjust", ensemble="none").ensemble == "none"  # an explicit choice stays
    assert MLPConfig().ensemble == "none"
    assert MLPConfig(imbalance="logit_adjust", logit_adjustment=2.0).logit_adjustment == 2.0  # an explicit tau stays
    assert MLPConfig().decision == "argmax"


def test_offsets_move_the_threshold_to_the_balanced_accuracy_optimum() -> None:
    # p(class 1) of 20 majority rows in [0.02, 0.4] and of 4 minority rows in [0.25, 0.45]: argmax misses every minority row
    majority = np.linspace(0.02, 0.4, 20)
    minority = np.array([0.25, 0.3, 0.42, 0.45])
    p1 = np.concatenate([majority, minority])
    y = np.array([0] * 20 + [1] * 4)
    probabilities = np.stack([1 - p1, p1], axis=1)
    decision = choose_offsets(probabilities, y, "test")
    assert decision.kind == "offsets" and decision.argmax_balanced_accuracy == 0.5
    predicted = decide(probabilities, decision)
    assert predicted[20:].all()  # every minority row caught ...
    # ... for 8 majority rows: (12/20 + 4/4) / 2, the best any threshold does here
    assert balanced_accuracy(y, predicted, 2) == decision.balanced_accuracy == pytest.approx(0.8)
    assert decision.threshold is not None and 0.24 < decision.threshold < 0.25  # between majority 0.24 and minority 0.25
    assert ((p1 > decision.threshold) == predicted.astype(bool)).all()  # the threshold is the same rule


def test_separable_data_keeps_argmax_and_multiclass_offsets_improve() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert choose_offsets(probabilities, np.array([0, 0, 1, 1]), "test").kind == "argmax"
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [200, 20, 20])
    logits = rng.normal(0, 1, (240, 3)) + 1.5 * np.eye(3)[y] + np.array([2.0, 0.0, 0.0])  # biased towards class 0
    probabilities = torch.softmax(torch.as_tensor(logits), 1).numpy()
    decision = choose_offsets(probabilities, y, "test")
    assert decision.kind == "offsets" and len(decision.offsets) == 3 and decision.threshold is None
    assert decision.balanced_accuracy > decision.argmax_balanced_accuracy + 0.1


def test_decision_round_trips_through_model_json_and_old_manifests_default_to_argmax(trained_model_dir: Path,
                                                                                       tmp_path: Path) -> None:
    from mlplat.modeldir import LoadedModel, ModelDir

    manifest = ModelDir(trained_model_dir).read()
    assert manifest.decision is None  # a model trained without a rule, as every model before the field
    decision = Decision(kind="offsets", offsets=[0.0, -1.5], threshold=0.8176, selected_on="out_of_fold", rows=12)
    copied = ModelDir(trained_model_dir).copy_to(tmp_path / "model").update(decision=decision)
    assert ModelManifest.from_json(copied.to_json()).decision == decision
    assert ModelDir(tmp_path / "model").read().decision == decision
    with pytest.raises(ModelDirError, match="decision.kind"):
        ModelManifest.from_json(copied.to_json().replace('"kind": "offsets"', '"kind": "median"'))
    rows = np.random.default_rng(0).normal(size=(5, 2))
    probabilities = torch.softmax(torch.as_tensor(rows), 1).numpy()
    np.testing.assert_array_equal(LoadedModel.load(trained_model_dir).decide(probabilities), probabilities.argmax(1))


def test_trainer_chooses_the_decision_out_of_fold_and_the_run_applies_it(tmp_path: Path) -> None:
    X, y = imbalanced_data(0)
    info = DatasetInfo("imbalanced", "y", [f"x{i}" for i in range(4)], ["0", "1"])
    data = TrainingData(ArrayData(X[:420], y[:420]), ArrayData(X[420:], y[420:]), info)
    trainer = spec_of(StageKind.TRAINER, "mlp").create({"imbalance": "logit_adjust", "hidden": [16], "epochs": 30, **QUIET})
    fitted = trainer.fit(data, StepContext("train", tmp_path, info, seed=0))
    assert fitted.decision is not None and fitted.decision.selected_on == "out_of_fold"
    assert fitted.decision.rows == 420 and fitted.cv is not None  # every training row was held out once
    assert fitted.decision.balanced_accuracy >= fitted.decision.argmax_balanced_accuracy
    # the served network: the fold networks' and the final one's logits averaged, rebuilt from the architecture alone
    assert isinstance(fitted.network, AveragedLogits) and fitted.architecture["ensemble"] == fitted.cv["folds"] + 1
    X_test = torch.as_tensor(X[420:])
    with torch.no_grad():
        members = torch.stack([member(X_test) for member in fitted.network.members])
        assert not torch.allclose(members[0], members[-1])  # the members differ: each trained on its own rows
        rebuilt = trainer.build_network(fitted.architecture)
        rebuilt.load_state_dict(fitted.network.state_dict())
        torch.testing.assert_close(rebuilt.eval()(X_test), members.mean(0))
    single = spec_of(StageKind.TRAINER, "mlp").create({"imbalance": "logit_adjust", "ensemble": "none", "hidden": [16],
                                                       "epochs": 30, **QUIET})
    alone = single.fit(data, StepContext("train", tmp_path, info, seed=0))
    assert not isinstance(alone.network, AveragedLogits) and "ensemble" not in alone.architecture


def test_a_saved_ensemble_loads_and_predicts_the_averaged_logits(trained_model_dir: Path, tmp_path: Path) -> None:
    from mlplat.modeldir import LoadedModel, ModelDir

    base = LoadedModel.load(trained_model_dir)
    members = [copy.deepcopy(base.network) for _ in range(3)]
    with torch.no_grad():
        for i, member in enumerate(members):
            member.head.bias.add_(float(i))  # members that disagree
    target = ModelDir(trained_model_dir).copy_to(tmp_path / "model")
    target.update(architecture={**base.manifest.architecture, "ensemble": 3})
    target.write_weights(AveragedLogits(members))
    loaded = LoadedModel.load(tmp_path / "model")
    rows = np.asarray(base.standardizer.mean, np.float32)[None].repeat(4, 0)  # type: ignore[union-attr]
    X = torch.as_tensor(loaded.preprocess(rows), dtype=torch.float32)
    with torch.no_grad():
        expected = torch.softmax(torch.stack([m.eval()(X) for m in members]).mean(0), 1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(rows), expected, atol=1e-6)


def test_evaluation_serving_explanation_and_monitoring_use_the_decision(trained_model_dir: Path, tmp_path: Path) -> None:
    import pandas as pd
    from mlplat.modeldir import LoadedModel, ModelDir
    from mlplat.monitoring.performance_estimate import estimate
    from mlplat.monitoring.service import response_classes
    from mlplat.spec import EvaluateGate
    from mlplat.steps import score

    base = LoadedModel.load(trained_model_dir)
    # rows around the training mean (in the model's units), so the probabilities spread over both classes
    standardizer: Any = base.standardizer
    rows = standardizer.mean + np.random.default_rng(0).normal(size=(40, len(base.feature_names))) * 0.5 * standardizer.scale
    probabilities = base.predict_proba(rows.astype(np.float32))
    # a threshold at the rows' median p(class 1): about half of them change class against the argmax
    threshold = float(np.median(probabilities[:, 1]))
    decision = Decision(kind="offsets", offsets=[0.0, float(np.log((1 - threshold) / threshold))], threshold=threshold)
    expected = decide(probabilities, decision)
    assert (expected != probabilities.argmax(1)).any()
    ModelDir(trained_model_dir).copy_to(tmp_path / "model").update(decision=decision)
    model = LoadedModel.load(tmp_path / "model")
    np.testing.assert_array_equal(model.predict_labels(rows.astype(np.float32)), expected)
    # monitoring: a probability row from another server, and the label-free estimate of the served class
    assert response_classes({"predictions": probabilities.tolist()}, model.class_names, decision).tolist() == expected.tolist()
    estimated = estimate(probabilities, 1.0, decision)
    assert estimated is not None
    assert estimated.accuracy == pytest.approx(probabilities[np.arange(len(rows)), expected].mean())
    # explanation: the class an explanation explains (integrated gradients, through the registry)
    explainer = spec_of(StageKind.EXPLAINER, "integrated_gradients").create({"n_steps": 8, "importance_rows": 5})
    state = explainer.fit(model, rows[:10], StepContext(step="explain", work_dir=tmp_path, info=None, seed=0))  # type: ignore[arg-type]
    explained = explainer.load(model, state).explain(rows[:10])
    assert [e["class"] for e in explained] == [model.class_names[i] for i in expected[:10]]
    # evaluation: the labels are the decided classes, which the argmax misses in part
    metrics = score(model, pd.DataFrame(rows, columns=model.feature_names), expected, EvaluateGate(), tmp_path / "evaluate")
    assert metrics["test"]["accuracy"] == 1.0
    assert pd.read_csv(tmp_path / "evaluate" / "predictions.csv")["predicted"].astype(str).tolist() == \
        [model.class_names[i] for i in expected]
    # serving: the real kserve server on 127.0.0.1
    with running_server(tmp_path / "model", "--no-monitor") as url:
        reply = httpx.post(f"{url}/v1/models/{model.name}:predict", json={"instances": rows.tolist()}, timeout=60).json()
    assert reply["predictions"] == [model.class_names[i] for i in expected]
    np.testing.assert_allclose(reply["probabilities"], probabilities, atol=1e-5)


def test_validator_recommends_the_remedy_with_its_spec_snippet(tmp_path: Path) -> None:
    import pandas as pd
    from mlplat.data import split_frame

    X, y = imbalanced_data(1, n=1000, minority_share=0.04)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).assign(target=y)
    splits = split_frame(frame, "target", "imbalanced", 0.2, 0.2, 0)
    validator = spec_of(StageKind.VALIDATOR, "tabular").create({"plot_columns": 0, "label_noise": {"enabled": False}})
    report = validator.validate(splits, StepContext("validate", tmp_path, splits.info, seed=0))
    check = next(c for c in report.checks if c.check == "imbalance")
    minority = int((splits.train.labels == 1).sum())
    assert check.details["minority_count"] == minority and check.details["ratio"] > 10
    assert check.details["recommendation"]["remedy"] == "logit_adjust" and "logit_adjust" in check.message
    assert f"{minority} rows" in check.message
    snippet = check.details["recommendation"]["spec"]
    import yaml

    assert yaml.safe_load(snippet) == {"steps": {"train": {"params": {"imbalance": "logit_adjust"}}}}
    balanced = split_frame(frame.assign(target=np.arange(len(frame)) % 2), "target", "balanced", 0.2, 0.2, 0)
    report = validator.validate(balanced, StepContext("validate", tmp_path / "b", balanced.info, seed=0))
    assert next(c for c in report.checks if c.check == "imbalance").details["recommendation"]["remedy"] == "none"


@pytest.mark.parametrize("params", [{"imbalance": "logit_adjust"}, {"decision": "out_of_fold"}])
def test_a_regression_spec_refuses_the_remedy_at_resolve_time(params: dict[str, Any]) -> None:
    from mlplat.spec import parse_spec, resolve

    spec = {**TINY_SPEC, "dataset": {"source": "sklearn:diabetes", "task": "regression"},
            "steps": {"train": {"plugin": "mlp", "params": params}}}
    with pytest.raises(SpecError, match=f"{next(iter(params))}.*classification option"):
        resolve(parse_spec(spec))
