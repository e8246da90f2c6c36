"""Explainer plugins on a model whose label is decided by one feature, and the explain step end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlplat import modeldir, registry, steps
from mlplat.contracts.context import StepContext
from mlplat.modeldir import LoadedModel
from mlplat.registry import StageKind
from mlplat.serving.explainer_loader import load_explainer
from mlplat.spec import parse_spec, resolve

FEATURES = ["noise_a", "noise_b", "decisive", "noise_c", "noise_d"]
# small settings so the whole module stays fast; defaults are exercised by tests/test_conformance.py
FAST = {
    "kernel_shap": {"nsamples": 128, "importance_rows": 10},
    "shap_kernel": {"nsamples": 128, "importance_rows": 10},
    "anchors": {"train_rows": 200, "importance_rows": 3, "coverage_samples": 500},
    "integrated_gradients": {"n_steps": 64, "importance_rows": 50},
    "lime": {"n_samples": 300, "importance_rows": 10},
}
# the tabular explainers (image explainers are tested in test_images_explain_drift.py)
ALL = sorted(name for name, found in registry.discover(StageKind.EXPLAINER).items() if not found.spec.handles_images)
ATTRIBUTION = [name for name in ALL if name != "anchors"]


def spec_for(source: Path, explain: dict[str, Any] | None) -> Any:
    doc: dict[str, Any] = {
        "name": "decisive", "seed": 1,
        "dataset": {"source": str(source), "label": "y", "validation": 0.2, "test": 0.2},
        "steps": {"train": {"plugin": "mlp", "params": {"hidden": [16], "epochs": 25, "early_stopping_patience": None}}},
    }
    if explain:
        doc["steps"]["explain"] = explain
    return resolve(parse_spec(doc))


@pytest.fixture(scope="module")
def decisive_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real pipeline run (default explainer) on data where the label is `decisive > 0`."""
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore

    root = tmp_path_factory.mktemp("decisive")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, len(FEATURES))), columns=FEATURES)
    frame["y"] = (frame["decisive"] > 0).astype(int)
    frame.to_csv(root / "decisive.csv", index=False)
    spec = spec_for(root / "decisive.csv", {"plugin": "kernel_shap", "params": FAST["kernel_shap"]})
    return run_pipeline(spec, root, RunStore(root / "runs")), root / "decisive.csv"


@pytest.fixture(scope="module")
def model(decisive_run: Any) -> LoadedModel:
    return LoadedModel.load(decisive_run[0].model_dir)


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    """(background rows, rows to explain) from the same distribution, with |decisive| clearly non-zero."""
    rng = np.random.default_rng(1)
    background = rng.normal(size=(300, len(FEATURES))).astype(np.float32)
    X = rng.normal(size=(6, len(FEATURES))).astype(np.float32)
    X[:, 2] = np.array([1.5, -1.5, 2.0, -2.0, 1.2, -1.2], dtype=np.float32)
    return background, X


def fit(name: str, model: LoadedModel, background: np.ndarray, tmp_path: Path) -> tuple[Any, Any]:
    plugin = registry.spec_of(StageKind.EXPLAINER, name).create(FAST.get(name, {}))
    state = plugin.fit(model, background, StepContext(step="explain", work_dir=tmp_path, info=None, seed=0))  # type: ignore[arg-type]
    return plugin.load(model, state), state


@pytest.mark.parametrize("name", ATTRIBUTION)
def test_decisive_feature_gets_the_largest_attribution(name: str, model: LoadedModel, rows: Any, tmp_path: Path) -> None:
    background, X = rows
    bound, state = fit(name, model, background, tmp_path)
    explanations = bound.explain(X)
    predicted = [model.class_names[i] for i in model.predict_proba(X).argmax(axis=1)]
    assert [e["class"] for e in explanations] == predicted
    for e in explanations:
        assert list(e["attributions"]) == FEATURES
        assert max(e["attributions"], key=lambda f: abs(e["attributions"][f])) == "decisive", e
    assert max(state.global_importance, key=state.global_importance.get) == "decisive"
    # k-means summary stored as plain arrays, not the raw rows
    assert state.arrays["background"].shape[0] < len(background)
    assert state.arrays["weights"].sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", [n for n in ("kernel_shap", "shap_kernel", "integrated_gradients") if n in ALL])
def test_attributions_add_up_to_prediction_minus_base_value(name: str, model: LoadedModel, rows: Any,
                                                            tmp_path: Path) -> None:
    """Efficiency (Kernel SHAP) and completeness (IG): sum of attributions = f(x) - f(baseline)."""
    background, X = rows
    bound, _ = fit(name, model, background, tmp_path)
    proba = model.predict_proba(X)
    for e, p in zip(bound.explain(X), proba, strict=True):
        f_x = p[model.class_names.index(e["class"])]
        assert sum(e["attributions"].values()) == pytest.approx(f_x - e["base_value"], abs=0.02)
        assert abs(f_x - e["base_value"]) > 0.1  # the check above is not trivially 0 == 0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_anchor_rules_name_the_decisive_feature(beam_size: int, model: LoadedModel, rows: Any, tmp_path: Path) -> None:
    background, X = rows
    plugin = registry.spec_of(StageKind.EXPLAINER, "anchors").create({**FAST["anchors"], "beam_size": beam_size})
    state = plugin.fit(model, background, StepContext(step="explain", work_dir=tmp_path, info=None, seed=0))  # type: ignore[arg-type]
    bound = plugin.load(model, state)
    for e in bound.explain(X[:2]):
        assert "decisive" in e["features"] and any("decisive" in rule for rule in e["anchor"])
        assert e["precision"] >= 0.9 and 0.0 < e["coverage"] <= 1.0
        assert e["class"] in model.class_names


def test_explain_step_writes_report_manifest_and_safetensors_only(decisive_run: Any) -> None:
    result, _ = decisive_run
    report = result.run.dir / "steps" / "explain" / "report.html"
    assert "decisive" in report.read_text() and "kernel_shap" in report.read_text()
    manifest = modeldir.ModelDir(result.model_dir).read()
    assert manifest.explainer is not None and manifest.explainer.plugin == "kernel_shap"
    assert manifest.explainer.distribution == "mlplat" and manifest.explainer.version  # who must be installed to serve it
    assert set(manifest.explainer.arrays) == {"background", "weights"}
    importance = manifest.global_importance
    assert importance is not None and max(importance, key=importance.__getitem__) == "decisive"
    assert (result.model_dir / modeldir.EXPLAINER_ARRAYS).is_file()
    for path in result.model_dir.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib", ".dill"}, path
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"


def test_explainer_reloads_in_a_fresh_process_from_the_saved_files(decisive_run: Any) -> None:
    result, _ = decisive_run
    code = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from mlplat.modeldir import LoadedModel\n"
        "from mlplat.serving.explainer_loader import load_explainer\n"
        "loaded = LoadedModel.load(Path(sys.argv[1]))\n"
        "x = np.array([[0.1, -0.2, 1.8, 0.3, 0.0]], dtype=np.float32)\n"
        "print(json.dumps(load_explainer(loaded).explain(x)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(result.model_dir)], capture_output=True, text=True,
                         timeout=240, check=True)
    (explanation,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert explanation["method"] == "kernel_shap"
    assert max(explanation["attributions"], key=lambda f: abs(explanation["attributions"][f])) == "decisive"


def test_one_spec_line_swaps_the_explainer(decisive_run: Any, tmp_path: Path) -> None:
    result, source = decisive_run
    model_dir = tmp_path / "model"
    modeldir.copy_model_dir(result.model_dir, model_dir)
    spec = spec_for(source, {"plugin": "integrated_gradients"})
    importance = steps.explain(spec, result.run.dir / "steps" / "ingest", model_dir, tmp_path / "explain")
    assert max(importance, key=importance.get) == "decisive"
    explainer = modeldir.ModelDir(model_dir).read().explainer
    assert explainer is not None and explainer.plugin == "integrated_gradients"
    assert "integrated_gradients" in (tmp_path / "explain" / "report.html").read_text()
    bound = load_explainer(LoadedModel.load(model_dir))
    assert bound is not None
    assert bound.explain(np.zeros((1, len(FEATURES)), dtype=np.float32))[0]["method"] == "integrated_gradients"


def test_no_explainer_fitted_means_none(trained_model_dir: Path) -> None:
    assert modeldir.ModelDir(trained_model_dir).read().explainer is None
    assert load_explainer(LoadedModel.load(trained_model_dir)) is None


def test_bad_explainer_params_name_the_field() -> None:
    from mlplat.errors import SpecError

    with pytest.raises(SpecError, match="nsamples"):
        registry.spec_of(StageKind.EXPLAINER, "kernel_shap").create({"nsamples": 1})


def test_lime_defaults_put_the_attribution_on_the_decisive_feature(model: LoadedModel, rows: Any,
                                                                   tmp_path: Path) -> None:
    """Issue 17: with its defaults (not FAST), lime puts most of each row's |attribution| on the one feature
    the label uses. The former defaults (ridge surrogate, 200 samples) gave 0.86 here."""
    background, X = rows
    plugin = registry.spec_of(StageKind.EXPLAINER, "lime").create({"importance_rows": 5})
    state = plugin.fit(model, background, StepContext(step="explain", work_dir=tmp_path, info=None, seed=0))  # type: ignore[arg-type]
    values = np.abs([[e["attributions"][f] for f in FEATURES] for e in plugin.load(model, state).explain(X)])
    shares = values[:, FEATURES.index("decisive")] / values.sum(axis=1)
    assert shares.mean() >= 0.9, shares
