"""Shared fixtures. The repo's source roots are importable through the editable install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA, saying why; they run on a lent GPU machine."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU machine)")
    for item in gpu_items:
        item.add_marker(skip)


TINY_SPEC = {
    "name": "tiny",
    "seed": 7,
    "dataset": {"source": "sklearn:breast_cancer", "validation": 0.2, "test": 0.2},
    "steps": {
        "validate": {"plugin": "tabular"},
        "train": {"plugin": "mlp", "params": {"hidden": [16], "epochs": 8, "early_stopping_patience": None}},
    },
}

# Validation, a two-augmenter remediation chain and a 2-trial tune, each as small as it gets: the data
# steps of the tests that run every step kind through another runner (kfp.local, a TrainJob's script).
SMALL_DATA_STEPS: dict[str, Any] = {
    "validate": {"plugin": "tabular", "params": {"label_noise": {"model": "logistic", "folds": 3, "max_noise_share": 0.1},
                                                 "severity": {"imbalance": "warn", "duplicates": "warn", "label_noise": "warn"},
                                                 "plot_columns": 0}},
    "augment": [{"plugin": "label_noise", "params": {"action": "drop", "max_share": 0.1}}, {"plugin": "smote"}],
    "tune": {"plugin": "random", "params": {"n_trials": 2, "pruner": "none"},
             "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                              "width": {"type": "categorical", "choices": [8, 16]}}},
}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """One small breast-cancer run through the real in-process runner, shared by the session.

    Returns mlplat.runner.RunSummary; `result.model_dir` is a published model directory.
    Tests must not modify it: copy it first (mlplat.modeldir.copy_model_dir).
    """
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    spec = resolve(parse_spec(TINY_SPEC))
    return run_pipeline(spec, REPO, RunStore(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="session")
def trained_model_dir(trained_run) -> Path:
    return trained_run.model_dir


@pytest.fixture(scope="session")
def image_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on generated 16x16 shapes, written directly (mlplat.testing.image_model); do not modify it."""
    from mlplat.testing.image_model import write_image_model

    return write_image_model(tmp_path_factory.mktemp("image-model") / "model", steps=40, size=16,
                             train_images=256, reference_images=128)
