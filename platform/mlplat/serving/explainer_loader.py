"""Rebuild a published model's fitted explainer from its directory (JSON + safetensors, never a pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlplat import modeldir
from mlplat.contracts.explainer import BoundExplainer, ExplainerState
from mlplat.modeldir import LoadedModel
from mlplat.registry import StageKind


def load_state(directory: Path) -> ExplainerState | None:
    """The explainer state the explain step saved in a model directory; None if it fitted none."""
    manifest = modeldir.read_manifest(directory)
    entry = manifest.get("explainer")
    if not entry:
        return None
    arrays: dict[str, np.ndarray] = {}
    if entry.get("arrays"):
        from safetensors.numpy import load_file

        arrays = load_file(str(directory / modeldir.EXPLAINER_ARRAYS))
    return ExplainerState(entry.get("config", {}), arrays, manifest.get("global_importance", {}))


def load_explainer(loaded: LoadedModel) -> BoundExplainer | None:
    """The model's fitted explainer, rebuilt by its plugin from the stored state; None if none was fitted."""
    from mlplat import registry

    state = load_state(loaded.directory)
    if state is None:
        return None
    entry = loaded.manifest["explainer"]
    plugin = registry.get(StageKind.EXPLAINER, entry["plugin"]).create(entry.get("params", {}))
    return plugin.load(loaded, state)
