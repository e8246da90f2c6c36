"""The training engine shared by the torch trainers.

Tabular data is moved to the device once and sliced into batches there: a per-row
DataLoader would dominate the step time for small networks.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData
from mlplat_plugins.torch_trainers import TrainingConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _tensors(data: ArrayData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    X = torch.as_tensor(data.X, dtype=torch.float32, device=device)
    y = torch.as_tensor(data.y, dtype=torch.long, device=device)
    w = None if data.weight is None else torch.as_tensor(data.weight, dtype=torch.float32, device=device)
    return X, y, w


@torch.no_grad()
def evaluate(network: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode."""
    network.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(X), batch):
        logits = network(X[start : start + batch]).float()
        loss += float(nn.functional.cross_entropy(logits, y[start : start + batch], reduction="sum"))
        correct += int((logits.argmax(1) == y[start : start + batch]).sum())
    return loss / max(len(X), 1), correct / max(len(X), 1)


def fit(network: nn.Module, train: ArrayData, val: ArrayData, config: TrainingConfig, context: StepContext) -> dict[str, Any]:
    """Train with AdamW and early stopping (restoring the best weights). Returns history and final metrics."""
    device = resolve_device(config.device)
    generator = seed_everything(context.seed)
    network.to(device)
    Xt, yt, wt = _tensors(train, device)
    Xv, yv, _ = _tensors(val, device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch, stale = -float("inf"), None, 0, 0
    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(len(Xt), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(Xt), config.batch_size):
            idx = order[start : start + config.batch_size]
            losses = nn.functional.cross_entropy(network(Xt[idx]), yt[idx], reduction="none")
            loss = (losses * wt[idx]).sum() / wt[idx].sum() if wt is not None else losses.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        train_loss, train_acc = evaluate(network, Xt, yt)
        val_loss, val_acc = evaluate(network, Xv, yv)
        row = {"epoch": epoch, "epochs": config.epochs, "train_loss": train_loss, "train_accuracy": train_acc,
               "val_loss": val_loss, "val_accuracy": val_acc}
        history.append(row)
        context.on_epoch(epoch, row)
        score = -val_loss if config.monitor == "val_loss" else val_acc
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(network.state_dict())
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                break
    if best_state is not None:
        network.load_state_dict(best_state)
    network.cpu().eval()
    best = history[best_epoch]
    metrics = {k: best[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
    metrics.update(best_epoch=float(best_epoch), epochs_run=float(len(history)))
    return {"history": history, "metrics": metrics, "device": str(device)}
