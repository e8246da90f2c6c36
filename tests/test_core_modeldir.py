"""The typed model directory: manifest format and migration, refusals that say why, the resolver,
atomic amendments, and one model load per in-process run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlplat import modeldir
from mlplat.errors import ModelDirError, UsageError
from mlplat.manifest import FORMAT_VERSION, ModelManifest
from mlplat.modeldir import LoadedModel, ModelDir, resolve_model
from pydantic import ValidationError


@pytest.fixture
def model_copy(trained_model_dir: Path, tmp_path: Path) -> ModelDir:
    return ModelDir(trained_model_dir).copy_to(tmp_path / "model")


def _raw(model_dir: ModelDir) -> dict[str, Any]:
    return json.loads(model_dir.manifest_path.read_text())


def _write_raw(model_dir: ModelDir, data: dict[str, Any]) -> None:
    model_dir.manifest_path.write_text(json.dumps(data))


def _as_v1(current: dict[str, Any]) -> dict[str, Any]:
    """The dict format 1 wrote: plain plugin sections, the trainer's CV dict, the drift detector under `monitor`."""
    v1 = {k: v for k, v in current.items() if k not in {"drift_detector", "explainer", "global_importance"}}
    v1["format_version"] = 1
    v1["trainer"] = {"plugin": current["trainer"]["plugin"], "params": current["trainer"]["params"]}
    v1["cv"] = {"val_accuracy": {"mean": 0.93, "std": 0.01}, "gap_accuracy": {"mean": 0.02, "std": 0.01},
                "folds": 2, "per_fold": [{"val_accuracy": 0.92}, {"val_accuracy": 0.94}]}
    v1["monitor"] = {"plugin": "evidently", "params": {"min_window": 50}, "state": "drift_reference.json"}
    return v1


def test_the_train_step_writes_the_current_typed_format(trained_model_dir: Path) -> None:
    raw = _raw(ModelDir(trained_model_dir))
    assert raw["format_version"] == FORMAT_VERSION == 2
    manifest = ModelDir(trained_model_dir).read()
    assert manifest.task == "classification" and manifest.classes == ["benign", "malignant"]
    assert len(manifest.features) == 30 and all(f.min is not None and f.min <= f.max for f in manifest.features)
    # the trainer is recorded with the distribution and version that must be installed to load it
    assert manifest.trainer.plugin == "mlp" and manifest.trainer.distribution == "mlplat" and manifest.trainer.version
    assert manifest.metrics.test is not None and 0.5 < manifest.metrics.test["accuracy"] <= 1
    assert ModelManifest.from_json(manifest.to_json()) == manifest  # lossless round trip


def test_a_format_1_model_directory_loads_migrated(model_copy: ModelDir) -> None:
    current = LoadedModel.load(model_copy)
    _write_raw(model_copy, _as_v1(_raw(model_copy)))
    old = LoadedModel.load(model_copy)
    assert old.manifest.format_version == 2 and old.manifest.trainer.plugin == current.manifest.trainer.plugin
    assert old.manifest.cv is not None and old.manifest.cv.folds == 2 and len(old.manifest.cv.per_fold) == 2
    assert old.manifest.cv.bands["val_accuracy"].mean == 0.93 and "gap_accuracy" in old.manifest.cv.bands
    assert old.manifest.drift_detector is not None and old.manifest.drift_detector.params == {"min_window": 50}
    X = np.random.default_rng(0).normal(size=(5, 30)).astype(np.float32) * 5 + 10
    np.testing.assert_allclose(old.predict_proba(X), current.predict_proba(X), atol=1e-6)
    # an amendment writes the current format; the file on disk is then version 2
    model_copy.update(name="migrated")
    assert _raw(model_copy)["format_version"] == 2 and "monitor" not in _raw(model_copy)


@pytest.mark.parametrize("change, message", [
    (lambda d: {**d, "format_version": 99}, "unsupported format_version 99 (this mlplat reads 1, 2)"),
    (lambda d: {k: v for k, v in d.items() if k != "format_version"}, "unsupported format_version None"),
    (lambda d: {k: v for k, v in d.items() if k != "classes"}, "invalid model manifest: classes: Field required"),
    (lambda d: {**d, "clases": d["classes"]}, "clases: Extra inputs are not permitted"),
    (lambda d: {**d, "features": [{**d["features"][0], "min": "low"}]}, "features.0.min: Input should be a valid number"),
    (lambda d: {**d, "task": "forecasting"}, "task: Input should be 'classification'"),
])
def test_a_corrupt_manifest_is_refused_naming_the_problem(model_copy: ModelDir, change: Any, message: str) -> None:
    _write_raw(model_copy, change(_raw(model_copy)))
    with pytest.raises(ModelDirError) as refused:
        LoadedModel.load(model_copy)
    assert message in str(refused.value) and str(model_copy.manifest_path) in str(refused.value)


def test_a_format_1_dict_with_a_missing_field_is_refused_naming_it(model_copy: ModelDir) -> None:
    v1 = _as_v1(_raw(model_copy))
    del v1["preprocessing"]
    _write_raw(model_copy, v1)
    with pytest.raises(ModelDirError, match="preprocessing: Field required"):
        model_copy.read()


def test_missing_files_and_bad_json_are_refused(model_copy: ModelDir, tmp_path: Path) -> None:
    model_copy.weights.unlink()
    with pytest.raises(ModelDirError, match="weights.safetensors is missing"):
        LoadedModel.load(model_copy)
    model_copy.manifest_path.write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        model_copy.read()
    with pytest.raises(ModelDirError, match="not a model or run directory"):
        ModelDir(tmp_path).read()


def test_amendments_are_validated_and_atomic(model_copy: ModelDir) -> None:
    before = model_copy.manifest_path.read_text()
    with pytest.raises(ValidationError, match="bogus"):
        model_copy.update(bogus=1)
    with pytest.raises(ValidationError, match="seed"):
        model_copy.update(seed="not a number")
    assert model_copy.manifest_path.read_text() == before  # a refused amendment leaves the file as it was
    assert model_copy.update(global_importance={"mean radius": 1.0}).global_importance == {"mean radius": 1.0}
    assert model_copy.read().global_importance == {"mean radius": 1.0}
    assert sorted(p.name for p in model_copy.path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_one_resolver_for_run_ids_latest_paths_and_uris(trained_run, tmp_path: Path) -> None:
    runs, model = trained_run.run.dir.parent, trained_run.model_dir.resolve()
    for ref in (trained_run.run.id, "latest", str(trained_run.run.dir), str(model), model.as_uri(),
                (trained_run.run.dir.resolve()).as_uri()):
        assert resolve_model(ref, runs).path.resolve() == model, ref
    assert resolve_model(str(model), None).path.resolve() == model  # a path needs no run store
    with pytest.raises(UsageError, match="ftp://host/m: not a model store URI"):  # s3:// etc.: see test_modelstore.py
        resolve_model("ftp://host/m", runs)
    with pytest.raises(ModelDirError, match="not a model or run directory"):
        resolve_model(str(tmp_path), runs)
    with pytest.raises(ModelDirError, match="no model directory at"):
        resolve_model(str(tmp_path / "missing" / "model"), runs)
    with pytest.raises(UsageError, match="run not found: nope"):
        resolve_model("nope", runs)
    with pytest.raises(UsageError, match="no run store was given"):
        resolve_model("latest", None)
    unpublished = runs / "tiny-unpublished"
    unpublished.mkdir()
    with pytest.raises(ModelDirError, match="run tiny-unpublished has no published model"):
        resolve_model("tiny-unpublished", runs)


def test_an_in_process_run_loads_the_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import REPO, TINY_SPEC
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    loads: list[Path] = []
    original = LoadedModel.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[LoadedModel], directory: Any, device: str = "cpu") -> LoadedModel:
        loads.append(Path(getattr(directory, "path", directory)))
        return original(cls, directory, device)

    monkeypatch.setattr(modeldir.LoadedModel, "load", classmethod(counting_load))
    steps = {"train": TINY_SPEC["steps"]["train"],
             "explain": {"plugin": "integrated_gradients", "params": {"n_steps": 16, "importance_rows": 20}},
             "monitor": {"plugin": "evidently", "params": {"min_window": 50}}}
    spec = resolve(parse_spec({**TINY_SPEC, "steps": steps}))
    result = run_pipeline(spec, REPO, RunStore(tmp_path / "runs"))
    assert len(loads) == 1, loads
    # each step's amendment reached model.json, and the drift step saw the explain step's importances
    manifest = ModelDir(result.model_dir).read()
    assert manifest.metrics.test and manifest.explainer and manifest.drift_detector and manifest.global_importance
    assert manifest.explainer.plugin == "integrated_gradients" and manifest.explainer.distribution == "mlplat"
    assert manifest.drift_detector.state == modeldir.DRIFT_REFERENCE
    state = ModelDir(result.model_dir).read_state(manifest.drift_detector.state)
    assert set(state["importance"]) == set(manifest.global_importance)
