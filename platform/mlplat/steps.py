"""Step functions: the one implementation of each pipeline step.

Every step reads its inputs from artifact paths and writes its outputs to artifact paths.
The in-process runner and the KFP components call these same functions with the same
paths, so both produce the same results. Nothing here reaches outside its arguments.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlplat import modeldir, registry
from mlplat.contracts.context import EpochCallback, StepContext, _ignore_epoch
from mlplat.data import Splits, image_shape, load_source, split_frame
from mlplat.errors import SpecError, UsageError
from mlplat.manifest import CVBand, DriftDetectorRef, ExplainerRef, Metrics, ModelManifest, PluginRef, TargetStandardization
from mlplat.registry import StageKind
from mlplat.reports import write_json
from mlplat.spec import PipelineSpec, declared_task, task_problems, tune_direction

FINDINGS_JSON, BEST_PARAMS_JSON, METRICS_JSON = "findings.json", "best_params.json", "metrics.json"
REFERENCE_ROWS = 5000


def _context(spec: PipelineSpec, step: str, out: Path, splits: Splits, **extra: Any) -> StepContext:
    out.mkdir(parents=True, exist_ok=True)
    return StepContext(step=step, work_dir=out, info=splits.info, seed=spec.seed, **extra)


def ingest(spec: PipelineSpec, spec_dir: Path, out: Path) -> Splits:
    """Load the dataset source and write the seeded splits (stratified for a classification).
    A task inferred from the label is checked against the spec here, before any training (exit 2)."""
    ds = spec.dataset
    frame, label = load_source(ds.source, ds.label, ds.features, spec_dir)
    shape = image_shape(ds.source, spec_dir)
    splits = split_frame(frame, label, spec.name, ds.validation, ds.test, spec.seed, ds.stratify, shape, ds.task)
    if declared_task(spec) is None:
        problems = task_problems(spec, splits.info.task)
        if problems:
            raise SpecError(problems, f"{spec.name} (task {splits.info.task!r} inferred from label {label!r})")
    splits.save(out)
    return splits


def validate(spec: PipelineSpec, data: Path, out: Path) -> Any:
    """Run the validator; write report.{json,md,html}, schema.json, findings.json. Returns the report."""
    from mlplat.validation_report import write_validation_report

    step = spec.steps.validate_
    assert step is not None
    splits = Splits.load(data)
    validator = registry.create(StageKind.VALIDATOR, step.plugin, step.params, step="validate")
    report = validator.validate(splits, _context(spec, "validate", out, splits))
    write_validation_report(report, out, title=f"Data validation: {spec.name}")
    write_json(out / modeldir.SCHEMA, report.schema)
    write_json(out / FINDINGS_JSON, report.findings)
    return report


def augment(spec: PipelineSpec, data: Path, out: Path, findings: Path | None = None) -> Splits:
    """Apply each augmenter in turn to the training split; validation and test stay untouched."""
    splits = Splits.load(data)
    found = {"validate": json.loads(findings.read_text())} if findings and findings.is_file() else {}
    train = splits.train
    rows: list[dict[str, Any]] = [{"augmenter": "input", "rows": len(train), "synthetic": int(train.synthetic.sum())}]
    for i, step in enumerate(spec.steps.augment):
        augmenter = registry.create(StageKind.AUGMENTER, step.plugin, step.params, step=f"augment.{i}")
        train = augmenter.augment(train, _context(spec, f"augment.{i}", out, splits, findings=found))
        rows.append({"augmenter": step.plugin, "rows": len(train), "synthetic": int(train.synthetic.sum())})
    augmented = splits.with_train(train)
    augmented.save(out)
    write_json(out / "augment.json", rows)
    return augmented


def read_best_params(path: Path, source: str | None = None) -> dict[str, Any]:
    """The `best_params` of a tune step's best_params.json; errors name `source` (default: the path)."""
    source = source or str(path)
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{source}: cannot read it as JSON ({exc})") from None
    if not isinstance(found, dict) or not isinstance(found.get("best_params"), dict):
        raise UsageError(f"{source}: expected a tune step's best_params.json, an object with a 'best_params' object")
    return found["best_params"]


def trainer_params(spec: PipelineSpec, best_params: Path | None) -> dict[str, Any]:
    params = dict(spec.steps.train.params)
    if best_params and best_params.is_file():
        params.update(read_best_params(best_params))
    return params


def inherited_preprocessing(trainer: Any, context: StepContext) -> dict[str, Any] | None:
    """Preprocessing statistics the trainer must reuse instead of fitting new ones, or None. A trainer
    opts in with `inherited_preprocessing(context)`; a warm start returns its source model's, because
    the layers it keeps (frozen or not) were trained on inputs scaled that way."""
    method = getattr(trainer, "inherited_preprocessing", None)
    return method(context) if callable(method) else None


def prepare_training(splits: Splits, preprocessing: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Fit preprocessing on real training rows, or reuse `preprocessing` (a model's saved statistics);
    return (TrainingData, Standardizer). Training rows keep their synthetic tag (CV holds out real rows only).
    A regression target is standardized too (TrainingData.target), fitted on the real training rows."""
    from mlplat.contracts.trainer import ArrayData, TrainingData
    from mlplat.data import require_numeric
    from mlplat.preprocessing import Standardizer, TargetStandardizer

    for table in (splits.train, splits.validation):
        require_numeric(table.features)
    real = ~splits.train.synthetic
    if preprocessing is not None:
        standardizer = Standardizer.from_json(preprocessing)
    else:
        standardizer = Standardizer.fit(splits.train.features.to_numpy()[real] if real.any() else splits.train.features.to_numpy())
    weights = splits.train.weights
    target = None
    y_train, y_val = splits.train.labels, splits.validation.labels
    if splits.info.regression:
        target = TargetStandardizer.fit(y_train[real] if real.any() else y_train)
        y_train, y_val = target.transform(y_train), target.transform(y_val)
    train = ArrayData(standardizer.transform(splits.train.features.to_numpy()), y_train,
                      None if np.all(weights == 1) else weights, splits.train.synthetic)
    val = ArrayData(standardizer.transform(splits.validation.features.to_numpy()), y_val)
    return TrainingData(train, val, splits.info, target), standardizer


def trial_params(spec: PipelineSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A tune trial's trainer params: the train step's, then what the trainer switches off for trials
    (its config model's `tune_trial_params`, e.g. CV and checkpoints: a trial needs one score, and its
    directory is deleted), then the trial's own values. The retrain of the best params keeps the spec's."""
    config_model = registry.get(StageKind.TRAINER, spec.steps.train.plugin).config_model
    return {**spec.steps.train.params, **getattr(config_model, "tune_trial_params", {}), **params}


def tune_objective(spec: PipelineSpec, splits: Splits, out: Path) -> Any:
    """The tuner's objective: train the configured trainer with a trial's params (`trial_params`)
    and return the tune metric; every epoch's metric goes to `report` (for pruning)."""
    import shutil
    import tempfile

    step = spec.steps.tune
    assert step is not None
    trainer_spec = registry.get(StageKind.TRAINER, spec.steps.train.plugin)
    base = dict(spec.steps.train.params)
    training, _ = prepare_training(splits, inherited_preprocessing(trainer_spec.create(base, "steps.train.params"),
                                                                   _context(spec, "tune", out, splits)))
    trials_dir = out / "trials"

    def objective(params: dict[str, Any], report: Any) -> float:
        trainer = registry.create(StageKind.TRAINER, spec.steps.train.plugin, trial_params(spec, params), step="tune.trial",
                                  path="steps.tune.search_space")
        trials_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="trial-", dir=trials_dir))  # parallel trials must not share checkpoints
        try:
            ctx = _context(spec, "tune.trial", work, splits, on_epoch=lambda e, m: report(e, float(m[step.metric])),
                           reports=False)
            metrics = trainer.fit(training, ctx).metrics
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the runner retrains the best params; trial weights are not kept
        if step.metric not in metrics:
            raise KeyError(f"trainer reported no {step.metric!r} (has: {', '.join(sorted(metrics))})")
        return float(metrics[step.metric])

    return objective


def tune(spec: PipelineSpec, data: Path, out: Path, resume: bool = False) -> dict[str, Any]:
    """Search the trainer's config space with the tuner plugin; write best_params.json and trials.json.
    With `resume`, the tuner continues the study stored in `out` instead of starting over."""
    step = spec.steps.tune
    assert step is not None
    splits = Splits.load(data)
    objective = tune_objective(spec, splits, out)
    tuner = registry.create(StageKind.TUNER, step.plugin, step.params, step="tune")
    started = time.perf_counter()
    direction = tune_direction(spec, splits.info.task)
    result = tuner.tune(objective, step.search_space, _context(spec, "tune", out, splits, resume=resume), direction)
    summary = {"best_params": result.best_params, "best_value": result.best_value, "metric": step.metric,
               "direction": direction,
               "trials": len(result.trials), "trial_epochs": sum(int(t.get("epochs", 0)) for t in result.trials),
               "states": {s: sum(1 for t in result.trials if t.get("state") == s) for s in {t.get("state") for t in result.trials}},
               "wall_s": time.perf_counter() - started}
    write_json(out / BEST_PARAMS_JSON, summary)
    write_json(out / "trials.json", result.trials)
    return summary


def train(
    spec: PipelineSpec, data: Path, out: Path, best_params: Path | None = None, schema: Path | None = None,
    on_epoch: EpochCallback = _ignore_epoch, resume: bool = False, runs_root: Path | None = None,
) -> Path:
    """Train the configured trainer; stage the model directory at out/model. Returns its path.
    `runs_root` lets a trainer resolve run ids (warm start from a previous run)."""
    return train_model(spec, data, out, best_params, schema, on_epoch, resume, runs_root).directory


def train_model(
    spec: PipelineSpec, data: Path, out: Path, best_params: Path | None = None, schema: Path | None = None,
    on_epoch: EpochCallback = _ignore_epoch, resume: bool = False, runs_root: Path | None = None,
) -> modeldir.LoadedModel:
    """`train`, returning the staged model loaded: an in-process runner hands it to evaluate, explain
    and drift (their `loaded=`) instead of each step loading it again."""
    splits = Splits.load(data)
    params = trainer_params(spec, best_params)
    trainer = registry.create(StageKind.TRAINER, spec.steps.train.plugin, params, step="train", path="steps.train.params")
    context = _context(spec, "train", out, splits, on_epoch=on_epoch, resume=resume, runs_root=runs_root)
    training, standardizer = prepare_training(splits, inherited_preprocessing(trainer, context))
    started = time.perf_counter()
    trained = trainer.fit(training, context)
    wall = time.perf_counter() - started
    real = splits.train.take(np.flatnonzero(~splits.train.synthetic))
    reference = real.features.sample(min(len(real), REFERENCE_ROWS), random_state=spec.seed).copy()
    model_dir = modeldir.ModelDir(out / "model")
    trainer_config = trainer.config.model_dump(mode="json") if hasattr(trainer, "config") else params
    manifest = ModelManifest(
        name=spec.name,
        trainer=PluginRef.of(StageKind.TRAINER, spec.steps.train.plugin, trainer_config),
        architecture=trained.architecture,
        task=splits.info.task,
        target=TargetStandardization(**training.target.to_json()) if training.target else None,
        features=modeldir.feature_schema(real.features),
        image_shape=splits.info.image_shape,
        label=splits.info.label,
        classes=splits.info.classes,
        preprocessing=standardizer.to_json(),
        metrics=Metrics(train=trained.metrics),
        cv=CVBand.from_trainer(trained.cv) if trained.cv else None,
        seed=spec.seed,
        created_at=time.time(),
        training_wall_s=wall,
    )
    model_dir.write_weights(trained.network)
    model_dir.write(manifest)
    loaded = modeldir.LoadedModel.load(model_dir)  # the one load of this run: also proves the directory loads
    reference[modeldir.PREDICTION_COLUMN] = loaded.predict_labels(reference[loaded.feature_names].to_numpy())
    reference.reset_index(drop=True).to_parquet(model_dir.reference, index=False)
    if schema and schema.is_file():
        model_dir.schema.write_text(schema.read_text())
    write_json(out / METRICS_JSON, {"history": trained.history, "final": trained.metrics, "cv": trained.cv, **trained.extras})
    return loaded


def _loaded(model: Path, loaded: modeldir.LoadedModel | None) -> modeldir.LoadedModel:
    """The model a step works on: the caller's already-loaded one (same directory), else loaded from `model`."""
    if loaded is None:
        return modeldir.LoadedModel.load(model)
    if Path(loaded.directory).resolve() != Path(model).resolve():
        raise ValueError(f"loaded model is from {loaded.directory}, the step was given {model}")
    return loaded


def evaluate(spec: PipelineSpec, data: Path, model: Path, out: Path, *,
             loaded: modeldir.LoadedModel | None = None) -> dict[str, Any]:
    """Test-set metrics and the evaluation gate. Writes metrics.json and records them in model.json."""
    from mlplat.evaluation import classification_metrics, gate_failures, regression_metrics

    out.mkdir(parents=True, exist_ok=True)
    splits = Splits.load(data)
    loaded = _loaded(model, loaded)
    X = splits.test.features[loaded.feature_names].to_numpy()
    if loaded.task == "regression":
        metrics = regression_metrics(splits.test.labels, loaded.predict_values(X))
    else:
        metrics = classification_metrics(splits.test.labels, loaded.predict_proba(X), splits.info.classes)
    failures = gate_failures(metrics, spec.steps.evaluate.params)
    result = {"test": metrics, "gate": {"passed": not failures, "failures": failures}}
    write_json(out / METRICS_JSON, result)
    test = {k: v for k, v in metrics.items() if isinstance(v, float)}
    loaded.update_manifest(metrics=Metrics(train=loaded.manifest.metrics.train, test=test))
    return result


def explain(spec: PipelineSpec, data: Path, model: Path, out: Path, *,
            loaded: modeldir.LoadedModel | None = None) -> dict[str, float]:
    """Fit the explainer; store its state (JSON + safetensors) in the model directory."""
    from safetensors.numpy import save_file

    from mlplat.explanations import importance_html

    step = spec.steps.explain
    assert step is not None
    splits = Splits.load(data)
    loaded = _loaded(model, loaded)
    explainer = registry.create(StageKind.EXPLAINER, step.plugin, step.params, step="explain")
    background = splits.train.features[loaded.feature_names].to_numpy()[~splits.train.synthetic]
    state = explainer.fit(loaded, background, _context(spec, "explain", out, splits))
    if state.arrays:
        save_file({k: np.ascontiguousarray(v) for k, v in state.arrays.items()}, str(loaded.model_dir.explainer_arrays))
    reference = ExplainerRef.of(StageKind.EXPLAINER, step.plugin, step.params, config=state.config,
                                arrays=sorted(state.arrays))
    loaded.update_manifest(explainer=reference, global_importance=state.global_importance)
    write_json(out / "global_importance.json", state.global_importance)
    (out / "report.html").write_text(importance_html(loaded.name, step.plugin, state.global_importance))
    return state.global_importance


def monitor(spec: PipelineSpec, model: Path, out: Path, *, loaded: modeldir.LoadedModel | None = None) -> None:
    """Fit the drift detector's reference state from the model's reference sample."""
    step = spec.steps.monitor
    assert step is not None
    loaded = _loaded(model, loaded)
    detector = registry.create(StageKind.DRIFT_DETECTOR, step.plugin, step.params, step="monitor")
    ctx = StepContext(step="monitor", work_dir=out, info=_info_from_manifest(loaded.manifest), seed=spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    # the explain step (if it ran) wrote global importances: drift in ignored features pages nobody
    state = detector.fit(loaded.reference(), ctx, loaded.manifest.global_importance)
    loaded.model_dir.write_state(modeldir.DRIFT_REFERENCE, state)
    loaded.update_manifest(drift_detector=DriftDetectorRef.of(StageKind.DRIFT_DETECTOR, step.plugin, step.params,
                                                              state=modeldir.DRIFT_REFERENCE))


def _info_from_manifest(manifest: ModelManifest) -> Any:
    from mlplat.data import DatasetInfo

    return DatasetInfo(manifest.name, manifest.label, manifest.feature_names, list(manifest.classes),
                       manifest.image_shape, manifest.task)

