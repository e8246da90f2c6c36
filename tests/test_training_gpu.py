"""CUDA paths of the training engine: device auto, AMP (bf16, fp16 + GradScaler), compile, compute cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat_plugins.torch_trainers import CNNConfig, MLPConfig
from mlplat_plugins.torch_trainers.cnn import CNNTrainer
from mlplat_plugins.torch_trainers.mlp import MLPTrainer

pytestmark = pytest.mark.gpu


def digits() -> TrainingData:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = ((X - X.mean(0)) / (X.std(0) + 1e-9)).astype(np.float32)
    info = DatasetInfo("digits", "target", [f"pixel_{i}" for i in range(64)], [str(i) for i in range(10)], [1, 8, 8])
    return TrainingData(ArrayData(X[:1200], y[:1200]), ArrayData(X[1200:], y[1200:]), info)


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_amp_trains_and_reports_device_cost(amp: str, tmp_path: Path) -> None:
    data = digits()
    model = MLPTrainer(MLPConfig(width=128, epochs=8, lr=3e-3, amp=amp, device="auto", checkpoint_every=4)).fit(
        data, StepContext("train", tmp_path, data.info, seed=0))
    assert model.extras["device"].startswith("cuda") and model.extras["amp"] == amp
    assert model.metrics["val_accuracy"] > 0.9
    compute = model.extras["compute"]
    assert compute["peak_device_memory_mb"] > 0
    assert compute["energy_j"] is None or compute["energy_j"] >= 0  # NVML may be missing; never fails the run
    assert next(model.network.parameters()).device.type == "cpu"  # returned on CPU for the model directory


def test_cuda_resume_and_cnn_bf16(tmp_path: Path) -> None:
    data = digits()
    model = CNNTrainer(CNNConfig(epochs=4, amp="bf16", device="cuda", checkpoint_every=2)).fit(
        data, StepContext("train", tmp_path, data.info, seed=0))
    assert model.metrics["val_accuracy"] > 0.85
    again = CNNTrainer(CNNConfig(epochs=4, amp="bf16", device="cuda", checkpoint_every=2)).fit(
        data, StepContext("train", tmp_path, data.info, seed=0, resume=True))
    assert again.extras["resumed_from_epoch"] == 3  # the final checkpoint: nothing left to train
    for a, b in zip(model.network.state_dict().values(), again.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cuda_compile(tmp_path: Path) -> None:
    data = digits()
    model = MLPTrainer(MLPConfig(width=64, epochs=3, compile=True, device="cuda", checkpoint_every=0)).fit(
        data, StepContext("train", tmp_path, data.info, seed=0))
    assert model.extras["compiled"] and model.metrics["val_accuracy"] > 0.8
    assert all(not k.startswith("_orig_mod") for k in model.network.state_dict())
