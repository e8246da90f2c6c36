"""DDP through torchrun inside the step: 2 CPU processes (gloo) give the single-process model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat_plugins.torch_trainers import MLPConfig
from mlplat_plugins.torch_trainers.mlp import MLPTrainer


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(141, 6)).astype(np.float32)  # 141 rows, batch 16: an uneven last batch
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    weight = rng.uniform(0.5, 2.0, size=101).astype(np.float32)  # per-row weights take the weighted path
    info = DatasetInfo("ddp", "y", [f"f{i}" for i in range(6)], ["0", "1"])
    data = TrainingData(ArrayData(X[:101], y[:101], weight), ArrayData(X[101:], y[101:]), info)
    # dropout off: each rank would draw its own masks (the only intended difference)
    base = dict(hidden=[16, 16], dropout=0.0, epochs=4, batch_size=16, lr=1e-2, early_stopping_patience=None,
                label_smoothing=0.05, device="cpu", checkpoint_every=2)
    single = MLPTrainer(MLPConfig(**base)).fit(data, StepContext("train", tmp_path / "single", info, seed=5))
    epochs: list[int] = []
    (tmp_path / "ddp").mkdir()
    ddp = MLPTrainer(MLPConfig(ddp_processes=2, ddp_backend="gloo", **base)).fit(
        data, StepContext("train", tmp_path / "ddp", info, seed=5, on_epoch=lambda e, m: epochs.append(e)))
    assert ddp.extras["ddp_processes"] == 2 and ddp.extras["compute"]["devices"] == 2
    assert epochs == [0, 1, 2, 3]  # rank 0's epochs were relayed to the parent's callback
    for (name, a), b in zip(single.network.state_dict().items(), ddp.network.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    for s, d in zip(single.history, ddp.history, strict=True):
        assert abs(s["val_loss"] - d["val_loss"]) < 1e-5 and abs(s["train_loss"] - d["train_loss"]) < 1e-5
    assert (tmp_path / "ddp" / "checkpoints" / "LAST").is_file()
    assert (tmp_path / "ddp" / "report.html").is_file()
