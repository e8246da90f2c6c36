"""Integrity checks before a model is ready: every kind of corrupt model directory is refused at load, with a
ModelDirError (exit 2) that names the file and the field, before anything is allocated or served."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlplat.errors import ModelDirError, SpecError
from mlplat.modeldir import EXPLAINER_ARRAYS, MODEL_JSON, WEIGHTS, LoadedModel, ModelDir
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_copy(trained_model_dir: Path, tmp_path: Path) -> ModelDir:
    return ModelDir(trained_model_dir).copy_to(tmp_path / "model")


def _edit_manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[ModelDir], None]:
    def corrupt(model_dir: ModelDir) -> None:
        data = json.loads(model_dir.manifest_path.read_text())
        change(data)
        model_dir.manifest_path.write_text(json.dumps(data))
    return corrupt


def _edit_weights(change: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[ModelDir], None]:
    def corrupt(model_dir: ModelDir) -> None:
        save_file(change(load_file(str(model_dir.weights))), str(model_dir.weights))
    return corrupt


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.update(fields)


def _preprocessing(field: str, index: int, value: float) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["preprocessing"][field][index] = value
    return change


def _drop_first_feature(data: dict[str, Any]) -> None:
    """29 names for the 30-input network, the preprocessing trimmed alike: only the network can tell."""
    per_feature = [data["preprocessing"][k] for k in ("mean", "scale", "kinds", "fill") if k in data["preprocessing"]]
    for values in (data["features"], *per_feature):
        del values[0]


def _nan_weights(state: dict[str, Any]) -> dict[str, Any]:
    state["head.weight"] = state["head.weight"].clone().fill_(float("nan"))
    return state


def _truncate(model_dir: ModelDir) -> None:
    data = model_dir.weights.read_bytes()
    model_dir.weights.write_bytes(data[: len(data) - 100])


def _outside_symlink(model_dir: ModelDir) -> None:
    outside = model_dir.path.parent / "outside.safetensors"
    model_dir.weights.rename(outside)
    model_dir.weights.symlink_to(outside)


def _explainer_without_arrays(data: dict[str, Any]) -> None:
    data["explainer"] = {"plugin": "integrated_gradients", "arrays": ["background"]}


# (what is corrupted, how, the file the error must name, what it must say)
CORRUPTIONS: list[tuple[str, Callable[[ModelDir], None], str, str]] = [
    ("class list longer than the output width", _edit_manifest(_set(classes=["a", "b", "c"])), MODEL_JSON,
     "classes: 3 class names for a network with [2] outputs"),
    ("one class only", _edit_manifest(_set(classes=["a"])), MODEL_JSON, "classes: a classifier needs at least 2"),
    ("repeated class names", _edit_manifest(_set(classes=["a", "a"])), MODEL_JSON, "classes: repeated names ['a']"),
    ("29 feature names for 30 inputs", _edit_manifest(_drop_first_feature), MODEL_JSON,
     "features: the architecture does not take 29 inputs"),
    ("preprocessing shorter than the features", _edit_manifest(lambda d: d["preprocessing"]["scale"].pop()),
     MODEL_JSON, "preprocessing.scale: 29 values for 30 features"),
    ("zero scale", _edit_manifest(_preprocessing("scale", 3, 0.0)), MODEL_JSON,
     "preprocessing.scale: must be finite and positive"),
    ("negative scale", _edit_manifest(_preprocessing("scale", 0, -1.0)), MODEL_JSON, "preprocessing.scale"),
    ("infinite scale", _edit_manifest(_preprocessing("scale", 0, float("inf"))), MODEL_JSON, "preprocessing.scale"),
    ("NaN mean", _edit_manifest(_preprocessing("mean", 5, float("nan"))), MODEL_JSON,
     "preprocessing.mean: must be finite"),
    ("drift state outside the directory", _edit_manifest(_set(drift_detector={"plugin": "evidently",
                                                                              "state": "../outside.json"})),
     MODEL_JSON, "drift_detector.state: '../outside.json' is not a file name inside the model directory"),
    ("drift state by absolute path", _edit_manifest(_set(drift_detector={"plugin": "evidently",
                                                                         "state": "/etc/passwd"})),
     MODEL_JSON, "drift_detector.state: '/etc/passwd'"),
    ("weights a symlink out of the directory", _outside_symlink, MODEL_JSON, "weights: 'weights.safetensors' leads to"),
    ("huge architecture", _edit_manifest(lambda d: d["architecture"].update(hidden=[20000, 20000])), WEIGHTS,
     "does not match architecture"),
    ("architecture of an unknown type", _edit_manifest(lambda d: d["architecture"].update(type="rnn")), MODEL_JSON,
     "architecture: cannot build the network"),
    ("architecture without a field", _edit_manifest(lambda d: d["architecture"].pop("hidden")), MODEL_JSON,
     "architecture: cannot build the network"),
    ("an ensemble of a million members", _edit_manifest(lambda d: d["architecture"].update(ensemble=10**6)), MODEL_JSON,
     "cannot build the network (ensemble: 1000000 is not a member count"),
    ("an ensemble the weights do not hold", _edit_manifest(lambda d: d["architecture"].update(ensemble=3)), WEIGHTS,
     "does not match architecture"),
    ("NaN weights", _edit_weights(_nan_weights), WEIGHTS, "tensor 'head.weight' has 32 non-finite values"),
    ("weights of another dtype", _edit_weights(lambda s: {k: v.double() for k, v in s.items()}), WEIGHTS,
     "needs F32"),
    ("a tensor missing", _edit_weights(lambda s: {k: v for k, v in s.items() if k != "head.bias"}), WEIGHTS,
     "tensor 'head.bias' is missing"),
    ("a foreign tensor", _edit_weights(lambda s: {**s, "extra": s["head.bias"].clone()}), WEIGHTS,
     "tensor 'extra' is not part of the architecture"),
    ("truncated weights", _truncate, WEIGHTS, "truncated"),
    ("weights not safetensors", lambda m: m.weights.write_bytes(b"\x80\x04pickle, not safetensors"), WEIGHTS,
     "not a complete safetensors file"),
    ("weights with a garbled header", lambda m: m.weights.write_bytes((12).to_bytes(8, "little") + b"{not json!}!"),
     WEIGHTS, "header is not valid JSON"),
    ("weights missing", lambda m: m.weights.unlink(), WEIGHTS, "is missing"),
    ("explainer arrays recorded but missing", _edit_manifest(_explainer_without_arrays), EXPLAINER_ARRAYS,
     "the explainer's arrays are recorded"),
]


@pytest.mark.parametrize("corrupt, file, message", [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_model_directory_is_refused_naming_file_and_field(model_copy: ModelDir, corrupt: Any,
                                                                     file: str, message: str) -> None:
    LoadedModel.load(model_copy)  # intact, it loads
    corrupt(model_copy)
    with pytest.raises(ModelDirError) as refused:
        LoadedModel.load(model_copy)
    assert str(model_copy.path / file) in str(refused.value), refused.value
    assert message in str(refused.value), refused.value
    assert refused.value.exit_code == 2


def test_a_huge_architecture_is_refused_before_it_is_allocated(model_copy: ModelDir) -> None:
    """[20000, 20000] hidden units are 1.6 GB of float32: refused from the header, peak memory stays where it was."""
    _edit_manifest(lambda d: d["architecture"].update(hidden=[20000, 20000]))(model_copy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ModelDirError, match=r"tensor 'body.1.0.weight' is missing|needs F32 \[20000, 16\]"):
        LoadedModel.load(model_copy)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_a_manifest_symlinked_from_outside_is_refused(model_copy: ModelDir) -> None:
    outside = model_copy.path.parent / "elsewhere.json"
    model_copy.manifest_path.rename(outside)
    model_copy.manifest_path.symlink_to(outside)
    with pytest.raises(ModelDirError, match="the manifest: 'model.json' leads to .*outside the model directory"):
        model_copy.read()


def test_a_symlink_inside_the_directory_is_followed(model_copy: ModelDir) -> None:
    (model_copy.path / "weights.v1.safetensors").write_bytes(model_copy.weights.read_bytes())
    model_copy.weights.unlink()
    model_copy.weights.symlink_to("weights.v1.safetensors")
    assert LoadedModel.load(model_copy).predict_proba(np.zeros((1, 30), np.float32)).shape == (1, 2)


def test_the_monitor_refuses_a_drift_state_outside_the_directory(model_copy: ModelDir) -> None:
    from mlplat.monitoring.monitor import Monitor

    (model_copy.path.parent / "outside.json").write_text(json.dumps({"planted": True}))
    _edit_manifest(_set(drift_detector={"plugin": "evidently", "state": "../outside.json"}))(model_copy)
    with pytest.raises(ModelDirError, match="drift_detector.state: '../outside.json'"):
        Monitor(model_copy.path)


def test_explainer_arrays_with_nan_are_refused_naming_the_file(model_copy: ModelDir) -> None:
    from mlplat.serving.explainer_loader import load_state
    from safetensors.numpy import save_file as save_arrays

    save_arrays({"background": np.full((4, 30), np.nan, np.float32)}, str(model_copy.explainer_arrays))
    _edit_manifest(_explainer_without_arrays)(model_copy)
    with pytest.raises(ModelDirError, match=f"{model_copy.explainer_arrays}: array 'background' has non-finite"):
        load_state(model_copy)


def test_warm_start_from_a_corrupt_model_is_refused_naming_the_field(model_copy: ModelDir) -> None:
    from mlplat.data import DatasetInfo
    from mlplat_plugins.torch_trainers import warmstart
    from mlplat_plugins.torch_trainers.networks import build_network

    manifest = model_copy.read()
    info = DatasetInfo(name="w", label=manifest.label, feature_names=manifest.feature_names,
                       classes=list(manifest.classes))
    _edit_weights(_nan_weights)(model_copy)
    # called outside the plugin guard, which would name it steps.train.params.init_from
    with pytest.raises(SpecError, match=f"^init_from: {model_copy.weights}: tensor 'head.weight'"):
        warmstart.load_compatible_state(model_copy.path, info, manifest.architecture,
                                        build_network(manifest.architecture))


def test_serve_refuses_a_corrupt_model_with_exit_2_before_it_is_ready(model_copy: ModelDir) -> None:
    _edit_manifest(_set(classes=["a", "b", "c"]))(model_copy)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO / "plugins")])}
    with socket.socket() as probe:  # a free port: the model must be refused before anything binds it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "mlplat", "serve", str(model_copy.path), "--host", "127.0.0.1",
                           "--port", str(port)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "model.json: classes: 3 class names for a network with [2] outputs" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr
