"""Rebuild a published model's fitted explainer from its directory (JSON + safetensors, never a pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlplat import modeldir
from mlplat.contracts.explainer import BoundExplainer, ExplainerState
from mlplat.errors import ModelDirError
from mlplat.modeldir import LoadedModel
from mlplat.registry import StageKind


def load_state(directory: Path | modeldir.ModelDir) -> ExplainerState | None:
    """The explainer state the explain step saved in a model directory; None if it fitted none."""
    model_dir = directory if isinstance(directory, modeldir.ModelDir) else modeldir.ModelDir(directory)
    manifest = model_dir.read()
    entry = manifest.explainer
    if entry is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    if entry.arrays:
        from mlplat.integrity import load_arrays

        path = model_dir.file(modeldir.EXPLAINER_ARRAYS, "explainer.arrays")
        if not path.is_file():
            raise ModelDirError(f"{model_dir.path}: the explainer's arrays {entry.arrays} are recorded "
                                f"but {modeldir.EXPLAINER_ARRAYS} is missing")
        arrays = load_arrays(path, list(entry.arrays))
    return ExplainerState(entry.config, arrays, manifest.global_importance or {})


def load_explainer(loaded: LoadedModel) -> BoundExplainer | None:
    """The model's fitted explainer, rebuilt by its plugin from the stored state; None if none was fitted."""
    from mlplat import registry

    state = load_state(loaded.directory)
    if state is None:
        return None
    entry = loaded.manifest.explainer
    assert entry is not None  # load_state found it
    plugin = registry.create(StageKind.EXPLAINER, entry.plugin, entry.params, step="serve")
    return plugin.load(loaded, state)
