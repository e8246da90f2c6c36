"""Warm start / transfer learning: initialise from a previous model directory, freeze layers.

`init_from` is anything `mlplat.modeldir.resolve_model` accepts: a model or run directory, a
file:// URI, or a run id or `latest` in the run store the runner passes (`StepContext.runs_root`). A model whose features,
classes or network shapes do not match is refused with a UsageError naming the mismatch.
The new model reuses the source model's preprocessing (`source_preprocessing`): its layers
were trained on inputs standardized with the source's statistics, not the new data's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from mlplat import modeldir
from mlplat.data import DatasetInfo
from mlplat.errors import ModelDirError, SpecError, UsageError
from mlplat.manifest import ModelManifest
from torch import nn

FIELD = "init_from"  # named under the train step's params by the plugin guard


def source_model_dir(ref: str, runs_root: Path | None) -> Path:
    """`init_from` resolved by the core's resolver (`mlplat.modeldir.resolve_model`); errors name the field."""
    try:
        return modeldir.resolve_model(ref, runs_root).path
    except UsageError as exc:
        raise SpecError([(FIELD, f"{exc}")]) from None


def _manifest(model_dir: Path) -> ModelManifest:
    try:
        return modeldir.ModelDir(model_dir).read()
    except UsageError as exc:
        raise SpecError([(FIELD, f"{exc}")]) from None


def _check_features(manifest: ModelManifest, info: DatasetInfo, model_dir: Path) -> None:
    features = manifest.feature_names
    if features != list(info.feature_names):
        missing = [f for f in info.feature_names if f not in features]
        extra = [f for f in features if f not in info.feature_names]
        detail = f"missing in model: {missing}; not in data: {extra}" if missing or extra else "same names, different order"
        raise SpecError([(FIELD, f"feature schema mismatch with {model_dir} ({detail})")])


def source_preprocessing(model_dir: Path, info: DatasetInfo) -> dict[str, Any]:
    """The source model's preprocessing statistics (model.json `preprocessing`), for the new model to reuse."""
    manifest = _manifest(model_dir)
    _check_features(manifest, info, model_dir)
    return manifest.preprocessing.model_dump()


def load_compatible_state(model_dir: Path, info: DatasetInfo, architecture: Mapping[str, Any],
                          network: nn.Module) -> dict[str, torch.Tensor]:
    """The previous model's weights, after checking features, classes and tensor shapes match."""
    manifest = _manifest(model_dir)
    _check_features(manifest, info, model_dir)
    if list(manifest.classes) != list(info.classes):
        raise SpecError([(FIELD, f"class mismatch with {model_dir}: model has {manifest.classes}, data has {info.classes}")])
    previous = manifest.architecture
    if previous.get("type") != architecture.get("type"):
        raise SpecError([(FIELD, f"architecture type mismatch: model is {previous.get('type')!r}, "
                                 f"trainer builds {architecture.get('type')!r}")])
    try:  # the core's integrity-checked load: a corrupt source model is refused naming its file
        state = modeldir.LoadedModel.load(model_dir).network.state_dict()
    except ModelDirError as exc:
        raise SpecError([(FIELD, str(exc))]) from None
    target = network.state_dict()
    wrong = [f"{k}: model {tuple(state[k].shape)} vs new {tuple(v.shape)}"
             for k, v in target.items() if k in state and state[k].shape != v.shape]
    absent = sorted(set(target) ^ set(state))
    if wrong or absent:
        problems = wrong + [f"{k}: only in {'new network' if k in target else 'model'}" for k in absent]
        raise SpecError([(FIELD, f"network shape mismatch with {model_dir} (architecture {previous}): " + "; ".join(problems[:5]))])
    return state


def freeze(network: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop gradients for parameters under the given module-name prefixes; returns the frozen names."""
    frozen: list[str] = []
    modules = dict(network.named_modules())
    for prefix in prefixes:
        if prefix not in modules or prefix == "":
            names = [n for n in modules if n and n.count(".") <= 1]
            raise SpecError([("freeze", f"no module {prefix!r}; modules: {', '.join(names)}")])
        for name, param in modules[prefix].named_parameters(prefix=prefix):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_modules(network: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """Modules whose batch-norm statistics must stay fixed (kept in eval mode while training)."""
    modules = dict(network.named_modules())
    return [modules[p] for p in prefixes if p in modules]
