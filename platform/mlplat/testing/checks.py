"""Conformance checks: a discovered plugin, on tiny data, honours its kind's contract.

`check_plugin(kind, name, params)` checks what every kind shares (the entry point resolves to a
PluginSpec of that kind and name; the config builds with defaults and survives a JSON round trip;
the factory's object satisfies the kind's Protocol), then calls the plugin's methods and checks the
contract's return types and invariants (see `mlplat.contracts.<kind>`). The first broken rule
raises a `ConformanceError` naming the plugin and the rule.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlplat.contracts.augmenter import Augmenter
from mlplat.contracts.drift_detector import DriftDetector, DriftResult
from mlplat.contracts.explainer import BoundExplainer, Explainer, ExplainerState
from mlplat.contracts.trainer import TrainedModel, Trainer
from mlplat.contracts.tuner import Tuner, TuneResult
from mlplat.contracts.validator import ValidationReport, Validator
from mlplat.data import Splits, Table, synthetic_row_id
from mlplat.registry import PluginSpec, StageKind
from mlplat.testing import _registry
from mlplat.testing.fixtures import model_double, step_context, tiny_image_file_splits, tiny_image_splits, tiny_splits


class ConformanceError(AssertionError):
    """A plugin broke its kind's contract; the message names the plugin and the broken rule."""


class _Rules:
    """Raises ConformanceError prefixed with the plugin under check."""

    def __init__(self, kind: StageKind, name: str) -> None:
        self.plugin = f"{kind.value} plugin {name!r}"

    def require(self, condition: Any, rule: str) -> None:
        if not condition:
            raise ConformanceError(f"{self.plugin}: {rule}")

    def json(self, value: Any, what: str, default: Callable[[Any], Any] | None = None) -> Any:
        """`value` after a JSON round trip (how the model directory stores it)."""
        try:
            return json.loads(json.dumps(value, default=default))
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"{self.plugin}: {what} must be JSON-serializable: {exc}") from None


def tiny_params(spec: PluginSpec) -> dict[str, Any]:
    """Params that keep a default config small enough for a conformance run: 3 epochs, 4 trials."""
    fields = spec.config_model.model_fields
    return {key: value for key, value in (("epochs", 3), ("n_trials", 4)) if key in fields}


def needs_images(spec: PluginSpec) -> bool:
    return "image" in spec.needs


def check_plugin(kind: StageKind | str, name: str, params: Mapping[str, Any] | None = None,
                 work_dir: Path | None = None) -> None:
    """Check a discovered plugin against its kind's contract; raise ConformanceError on the first broken rule.

    `params` configures the plugin under check (default: its defaults, with `tiny_params`). Plugins
    whose spec needs "image" get `tiny_image_splits()`, the others `tiny_splits()`. Files the plugin
    writes go to `work_dir` (default: a temporary directory, removed afterwards). Trainer checks need
    torch; the other kinds need only what the plugin itself imports.
    """
    kind = StageKind(kind)
    if work_dir is not None:
        return _check(kind, name, params, Path(work_dir))
    with tempfile.TemporaryDirectory(prefix=f"mlplat-check-{name}-") as tmp:
        _check(kind, name, params, Path(tmp))
    return None


def _check(kind: StageKind, name: str, params: Mapping[str, Any] | None, work_dir: Path) -> None:
    rules = _Rules(kind, name)
    spec = _registry.spec_of(kind, name)
    rules.require(isinstance(spec, PluginSpec) and spec.kind is kind and spec.name == name,
                  f"its entry point must resolve to a PluginSpec of kind {kind.value!r} named {name!r}")
    check_config(spec, rules)
    config = spec.parse_config(tiny_params(spec) if params is None else params)
    plugin = _registry.create(spec, config)
    protocol = _PROTOCOLS[kind]
    rules.require(isinstance(plugin, protocol),
                  f"its factory {spec.factory} returned {type(plugin).__name__}, which lacks the "
                  f"{protocol.__name__} methods ({', '.join(_protocol_methods(protocol))})")
    if "image_files" in spec.needs:  # image files written into the work dir (they outlive no check)
        splits = tiny_image_file_splits(work_dir / "tiny-images")
    else:
        splits = tiny_image_splits() if needs_images(spec) else tiny_splits()
    image_check = _IMAGE_CHECKS.get(kind) if spec.handles_images and splits.info.image_files else None
    (image_check or _KIND_CHECKS[kind])(plugin, splits, work_dir, rules)


def check_config(spec: PluginSpec, rules: _Rules | None = None) -> None:
    """The config model builds with defaults (serving builds one to rebuild a model) and round-trips:
    model_dump → JSON → validate gives the same config (specs and manifests store it as JSON)."""
    rules = rules or _Rules(spec.kind, spec.name)
    rules.require(isinstance(spec.config_model, type) and issubclass(spec.config_model, BaseModel),
                  "config_model must be a pydantic BaseModel subclass")
    try:
        config = spec.config_model.model_validate({})
    except Exception as exc:
        raise ConformanceError(f"{rules.plugin}: its config must build with defaults alone: {exc}") from None
    again = spec.config_model.model_validate(rules.json(config.model_dump(mode="json"), "the default config"))
    rules.require(again == config, f"its config must survive model_dump → JSON → validate ({config!r} became {again!r})")


def _protocol_methods(protocol: type) -> list[str]:
    return sorted(m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m)))


# The contracts import torch only for type checking, so importing them here keeps the kit light.
_PROTOCOLS: dict[StageKind, type] = {
    StageKind.VALIDATOR: Validator,
    StageKind.AUGMENTER: Augmenter,
    StageKind.TRAINER: Trainer,
    StageKind.TUNER: Tuner,
    StageKind.EXPLAINER: Explainer,
    StageKind.DRIFT_DETECTOR: DriftDetector,
}


def _frames(splits: Splits) -> list[pd.DataFrame]:
    return [table.to_frame().copy() for table in (splits.train, splits.validation, splits.test)]


def _unchanged(splits: Splits, before: list[pd.DataFrame]) -> bool:
    return all(now.equals(then) for now, then in zip(_frames(splits), before, strict=True))


def check_validator(validator: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    before = _frames(splits)
    report = validator.validate(splits, step_context(work_dir, splits, step="validate"))
    rules.require(isinstance(report, ValidationReport), f"validate must return a ValidationReport, got {type(report).__name__}")
    rules.require(report.checks, "the report must hold at least one check")
    bad = [c.check for c in report.checks if c.severity not in ("info", "warn", "fail")]
    rules.require(not bad, f"check severities must be info, warn or fail: {bad}")
    rules.require(all(isinstance(c.passed, (bool, np.bool_)) for c in report.checks), "every check's `passed` must be a bool")
    stored = rules.json(report.to_dict(), "the report (report.json)", default=float)
    rules.require(len(ValidationReport.from_dict(stored).checks) == len(report.checks), "the report must read back from its JSON")
    rules.require(_unchanged(splits, before), "validators must not modify the splits")


def _findings(splits: Splits, work_dir: Path) -> dict[str, Any]:
    """What a validate step would hand the augmenter: the findings of the first discovered validator that takes
    these splits (image-file validators take image-file splits only)."""
    validators = [name for name in _registry.plugin_names(StageKind.VALIDATOR)
                  if ("image_files" in _registry.spec_of(StageKind.VALIDATOR, name).needs) == splits.info.image_files]
    if not validators:
        return {}
    spec = _registry.spec_of(StageKind.VALIDATOR, validators[0])
    report = _registry.create(spec, spec.parse_config({})).validate(splits, step_context(work_dir / "validate", splits, step="validate"))
    return {"validate": report.findings}


def check_augmenter(augmenter: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    context = step_context(work_dir, splits, step="augment", findings=_findings(splits, work_dir))
    before = _frames(splits)
    out = augmenter.augment(splits.train, context)
    rules.require(isinstance(out, Table), f"augment must return a Table, got {type(out).__name__}")
    rules.require(list(out.features.columns) == list(splits.train.features.columns),
                  f"augment must keep the feature columns in order: {list(splits.train.features.columns)} became "
                  f"{list(out.features.columns)}")
    rules.require(_unchanged(splits, before), "augmenters must not mutate their input, and never touch validation or test")
    rules.require(set(np.unique(out.labels)) <= set(range(splits.info.n_classes)), "labels must stay class indices")
    rules.require(np.all(out.row_ids[out.synthetic] == synthetic_row_id(splits.train.row_ids)),
                  "synthetic rows must have row_id -1 (\"\" beside text ids)")
    rules.require(set(out.row_ids[~out.synthetic]) <= set(splits.train.row_ids), "real rows must keep their training row ids")
    rules.require(np.isfinite(out.features.to_numpy(dtype=float)).all(), "features must stay finite")
    rules.require(np.isfinite(out.weights).all() and (out.weights >= 0).all(), "weights must be finite and non-negative")


def check_trainer(trainer: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    import torch

    from mlplat.steps import prepare_training

    data, _ = prepare_training(splits)
    epochs: list[int] = []
    trained = trainer.fit(data, step_context(work_dir, splits, step="train", on_epoch=lambda e, m: epochs.append(e)))
    rules.require(isinstance(trained, TrainedModel), f"fit must return a TrainedModel, got {type(trained).__name__}")
    rules.require(epochs, "fit must call context.on_epoch after every epoch")
    rules.require(isinstance(trained.network, torch.nn.Module), "TrainedModel.network must be a torch.nn.Module")
    architecture = rules.json(trained.architecture, "TrainedModel.architecture")
    rules.json(trained.metrics, "TrainedModel.metrics")
    rebuilt = trainer.build_network(architecture)  # from the JSON copy, as serving rebuilds it
    rules.require(isinstance(rebuilt, torch.nn.Module), "build_network must return a torch.nn.Module")
    state = trained.network.state_dict()
    shapes = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    rules.require(shapes == {k: tuple(v.shape) for k, v in state.items()},
                  "build_network(architecture) must rebuild a network whose state_dict matches the trained one's")
    rebuilt.load_state_dict(state)
    rebuilt.eval()
    trained.network.eval()
    X = torch.from_numpy(data.validation.X)
    with torch.no_grad():
        out, expected = rebuilt(X), trained.network(X)
    rules.require(tuple(out.shape) == (len(X), splits.info.n_classes), f"the network must output [rows, classes], got {list(out.shape)}")
    rules.require(torch.allclose(out, expected, atol=1e-5), "the rebuilt network must compute what the trained one does")


def check_tuner(tuner: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "width": {"type": "categorical", "choices": [8, 16]}}
    for direction, best in (("maximize", max), ("minimize", min)):
        seen: list[dict[str, Any]] = []

        def objective(params: dict[str, Any], report: Callable[[int, float], None]) -> float:
            seen.append(dict(params))  # noqa: B023 (the tuner calls it before the loop moves on)
            value = 1.0 - (params["x"] - 0.3) ** 2 + (0.01 if params["width"] == 16 else 0.0)
            for epoch in range(3):
                report(epoch, value)
            return value

        result = tuner.tune(objective, space, step_context(work_dir / direction, splits, step="tune"), direction=direction)
        rules.require(isinstance(result, TuneResult), f"tune must return a TuneResult, got {type(result).__name__}")
        rules.require(seen, "tune must call the objective")
        rules.require(set(result.best_params) == set(space),
                      f"best_params must name every searched parameter: {sorted(result.best_params)}")
        rules.require(0.0 <= result.best_params["x"] <= 1.0 and result.best_params["width"] in (8, 16),
                      f"best_params must lie inside the search space, got {result.best_params}")
        values = [1.0 - (p["x"] - 0.3) ** 2 + (0.01 if p["width"] == 16 else 0.0) for p in seen]
        rules.require(np.isclose(result.best_value, best(values)),
                      f"with direction={direction!r}, best_value must be the {best.__name__} over the trials "
                      f"({best(values)}), got {result.best_value}")
        rules.json(result.trials, "TuneResult.trials", default=str)


def check_explainer(explainer: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    model = model_double(splits)
    names = model.feature_names
    state = explainer.fit(model, splits.train.features[names].to_numpy(), step_context(work_dir, splits, step="explain"))
    rules.require(isinstance(state, ExplainerState), f"fit must return an ExplainerState, got {type(state).__name__}")
    rules.require(all(isinstance(v, np.ndarray) for v in state.arrays.values()), "ExplainerState.arrays must be numpy arrays")
    rules.require(set(state.global_importance) <= set(names), "global_importance must be keyed by feature names")
    # the model directory stores the state as JSON + safetensors; load must work from that copy alone
    stored = ExplainerState(rules.json(state.config, "ExplainerState.config"), _safetensors_copy(state.arrays, rules),
                            rules.json(state.global_importance, "ExplainerState.global_importance"))
    bound = explainer.load(model, stored)
    rules.require(isinstance(bound, BoundExplainer), f"load must return an object with explain(X), got {type(bound).__name__}")
    X = splits.test.features[names].to_numpy()[:2]
    explanations = bound.explain(X)
    rules.require(isinstance(explanations, list) and len(explanations) == len(X),
                  f"explain must return a list with one explanation per row ({len(X)})")
    _require_decided_class(bound, model, X, rules)
    for explanation in explanations:
        rules.require(isinstance(explanation, dict), "each explanation must be a dict")
        if "attributions" in explanation:
            rules.require(set(explanation["attributions"]) == set(names),
                          f"attributions must be keyed by every feature name {names}, got {sorted(explanation['attributions'])}")
        else:
            rules.require(set(explanation.get("features", [None])) <= set(names),
                          "an explanation needs 'attributions' keyed by feature names, or 'features' naming some of them")
    rules.json(explanations, "explanations", default=float)


def _require_decided_class(bound: Any, model: Any, X: np.ndarray, rules: _Rules) -> None:
    """An explanation that names its class names the one the model's decision rule picks (`ModelHandle.decide`),
    not the argmax: under a rule that always picks the last class, every named class is the last one."""
    from mlplat.manifest import Decision

    last = model.class_names[-1]
    model.decision = Decision(kind="offsets", offsets=[0.0] * (len(model.class_names) - 1) + [50.0], selected_on="conformance")
    try:
        named = [e.get("class") for e in bound.explain(X) if isinstance(e, dict) and "class" in e]
    finally:
        model.decision = None
    rules.require(all(name == last for name in named),
                  f"an explanation's class must follow the model's decision rule (ModelHandle.decide): expected {last!r}, got {named}")


def _safetensors_copy(arrays: Mapping[str, np.ndarray], rules: _Rules) -> dict[str, np.ndarray]:
    from safetensors.numpy import load, save

    if not arrays:
        return {}
    try:
        return load(save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
    except Exception as exc:
        raise ConformanceError(f"{rules.plugin}: ExplainerState.arrays must be storable as safetensors: {exc}") from None


def check_drift_detector(detector: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    rng = np.random.default_rng(0)
    columns = [f"x{i}" for i in range(5)]
    reference = pd.DataFrame(rng.normal(size=(1000, 5)), columns=columns)
    state = detector.fit(reference, step_context(work_dir, splits, step="fit_drift_reference"))
    state = rules.json(state, "the reference state (drift_reference.json)", default=float)  # the monitor reads it back
    same = detector.detect(state, pd.DataFrame(rng.normal(size=(500, 5)), columns=columns))
    moved = detector.detect(state, pd.DataFrame(rng.normal(size=(500, 5)) + 2.0, columns=columns))
    rules.require(isinstance(same, DriftResult) and isinstance(moved, DriftResult), "detect must return a DriftResult")
    rules.require(0.0 <= same.share <= 1.0 and 0.0 <= moved.share <= 1.0, "share must lie in [0, 1]")
    rules.require({f.feature for f in moved.features} == set(columns), "detect must report every reference column")
    rules.require(not same.dataset_drift, "a window drawn from the reference's distribution must not drift")
    rules.require(moved.dataset_drift and moved.share > same.share, "a window shifted by 2 standard deviations must drift")


def check_image_explainer(explainer: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    """An explainer of image models: fitted and loaded against a small torch CNN, it explains decoded images."""
    from mlplat.images import IMAGE_COLUMN, decode, read_bytes
    from mlplat.testing.fixtures import image_model_double

    model = image_model_double(splits)
    state = explainer.fit(model, np.empty((0, 0)), step_context(work_dir, splits, step="explain"))
    rules.require(isinstance(state, ExplainerState), f"fit must return an ExplainerState, got {type(state).__name__}")
    stored = ExplainerState(rules.json(state.config, "ExplainerState.config"), _safetensors_copy(state.arrays, rules),
                            rules.json(state.global_importance, "ExplainerState.global_importance"))
    bound = explainer.load(model, stored)
    rules.require(isinstance(bound, BoundExplainer), f"load must return an object with explain(X), got {type(bound).__name__}")
    locations = splits.test.features[IMAGE_COLUMN].astype(str).tolist()[:2]
    X = np.stack([decode(read_bytes(location), model.image_preprocessing).numpy() for location in locations])
    explanations = bound.explain(X)
    rules.require(isinstance(explanations, list) and len(explanations) == len(X),
                  f"explain must return a list with one explanation per image ({len(X)})")
    _require_decided_class(bound, model, X, rules)
    rules.require(all(isinstance(e, dict) for e in explanations), "each explanation must be a dict")
    rules.json(explanations, "explanations", default=float)


def check_image_drift_detector(detector: Any, splits: Splits, work_dir: Path, rules: _Rules) -> None:
    """A drift detector of image models: its reference holds embeddings and class probabilities (mlplat.embeddings)."""
    from mlplat.embeddings import drift_columns

    rng = np.random.default_rng(0)
    n_classes = len(splits.info.classes)

    def rows(n: int, shift: float) -> pd.DataFrame:
        embedding = rng.normal(size=(n, 8)) + shift
        logits = embedding[:, :n_classes]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return pd.DataFrame(np.hstack([embedding, probabilities]), columns=drift_columns(8, n_classes, []))

    state = detector.fit(rows(1000, 0.0), step_context(work_dir, splits, step="fit_drift_reference"))
    state = rules.json(state, "the reference state (drift_reference.json)", default=float)
    same, moved = detector.detect(state, rows(300, 0.0)), detector.detect(state, rows(300, 2.0))
    rules.require(isinstance(same, DriftResult) and isinstance(moved, DriftResult), "detect must return a DriftResult")
    rules.require(0.0 <= same.share <= 1.0 and 0.0 <= moved.share <= 1.0, "share must lie in [0, 1]")
    rules.require(not same.dataset_drift, "a window drawn from the reference's distribution must not drift")
    rules.require(moved.dataset_drift, "a window whose embeddings moved by 2 standard deviations must drift")


# plugins that declare handles_images are checked on image files with these, where their kind has one
_IMAGE_CHECKS: dict[StageKind, Callable[[Any, Splits, Path, _Rules], None]] = {
    StageKind.EXPLAINER: check_image_explainer,
    StageKind.DRIFT_DETECTOR: check_image_drift_detector,
}

_KIND_CHECKS: dict[StageKind, Callable[[Any, Splits, Path, _Rules], None]] = {
    StageKind.VALIDATOR: check_validator,
    StageKind.AUGMENTER: check_augmenter,
    StageKind.TRAINER: check_trainer,
    StageKind.TUNER: check_tuner,
    StageKind.EXPLAINER: check_explainer,
    StageKind.DRIFT_DETECTOR: check_drift_detector,
}
