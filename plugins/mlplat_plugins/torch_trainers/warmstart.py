"""Warm start / transfer learning: initialise from a previous model directory, freeze layers.

`init_from` is a model directory, a run directory, a run id or `latest` in the run store
(`StepContext.runs_root`, else $MLPLAT_RUNS_DIR, else ./runs). A model whose features,
classes or network shapes do not match is refused with a UsageError naming the mismatch.
The new model reuses the source model's preprocessing (`source_preprocessing`): its layers
were trained on inputs standardized with the source's statistics, not the new data's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlplat import modeldir
from mlplat.data import DatasetInfo
from mlplat.errors import UsageError
from mlplat.runs import RunStore

FIELD = "steps.train.params.init_from"


def resolve_model_dir(ref: str, runs_root: Path | None) -> Path:
    path = Path(ref).expanduser()
    if (path / modeldir.MODEL_JSON).is_file():
        return path
    if (path / "model" / modeldir.MODEL_JSON).is_file():
        return path / "model"
    if os.sep in ref or path.is_absolute():
        raise UsageError(f"{FIELD}: no model directory at {path}")
    root = runs_root or Path(os.environ.get("MLPLAT_RUNS_DIR", "runs"))
    try:
        run = RunStore(root).get(ref)
    except UsageError as exc:
        raise UsageError(f"{FIELD}: {exc}") from None
    if not (run.model_dir / modeldir.MODEL_JSON).is_file():
        raise UsageError(f"{FIELD}: run {run.id} has no published model (status: {run.record().get('status')})")
    return run.model_dir


def _check_features(manifest: Mapping[str, Any], info: DatasetInfo, model_dir: Path) -> None:
    features = [f["name"] for f in manifest.get("features", [])]
    if features != list(info.feature_names):
        missing = [f for f in info.feature_names if f not in features]
        extra = [f for f in features if f not in info.feature_names]
        detail = f"missing in model: {missing}; not in data: {extra}" if missing or extra else "same names, different order"
        raise UsageError(f"{FIELD}: feature schema mismatch with {model_dir} ({detail})")


def source_preprocessing(model_dir: Path, info: DatasetInfo) -> dict[str, Any]:
    """The source model's preprocessing statistics (model.json `preprocessing`), for the new model to reuse."""
    manifest = modeldir.read_manifest(model_dir)
    _check_features(manifest, info, model_dir)
    if "preprocessing" not in manifest:
        raise UsageError(f"{FIELD}: {model_dir} records no preprocessing statistics; its inputs' scaling is unknown")
    return dict(manifest["preprocessing"])


def load_compatible_state(model_dir: Path, info: DatasetInfo, architecture: Mapping[str, Any],
                          network: nn.Module) -> dict[str, torch.Tensor]:
    """The previous model's weights, after checking features, classes and tensor shapes match."""
    from safetensors.torch import load_file

    manifest = modeldir.read_manifest(model_dir)
    _check_features(manifest, info, model_dir)
    if list(manifest.get("classes", [])) != list(info.classes):
        raise UsageError(f"{FIELD}: class mismatch with {model_dir}: model has {manifest.get('classes')}, data has {info.classes}")
    previous = manifest.get("architecture", {})
    if previous.get("type") != architecture.get("type"):
        raise UsageError(f"{FIELD}: architecture type mismatch: model is {previous.get('type')!r}, trainer builds {architecture.get('type')!r}")
    state = load_file(str(model_dir / modeldir.WEIGHTS))
    target = network.state_dict()
    wrong = [f"{k}: model {tuple(state[k].shape)} vs new {tuple(v.shape)}" for k, v in target.items() if k in state and state[k].shape != v.shape]
    absent = sorted(set(target) ^ set(state))
    if wrong or absent:
        problems = wrong + [f"{k}: only in {'new network' if k in target else 'model'}" for k in absent]
        raise UsageError(f"{FIELD}: network shape mismatch with {model_dir} (architecture {previous}): " + "; ".join(problems[:5]))
    return state


def freeze(network: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop gradients for parameters under the given module-name prefixes; returns the frozen names."""
    frozen: list[str] = []
    modules = dict(network.named_modules())
    for prefix in prefixes:
        if prefix not in modules or prefix == "":
            names = [n for n in modules if n and n.count(".") <= 1]
            raise UsageError(f"steps.train.params.freeze: no module {prefix!r}; modules: {', '.join(names)}")
        for name, param in modules[prefix].named_parameters(prefix=prefix):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_modules(network: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """Modules whose batch-norm statistics must stay fixed (kept in eval mode while training)."""
    modules = dict(network.named_modules())
    return [modules[p] for p in prefixes if p in modules]
