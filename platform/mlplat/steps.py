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
import pandas as pd

from mlplat import modeldir, registry
from mlplat.contracts.augmenter import ImageAugmentation, ImageAugmenter
from mlplat.contracts.context import EpochCallback, StepContext, _ignore_epoch
from mlplat.contracts.drift_detector import probability_columns
from mlplat.contracts.trainer import InheritsPreprocessing
from mlplat.data import HELD_OUT_FIELDS, Splits, check_same_columns, image_shape, read_source, split_frame
from mlplat.errors import SpecError, UsageError
from mlplat.manifest import Calibration, CVBand, DriftDetectorRef, ExplainerRef, Metrics, ModelManifest, PluginRef, TargetStandardization
from mlplat.registry import StageKind
from mlplat.reports import write_json
from mlplat.sources import cache_key, fingerprint
from mlplat.spec import EvaluateGate, PipelineSpec, declared_task, task_problems, tune_direction
from mlplat.tasks import GATE_METRICS

FINDINGS_JSON, BEST_PARAMS_JSON, METRICS_JSON = "findings.json", "best_params.json", "metrics.json"
SOURCES_JSON = "sources.json"  # ingest: {dataset field: fingerprint} of every file it read
REFERENCE_ROWS = 5000


def _context(spec: PipelineSpec, step: str, out: Path, splits: Splits, **extra: Any) -> StepContext:
    out.mkdir(parents=True, exist_ok=True)
    return StepContext(step=step, work_dir=out, info=splits.info, seed=spec.seed, **extra)


def ingest(spec: PipelineSpec, spec_dir: Path, out: Path, expected_fingerprint: str = "") -> Splits:
    """Load the dataset source (and the held-out validation/test files, if any), apply the column roles
    and types, and write the seeded splits (stratified for a classification), plus sources.json: the
    fingerprint of every file read (see mlplat.sources). A task inferred from the label is checked
    against the spec here, before any training (exit 2).

    `expected_fingerprint` is the `data_fingerprint` a KFP run was started with (its ingest cache key):
    data that changed since then is refused, so a cached ingest always matches the data it claims."""
    from mlplat.columns import split_roles

    ds = spec.dataset
    if ds.image is not None:
        return _ingest_images(spec, spec_dir, out, expected_fingerprint)
    frame, label, found = read_source(ds.source, ds.label, None, spec_dir, na_values=ds.na_values)
    fingerprints = {"source": found}
    shape = image_shape(ds.source, spec_dir)
    pixels = {str(c): "numeric" for c in frame.columns if c != label} if shape else {}  # images: no type inference
    roles = split_roles(frame, label, ds.features, ds.exclude, ds.weight, ds.id, {**pixels, **ds.column_types})
    parts = [roles]
    held_out = {}
    for split, field in HELD_OUT_FIELDS.items():
        if location := getattr(ds, field):
            other, _, fingerprints[field] = read_source(location, label, None, spec_dir, f"dataset.{field}", ds.na_values)
            check_same_columns(frame, other, f"dataset.{field}")
            # the source's types decide: a held-out file is read as the data the model trains on
            part = split_roles(other, label, ds.features, ds.exclude, ds.weight, ds.id, roles.types)
            parts.append(part)
            held_out[split] = part.features.assign(**{label: part.label})
    read = cache_key(fingerprints)
    if expected_fingerprint and read != expected_fingerprint:
        raise UsageError(f"dataset: the data changed since this run was started (expected {expected_fingerprint}, "
                         f"read {read}); start a new run")
    # one id type across the files: text as soon as one file's ids are text
    text_ids = any(p.row_ids.dtype == object for p in parts)
    row_ids = np.concatenate([p.row_ids.astype(str).astype(object) if text_ids else p.row_ids for p in parts]) if ds.id else None
    weights = np.concatenate([p.weights for p in parts]) if ds.weight else None
    source = roles.features  # shares the read frame's columns; the label joins it without copying the features
    source[label] = roles.label
    splits = split_frame(source, label, spec.name, ds.validation, ds.test, spec.seed,
                         ds.stratify, shape, held_out, row_ids=row_ids, weights=weights, column_types=roles.types,
                         bad_cells=[c for p in parts for c in p.bad_cells], id_column=ds.id, task=ds.task)
    if declared_task(spec) is None:
        problems = task_problems(spec, splits.info.task)
        if problems:
            raise SpecError(problems, f"{spec.name} (task {splits.info.task!r} inferred from label {label!r})")
    splits.save(out)
    write_json(out / SOURCES_JSON, {field: f.to_json() for field, f in fingerprints.items()})
    return splits


def _ingest_images(spec: PipelineSpec, spec_dir: Path, out: Path, expected_fingerprint: str) -> Splits:
    """An image-file dataset: split tables of references (IMAGE_COLUMN, label, row id), stratified; nothing decoded."""
    from mlplat.image_sources import read_images
    from mlplat.images import IMAGE_COLUMN

    ds = spec.dataset
    assert ds.image is not None
    frame, label, found = read_images(ds.source, ds.label, ds.image.path_column, spec_dir, out)
    read = cache_key({"source": found})
    if expected_fingerprint and read != expected_fingerprint:
        raise UsageError(f"dataset: the images changed since this run was started (expected {expected_fingerprint}, "
                         f"read {read}); start a new run")
    image = {"size": list(ds.image.size), "channels": ds.image.channels, "max_pixels": ds.image.max_pixels}
    splits = split_frame(frame[[IMAGE_COLUMN, label]], label, spec.name, ds.validation, ds.test, spec.seed, ds.stratify,
                         [ds.image.channels, *ds.image.size], column_types={IMAGE_COLUMN: "image"},
                         task=ds.task or "classification", image=image)
    if splits.info.task != "classification":
        raise SpecError([("dataset.task", "image datasets are classifications")], spec.name)
    splits.save(out)
    write_json(out / SOURCES_JSON, {"source": found.to_json()})
    return splits


def data_fingerprint(spec: PipelineSpec, spec_dir: Path) -> str:
    """The ingest cache key's data part for a spec's files as they are now (object stores: metadata only)."""
    ds = spec.dataset
    if ds.image is not None:
        from mlplat.image_sources import listing_fingerprint

        return cache_key({"source": listing_fingerprint(ds.source, ds.label, ds.image.path_column, spec_dir)})
    fields = {"source": ds.source} | {f: getattr(ds, f) for f in HELD_OUT_FIELDS.values() if getattr(ds, f)}
    return cache_key({field: fingerprint(location, spec_dir, f"dataset.{field}") for field, location in fields.items()})


def read_fingerprints(data: Path) -> dict[str, Any]:
    """The fingerprints an ingest step recorded for its data directory ({} before there were any)."""
    path = data / SOURCES_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


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
        if splits.info.image_files and isinstance(augmenter, ImageAugmenter):  # applied while training (train_model)
            rows.append({"augmenter": step.plugin, "rows": len(train), "synthetic": int(train.synthetic.sum()), "on_the_fly": True})
            continue
        train = augmenter.augment(train, _context(spec, f"augment.{i}", out, splits, findings=found))
        rows.append({"augmenter": step.plugin, "rows": len(train), "synthetic": int(train.synthetic.sum())})
    augmented = splits.with_train(train)
    augmented.save(out)
    write_json(out / "augment.json", rows)
    return augmented


class _Chain:
    """Per-image transforms one after the other (a class, not a closure: DataLoader workers pickle it)."""

    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for transform in self.transforms:
            x = transform(x)
        return x


def image_augmentation(spec: PipelineSpec, preprocessing: Any, context: StepContext) -> ImageAugmentation | None:
    """The on-the-fly augmentation of an image-file training split: the `ImageAugmenter`s of steps.augment,
    their per-image transforms chained in order; at most one of them may mix batches."""
    samples, batches = [], []
    for i, step in enumerate(spec.steps.augment):
        augmenter = registry.create(StageKind.AUGMENTER, step.plugin, step.params, step=f"augment.{i}")
        if isinstance(augmenter, ImageAugmenter):
            part = augmenter.image_augmentation(preprocessing, context.info.n_classes, context)
            samples += [part.sample] if part.sample is not None else []
            batches += [(i, part.batch)] if part.batch is not None else []
    if len(batches) > 1:
        raise SpecError([(f"steps.augment[{batches[1][0]}]", "only one augmenter may mix batches (mixup/cutmix)")])
    if not samples and not batches:
        return None
    return ImageAugmentation(_Chain(samples) if samples else None, batches[0][1] if batches else None)


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
    opts in by satisfying `InheritsPreprocessing`; a warm start returns its source model's, because
    the layers it keeps (frozen or not) were trained on inputs scaled that way."""
    return trainer.inherited_preprocessing(context) if isinstance(trainer, InheritsPreprocessing) else None


def prepare_training(splits: Splits, preprocessing: dict[str, Any] | None = None,
                     encodings: list[Any] | None = None) -> tuple[Any, Any]:
    """Fit the input encoding (vocabularies) and preprocessing (imputation, indicators, standardization) on real
    training rows, or reuse `preprocessing` and `encodings` (a model's saved ones); return (TrainingData,
    TabularPreprocessor). Training rows keep their synthetic tag (CV holds out real rows only).
    A regression target is standardized too (TrainingData.target), fitted on the real training rows."""
    from dataclasses import replace

    from mlplat.columns import TabularPreprocessor, encode_frame, fit_encodings
    from mlplat.contracts.trainer import ArrayData, TrainingData
    from mlplat.manifest import ImagePreprocessing
    from mlplat.modeldir import preprocessor_from_json
    from mlplat.preprocessing import TargetStandardizer

    if splits.info.image_files:
        return prepare_images(splits, preprocessing)
    refuse_bad_cells(splits.info.bad_cells)
    real = ~splits.train.synthetic
    fitted_on = splits.train.take(np.flatnonzero(real)) if real.any() else splits.train
    encodings = encodings or fit_encodings(fitted_on.features, splits.info.column_types)
    X_train = encode_frame(splits.train.features, encodings)
    if preprocessing is not None:
        preprocessor = preprocessor_from_json(preprocessing)
        if isinstance(preprocessor, ImagePreprocessing):
            raise UsageError("steps.train.params.init_from: the source model takes images; this dataset is tabular")
    else:
        preprocessor = TabularPreprocessor.fit(X_train[real] if real.any() else X_train, encodings)
    weights = splits.train.weights
    target = None
    y_train, y_val = splits.train.labels, splits.validation.labels
    if splits.info.regression:
        target = TargetStandardizer.fit(y_train[real] if real.any() else y_train)
        y_train, y_val = target.transform(y_train), target.transform(y_val)
    train = ArrayData(preprocessor.transform(X_train), y_train, None if np.all(weights == 1) else weights,
                      splits.train.synthetic)
    val = ArrayData(preprocessor.transform(encode_frame(splits.validation.features, encodings)), y_val)
    layout = getattr(preprocessor, "input_layout", None)
    return TrainingData(train, val, replace(splits.info, input_layout=layout), target), preprocessor


def prepare_images(splits: Splits, preprocessing: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """An image-file dataset's (TrainingData of ImageSets, ImagePreprocessing): the channel statistics are
    fitted on a sample of the real training images, or `preprocessing` (a model's saved one) is reused."""
    from mlplat.contracts.trainer import ImageSet, TrainingData
    from mlplat.images import IMAGE_COLUMN, fit_preprocessing
    from mlplat.manifest import ImagePreprocessing

    image = splits.info.image
    assert image is not None
    real = splits.train.take(np.flatnonzero(~splits.train.synthetic)) if (~splits.train.synthetic).any() else splits.train
    if preprocessing is not None and preprocessing.get("kind") == "image":
        fitted = ImagePreprocessing.model_validate(preprocessing)
    else:
        fitted = fit_preprocessing(real.features[IMAGE_COLUMN].tolist(), size=image["size"], channels=image["channels"],
                                   max_pixels=image["max_pixels"])
    weights = splits.train.weights
    train = ImageSet(splits.train.features[IMAGE_COLUMN].tolist(), splits.train.labels, fitted,
                     None if np.all(weights == 1) else weights, splits.train.synthetic)
    validation = ImageSet(splits.validation.features[IMAGE_COLUMN].tolist(), splits.validation.labels, fitted)
    return TrainingData(train, validation, splits.info), fitted


def refuse_bad_cells(cells: list[dict[str, Any]]) -> None:
    """Training never turns a bad cell into a missing value silently (the validator reports them, too)."""
    if cells:
        shown = "; ".join(f"{c['column']} row {c['row_id']}: {c['value']!r}" for c in cells[:5])
        raise UsageError(f"dataset: {len(cells)}{'+' if len(cells) >= 100 else ''} cells of numeric columns are not numbers "
                         f"({shown}); fix them, list them in dataset.na_values, or set dataset.column_types")


def model_encodings(splits: Splits) -> list[Any]:
    from mlplat.columns import fit_encodings

    real = splits.train.take(np.flatnonzero(~splits.train.synthetic))
    return fit_encodings(real.features if len(real) else splits.train.features, splits.info.column_types)


def trial_params(spec: PipelineSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A tune trial's trainer params: the train step's, then what the trainer switches off for trials
    (its plugin spec's `tune_trial_params`, e.g. CV and checkpoints: a trial needs one score, and its
    directory is deleted), then the trial's own values. The retrain of the best params keeps the spec's."""
    overrides = registry.spec_of(StageKind.TRAINER, spec.steps.train.plugin).tune_trial_params
    return {**spec.steps.train.params, **overrides, **params}


def tune_objective(spec: PipelineSpec, splits: Splits, out: Path) -> Any:
    """The tuner's objective: train the configured trainer with a trial's params (`trial_params`)
    and return the tune metric; every epoch's metric goes to `report` (for pruning)."""
    import shutil
    import tempfile

    step = spec.steps.tune
    assert step is not None
    trainer_spec = registry.spec_of(StageKind.TRAINER, spec.steps.train.plugin)
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
    real = splits.train.take(np.flatnonzero(~splits.train.synthetic))
    # the drift reference is held-out rows (validation): what the model outputs on rows it never fitted is what it
    # will serve; on its training rows an overfit model is over-confident, and the output-drift test alarms on clean traffic
    held_out = splits.validation if len(splits.validation.labels) else real
    reference = held_out.features.sample(min(len(held_out.labels), REFERENCE_ROWS), random_state=spec.seed).copy()
    if splits.info.image_files:  # one feature, the encoded image; its preprocessing: size, channels, statistics
        from mlplat.manifest import Feature

        training, preprocessing = prepare_images(splits, inherited_preprocessing(trainer, context))
        training.augmentation = image_augmentation(spec, preprocessing, context)
        features, preprocessing_json = [Feature(name=reference.columns[0], dtype="image", kind="image")], preprocessing.model_dump()
    else:
        encodings = model_encodings(splits)
        training, standardizer = prepare_training(splits, inherited_preprocessing(trainer, context), encodings)
        features, preprocessing_json = modeldir.feature_schema(real.features, encodings), standardizer.to_json()
    started = time.perf_counter()
    trained = trainer.fit(training, context)
    wall = time.perf_counter() - started
    model_dir = modeldir.ModelDir(out / "model")
    trainer_config = trainer.config.model_dump(mode="json") if hasattr(trainer, "config") else params
    manifest = ModelManifest(
        name=spec.name,
        trainer=PluginRef.of(StageKind.TRAINER, spec.steps.train.plugin, trainer_config),
        architecture=trained.architecture,
        task=splits.info.task,
        target=TargetStandardization(**training.target.to_json()) if training.target else None,
        features=features,
        image_shape=splits.info.image_shape,
        label=splits.info.label,
        classes=splits.info.classes,
        preprocessing=preprocessing_json,
        metrics=Metrics(train=trained.metrics),
        cv=CVBand.from_trainer(trained.cv) if trained.cv else None,
        decision=trained.decision,
        seed=spec.seed,
        created_at=time.time(),
        training_wall_s=wall,
    )
    model_dir.write_weights(trained.network)
    model_dir.write(manifest)
    loaded = modeldir.LoadedModel.load(model_dir)  # the one load of this run: also proves the directory loads
    if loaded.task == "classification" and len(splits.validation.labels) and not loaded.is_image:
        loaded.update_manifest(calibration=fit_calibration(loaded, splits.validation.features, splits.validation.labels))
    if loaded.is_image:  # the reference holds the images' locations, as the split tables do, and their predictions
        reference = reference.reset_index(drop=True)
        reference[modeldir.PREDICTION_COLUMN] = loaded.decide(loaded.predict_proba_files(reference[reference.columns[0]].tolist()))
    else:  # model input rows (codes for categories, NaN for missing), as the serving window records them
        reference = pd.DataFrame(loaded.encode(reference), columns=loaded.feature_names)
        if loaded.task == "regression":
            reference[modeldir.PREDICTION_COLUMN] = loaded.predict_labels(reference[loaded.feature_names].to_numpy())
        else:  # the class and its probabilities: the monitor's output-drift test compares the served ones with these
            probabilities = loaded.predict_proba(reference[loaded.feature_names].to_numpy())
            reference[modeldir.PREDICTION_COLUMN] = loaded.decide(probabilities)
            reference[probability_columns(probabilities.shape[1])] = probabilities.astype(np.float64)
    reference.reset_index(drop=True).to_parquet(model_dir.reference, index=False)
    if schema and schema.is_file():
        model_dir.schema.write_text(schema.read_text())
    write_json(out / METRICS_JSON, {"history": trained.history, "final": trained.metrics, "cv": trained.cv, **trained.extras})
    return loaded


def fit_calibration(loaded: modeldir.LoadedModel, features: pd.DataFrame, labels: np.ndarray) -> Calibration:
    """Temperature scaling on labeled held-out rows (the validation split): what the monitor's label-free
    accuracy estimate calibrates the served probabilities with."""
    from mlplat.monitoring.performance_estimate import fit_temperature, improves_significantly, negative_log_likelihood

    probabilities = loaded.predict_proba(loaded.encode(features[loaded.feature_names]))
    fitted = fit_temperature(probabilities, labels)
    temperature = fitted if improves_significantly(probabilities, labels, fitted) else 1.0
    return Calibration(temperature=temperature, fitted_temperature=fitted, rows=len(labels),
                       nll_before=negative_log_likelihood(probabilities, labels),
                       nll_after=negative_log_likelihood(probabilities, labels, temperature))


def _loaded(model: Path, loaded: modeldir.LoadedModel | None) -> modeldir.LoadedModel:
    """The model a step works on: the caller's already-loaded one (same directory), else loaded from `model`."""
    if loaded is None:
        return modeldir.LoadedModel.load(model)
    if Path(loaded.directory).resolve() != Path(model).resolve():
        raise ValueError(f"loaded model is from {loaded.directory}, the step was given {model}")
    return loaded


def evaluate(spec: PipelineSpec, data: Path, model: Path, out: Path, *,
             loaded: modeldir.LoadedModel | None = None) -> dict[str, Any]:
    """Test-set metrics and the evaluation gate. Writes metrics.json and report.md; records the metrics in model.json."""
    splits = Splits.load(data)
    loaded = _loaded(model, loaded)
    result = score(loaded, splits.test.features, splits.test.labels, spec.steps.evaluate.params, out, splits.test.row_ids)
    test = {k: v for k, v in result["test"].items() if isinstance(v, float)}
    loaded.update_manifest(metrics=Metrics(train=loaded.manifest.metrics.train, test=test))
    return result


def score(loaded: modeldir.LoadedModel, features: Any, labels: np.ndarray, gate: EvaluateGate, out: Path,
          row_ids: np.ndarray | None = None) -> dict[str, Any]:
    """The one scoring of labeled rows against a gate (labels: indices into the model's classes, or a
    regression's values): writes metrics.json ({"test": metrics, "gate": {passed, failures}}), report.md and
    predictions.csv (row_id, label, predicted; row ids are the dataset's ids, or positions); returns the metrics."""
    from mlplat.evaluation import classification_metrics, gate_failures, regression_metrics
    from mlplat.kfp.runtime import evaluation_summary

    out.mkdir(parents=True, exist_ok=True)
    if loaded.task == "regression":
        predicted = loaded.predict_values(loaded.encode(features[loaded.feature_names]))
        metrics = regression_metrics(labels, predicted)
        rows = pd.DataFrame({"label": labels, "predicted": predicted})
    else:
        # an image model's features are the images' locations (mlplat.images.IMAGE_COLUMN), decoded in a DataLoader
        proba = loaded.predict_proba_files(features[loaded.feature_names[0]].tolist()) if loaded.is_image \
            else loaded.predict_proba(loaded.encode(features[loaded.feature_names]))
        predicted = loaded.decide(proba)
        metrics = classification_metrics(labels, proba, loaded.class_names, predicted)
        names = np.asarray(loaded.class_names, dtype=object)
        rows = pd.DataFrame({"label": names[labels], "predicted": names[predicted]})
    rows.insert(0, "row_id", np.arange(len(rows)) if row_ids is None else row_ids)
    rows.to_csv(out / "predictions.csv", index=False)
    failures = gate_failures(metrics, gate)
    result = {"test": metrics, "gate": {"passed": not failures, "failures": failures}}
    write_json(out / METRICS_JSON, result)
    (out / "report.md").write_text(evaluation_summary(result))
    return result


def evaluate_file(model: modeldir.ModelDir, location: str, out: Path, base_dir: Path | None = None,
                  gate: EvaluateGate | None = None, id_column: str | None = None) -> dict[str, Any]:
    """`mlplat evaluate`: score a published model on any labeled file (path or URI) as the evaluate step
    scores the test split; the model directory is not changed. metrics.json also records the data's fingerprint."""
    from mlplat.data import read_frame

    loaded = modeldir.LoadedModel.load(model)
    if loaded.is_image:
        return _evaluate_images(loaded, location, out, base_dir or Path.cwd(), gate or EvaluateGate())
    frame, fetched = read_frame(location, base_dir or Path.cwd(), "DATA")
    label = loaded.manifest.label
    missing = [c for c in [*loaded.feature_names, label, *([id_column] if id_column else [])] if c not in frame.columns]
    if missing:
        raise UsageError(f"DATA: {fetched.name} lacks the model's columns: {', '.join(map(str, missing))}")
    gate = gate or EvaluateGate()
    wrong_task = [f for f, (_, task) in GATE_METRICS.items() if getattr(gate, f) is not None and task != loaded.task]
    if wrong_task:
        raise UsageError(f"gate: {', '.join(wrong_task)} bound metrics of another task; model {loaded.name!r} is a {loaded.task}")
    labels = _target_values(frame[label], label) if loaded.task == "regression" else _class_indices(frame[label], label, loaded)
    from mlplat.columns import row_ids_of

    result = score(loaded, frame[loaded.feature_names], labels, gate, out, row_ids_of(frame, id_column, "--id"))
    result["data"] = fetched.fingerprint.to_json()
    write_json(out / METRICS_JSON, result)
    return result


def _evaluate_images(loaded: modeldir.LoadedModel, location: str, out: Path, base_dir: Path,
                     gate: EvaluateGate) -> dict[str, Any]:
    """`evaluate_file` for an image model: DATA is an image folder, or a manifest with a `path` column and the
    model's label column (mlplat.image_sources); the fingerprint is the listing's."""
    from mlplat.image_sources import read_images
    from mlplat.images import IMAGE_COLUMN

    label = loaded.manifest.label
    frame, found, fingerprint_ = read_images(location, label, "path", base_dir, None, "DATA")
    labels = _class_indices(frame[found], label, loaded)
    result = score(loaded, frame[[IMAGE_COLUMN]].rename(columns={IMAGE_COLUMN: loaded.feature_names[0]}), labels, gate, out)
    result["data"] = fingerprint_.to_json()
    write_json(out / METRICS_JSON, result)
    return result


def _class_indices(values: pd.Series, label: str, loaded: modeldir.LoadedModel) -> np.ndarray:
    """A labeled file's class names as indices into the model's classes; a name the model lacks is refused."""
    index = {name: i for i, name in enumerate(loaded.class_names)}
    names = values.astype(str)
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise UsageError(f"DATA: column {label!r} has values that are no class of the model: {', '.join(unknown[:10])} "
                         f"(classes: {', '.join(loaded.class_names)})")
    return names.map(index).to_numpy()


def _target_values(values: pd.Series, label: str) -> np.ndarray:
    """A labeled file's regression targets: a finite number in every row."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        shown = ", ".join(f"row {i}: {values.iloc[i]!r}" for i in bad[:5])
        raise UsageError(f"DATA: column {label!r} needs a finite number in every row (a regression target); "
                         f"{len(bad)} rows are not ({shown})")
    return numbers


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
    if loaded.is_image:
        return _explain_images(loaded, explainer, step.plugin, step.params, splits, out, _context(spec, "explain", out, splits))
    # imputed: explainers summarize and perturb with background rows (k-means takes no NaN)
    background = loaded.impute(loaded.encode(splits.train.features))[~splits.train.synthetic]
    state = explainer.fit(loaded, background, _context(spec, "explain", out, splits))
    if state.arrays:
        save_file({k: np.ascontiguousarray(v) for k, v in state.arrays.items()}, str(loaded.model_dir.explainer_arrays))
    reference = ExplainerRef.of(StageKind.EXPLAINER, step.plugin, step.params, config=state.config,
                                arrays=sorted(state.arrays))
    loaded.update_manifest(explainer=reference, global_importance=state.global_importance)
    write_json(out / "global_importance.json", state.global_importance)
    (out / "report.html").write_text(importance_html(loaded.name, step.plugin, state.global_importance))
    return state.global_importance


def _explain_images(loaded: modeldir.LoadedModel, explainer: Any, plugin: str, params: dict[str, Any], splits: Splits,
                    out: Path, context: StepContext) -> dict[str, float]:
    """An image explainer: its state in the manifest, and a report of overlays for sampled test images of each
    class (PNG files under overlays/, linked from report.html and report.md)."""
    import base64
    from html import escape

    from mlplat.images import IMAGE_COLUMN, read_bytes
    from mlplat.serving.image_requests import ImageSchema

    state = explainer.fit(loaded, np.empty((0, 0)), context)
    loaded.update_manifest(explainer=ExplainerRef.of(StageKind.EXPLAINER, plugin, params, config=state.config, arrays=[]),
                           global_importance=None)
    per_class = int(state.config.get("samples_per_class", 2))
    rng = np.random.default_rng(context.seed)
    chosen = [int(i) for k in range(len(loaded.class_names))
              for i in rng.permutation(np.flatnonzero(splits.test.labels == k))[:per_class]]
    locations = splits.test.features[IMAGE_COLUMN].iloc[chosen].astype(str).tolist()
    X, _ = ImageSchema(loaded.image_preprocessing, max(1, len(locations))).decode_all(
        [read_bytes(location) for location in locations], "test images")
    explanations = explainer.load(loaded, state).explain(X) if locations else []
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    html, markdown = [], [f"# Explanations of {loaded.name} ({plugin})", "", "| true class | predicted | overlay |", "|---|---|---|"]
    for n, (i, explanation) in enumerate(zip(chosen, explanations, strict=True)):
        name = f"overlays/{n:03d}.png"
        (out / name).write_bytes(base64.b64decode(explanation["overlay_png_b64"]))
        true = loaded.class_names[int(splits.test.labels[i])]
        html.append(f"<tr><td>{escape(true)}</td><td>{escape(explanation['class'])}</td>"
                    f"<td><img src='{name}' width=96></td></tr>")
        markdown.append(f"| {true} | {explanation['class']} | ![{true}]({name}) |")
    (out / "report.html").write_text(f"<html><body><h1>Explanations of {escape(loaded.name)} ({escape(plugin)})</h1>"
                                     f"<p>Red: evidence for the predicted class; blue: against it.</p><table border=1>"
                                     f"<tr><th>true class</th><th>predicted</th><th>overlay</th></tr>{''.join(html)}"
                                     f"</table></body></html>")
    (out / "report.md").write_text("\n".join(markdown) + "\n")
    write_json(out / "global_importance.json", {})
    return {}


def drift(spec: PipelineSpec, model: Path, out: Path, *, loaded: modeldir.LoadedModel | None = None) -> None:
    """Fit the drift detector's reference state from the model's reference sample."""
    step = spec.steps.drift
    assert step is not None
    loaded = _loaded(model, loaded)
    detector = registry.create(StageKind.DRIFT_DETECTOR, step.plugin, step.params, step="drift")
    ctx = StepContext(step="drift", work_dir=out, info=_info_from_manifest(loaded.manifest), seed=spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    # the explain step (if it ran) wrote global importances: drift in ignored features pages nobody
    if loaded.is_image:  # embeddings + softmax outputs + statistics of the reference images, saved in the model dir
        from mlplat.embeddings import drift_reference

        reference = drift_reference(loaded)
    else:
        reference = loaded.reference()
    state = detector.fit(reference, ctx, loaded.manifest.global_importance)
    loaded.model_dir.write_state(modeldir.DRIFT_REFERENCE, state)
    loaded.update_manifest(drift_detector=DriftDetectorRef.of(StageKind.DRIFT_DETECTOR, step.plugin, step.params,
                                                              state=modeldir.DRIFT_REFERENCE))


def _info_from_manifest(manifest: ModelManifest) -> Any:
    from mlplat.data import DatasetInfo

    return DatasetInfo(manifest.name, manifest.label, manifest.feature_names, list(manifest.classes),
                       manifest.image_shape, {f.name: f.kind for f in manifest.features}, task=manifest.task)

