"""Regression quality: mlplat's MLP trainer vs scikit-learn's HistGradientBoostingRegressor vs a
hand-written torch MLP, on the same train/validation/test split (mlplat's own, seeded), same run.

    python benchmarks/regression.py                 # sklearn diabetes and a 20,000-row make_regression
    python benchmarks/regression.py --repeats 3     # several seeds: mean ± std per model

Each model fits on the training split; the validation split early-stops the two MLPs (best epoch
restored) and is unused by the boosted trees' own early stopping (they hold out 10 % of the
training split themselves). All three are scored on the test split: RMSE in the label's units, R².
The MLPs share width, depth, optimizer (AdamW), learning rate, batch size and epochs; the hand MLP
standardizes X and y on the training rows as mlplat does.

Measured 2026-12-02 on the shared 2-core dev VM (CPU, 1 thread, load average ~14, so the fit
times say little), `--repeats 1`, seed 0:

    dataset               model               RMSE      R²
    diabetes              mlplat mlp        56.979   0.367
    diabetes              hist_gbr          62.991   0.226
    diabetes              hand torch mlp    56.979   0.367    RMSE mlplat/hand 1.000, mlplat/hist_gbr 0.905
    make_regression_20k   mlplat mlp        11.204   0.994
    make_regression_20k   hist_gbr          24.483   0.970
    make_regression_20k   hand torch mlp    11.204   0.994    RMSE mlplat/hand 1.000, mlplat/hist_gbr 0.458

The trainer and the hand loop agree to the last digit: same seed, initialization, batch order
(torch.randperm from a generator seeded alike) and loss; the standardized target is the same.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlplat.data import Splits, split_frame
from mlplat.evaluation import regression_metrics
from mlplat.modeldir import LoadedModel
from mlplat.spec import parse_spec, resolve
from mlplat.steps import train
from torch.nn import functional as F

HIDDEN, LR, WEIGHT_DECAY = [64, 64], 3e-3, 1e-4
DATASETS: dict[str, dict[str, Any]] = {
    "diabetes": {"epochs": 300, "batch_size": 32, "patience": 30},
    "make_regression_20k": {"epochs": 60, "batch_size": 256, "patience": 10},
}


def load(name: str, seed: int) -> pd.DataFrame:
    import sklearn.datasets

    if name == "diabetes":
        return sklearn.datasets.load_diabetes(as_frame=True).frame.rename(columns={"target": "y"})
    X, y = sklearn.datasets.make_regression(n_samples=20_000, n_features=20, n_informative=10, noise=10.0,
                                            random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["y"] = y + 0.05 * y**2 / np.std(y)  # a mild non-linearity, so trees and MLPs both have work to do
    return frame


def mlplat_mlp(splits: Splits, work: Path, cfg: dict[str, Any], seed: int) -> np.ndarray:
    splits.save(work / "data")
    spec = resolve(parse_spec({"name": "bench", "seed": seed,
                               "dataset": {"source": "bench.csv", "label": "y", "task": "regression"},
                               "steps": {"train": {"plugin": "mlp", "params": {
                                   "hidden": HIDDEN, "dropout": 0.0, "lr": LR, "weight_decay": WEIGHT_DECAY,
                                   "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "loss": "mse",
                                   "early_stopping_patience": cfg["patience"], "checkpoint_every": 0, "device": "cpu"}}}}))
    model = LoadedModel.load(train(spec, work / "data", work / "train"))
    return model.predict_values(splits.test.features[model.feature_names].to_numpy())


def hist_gbr(splits: Splits, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(random_state=seed).fit(splits.train.features.to_numpy(), splits.train.labels)
    return model.predict(splits.test.features.to_numpy())


def hand_mlp(splits: Splits, cfg: dict[str, Any], seed: int) -> np.ndarray:
    """The minimal torch loop: standardize, MLP, AdamW on MSE, best validation epoch restored."""
    torch.manual_seed(seed)
    Xtr, Xva, Xte = (t.features.to_numpy(np.float64) for t in (splits.train, splits.validation, splits.test))
    mean, std = Xtr.mean(0), np.where(Xtr.std(0) > 1e-12, Xtr.std(0), 1.0)
    y_mean, y_std = splits.train.labels.mean(), splits.train.labels.std()
    tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    xtr, xva, xte = (tensor((X - mean) / std) for X in (Xtr, Xva, Xte))
    ytr, yva = tensor((splits.train.labels - y_mean) / y_std), tensor((splits.validation.labels - y_mean) / y_std)
    layers: list[torch.nn.Module] = []
    width = xtr.shape[1]
    for out in HIDDEN:
        layers += [torch.nn.Linear(width, out), torch.nn.ReLU()]
        width = out
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    best, best_state, stale = float("inf"), None, 0
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg["epochs"]):
        net.train()
        order = torch.randperm(len(xtr), generator=generator)
        for start in range(0, len(xtr), cfg["batch_size"]):
            idx = order[start:start + cfg["batch_size"]]
            loss = F.mse_loss(net(xtr[idx])[:, 0], ytr[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val = float(F.mse_loss(net(xva)[:, 0], yva))
        if val < best:
            best, best_state, stale = val, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= cfg["patience"]:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    with torch.no_grad():
        return net(xte)[:, 0].numpy().astype(np.float64) * y_std + y_mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="seeds 0..repeats-1")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'dataset':<22}{'model':<18}{'RMSE':>16}{'R²':>16}{'fit s':>8}")
    for name, cfg in DATASETS.items():
        scores: dict[str, list[tuple[float, float, float]]] = {"mlplat mlp": [], "hist_gbr": [], "hand torch mlp": []}
        for seed in range(args.repeats):
            frame = load(name, seed)
            splits = split_frame(frame, "y", name, 0.2, 0.2, seed=seed)
            assert splits.info.task == "regression"
            with tempfile.TemporaryDirectory() as tmp:
                fits = {"mlplat mlp": partial(mlplat_mlp, splits, Path(tmp), cfg, seed),
                        "hist_gbr": partial(hist_gbr, splits, seed), "hand torch mlp": partial(hand_mlp, splits, cfg, seed)}
                for model, fit in fits.items():
                    started = time.perf_counter()
                    metrics = regression_metrics(splits.test.labels, fit())
                    scores[model].append((metrics["rmse"], metrics["r2"], time.perf_counter() - started))
        for model, rows in scores.items():
            a = np.array(rows)
            rmse, r2 = (f"{a[:, i].mean():.3f}" + (f"±{a[:, i].std():.3f}" if len(a) > 1 else "") for i in (0, 1))
            print(f"{name:<22}{model:<18}{rmse:>16}{r2:>16}{a[:, 2].mean():>8.1f}")
        mlplat_rmse, hand_rmse = np.mean([r[0] for r in scores["mlplat mlp"]]), np.mean([r[0] for r in scores["hand torch mlp"]])
        hgb_rmse = np.mean([r[0] for r in scores["hist_gbr"]])
        print(f"{name:<22}ratio RMSE mlplat/hand = {mlplat_rmse / hand_rmse:.3f}, mlplat/hist_gbr = {mlplat_rmse / hgb_rmse:.3f}")


if __name__ == "__main__":
    main()
