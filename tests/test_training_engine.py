"""The shared training engine: early stopping, resume, CV, regularisation, weights, reports, CNN."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat.errors import SpecError, UsageError
from mlplat.registry import StageKind, spec_of
from mlplat_plugins.torch_trainers import CNNConfig, MLPConfig
from mlplat_plugins.torch_trainers.cnn import CNNTrainer
from mlplat_plugins.torch_trainers.compute import RSS_SAMPLE_S
from mlplat_plugins.torch_trainers.cv import stratified_folds
from mlplat_plugins.torch_trainers.engine import logit_offset, seed_everything
from mlplat_plugins.torch_trainers.mlp import MLPTrainer
from mlplat_plugins.torch_trainers.networks import build_network

torch.set_num_threads(1)
QUIET = {"checkpoint_every": 0}


def overfit_data(n_train: int = 80, n_val: int = 300, features: int = 40, seed: int = 0) -> TrainingData:
    """Few rows, many noise features, a noisy label: a wide MLP memorises it."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> ArrayData:
        X = rng.normal(size=(n, features)).astype(np.float32)
        y = ((X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n)) > 0).astype(np.int64)
        return ArrayData(X, y)

    info = DatasetInfo("overfit", "y", [f"f{i}" for i in range(features)], ["0", "1"])
    return TrainingData(make(n_train), make(n_val), info)


def context(tmp_path: Path, **kw) -> StepContext:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return StepContext("train", tmp_path, kw.pop("info", None), seed=kw.pop("seed", 3), **kw)


def fit(config: MLPConfig, data: TrainingData, work: Path, **kw):
    return MLPTrainer(config).fit(data, context(work, info=data.info, **kw))


def test_early_stopping_stops_and_restores_best_epoch(tmp_path: Path) -> None:
    data = overfit_data()
    patience = 3
    model = fit(MLPConfig(hidden=[128, 128], dropout=0, epochs=60, batch_size=16, lr=3e-3, early_stopping_patience=patience, **QUIET),
                data, tmp_path)
    best = int(model.metrics["best_epoch"])
    losses = [row["val_loss"] for row in model.history]
    assert len(model.history) == best + patience + 1 < 60  # stopped early, exactly `patience` epochs after the best
    assert best == int(np.argmin(losses))
    assert model.extras["stopped_early"] is True
    # the returned weights are the best epoch's, not the last epoch's
    assert model.metrics["val_loss"] == pytest.approx(losses[best], rel=1e-5)
    assert losses[-1] > losses[best]


def test_monitor_accuracy_and_no_restore(tmp_path: Path) -> None:
    data = overfit_data()
    model = fit(MLPConfig(hidden=[64], epochs=6, early_stopping_patience=None, restore_best_weights=False,
                          monitor="val_accuracy", **QUIET), data, tmp_path)
    assert len(model.history) == 6
    assert model.metrics["val_loss"] == pytest.approx(model.history[-1]["val_loss"], rel=1e-5)  # last epoch kept


def _strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")} for row in history]


def test_resume_continues_from_checkpoint_with_identical_results(tmp_path: Path) -> None:
    data = overfit_data(n_train=120)
    data.train.weight = np.linspace(0.5, 1.5, len(data.train.y)).astype(np.float32)
    config = MLPConfig(hidden=[32, 32], dropout=0.3, norm="batch", epochs=7, batch_size=16, scheduler="cosine",
                       early_stopping_patience=None, checkpoint_every=2)
    full = fit(config, data, tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_after_epoch_4(epoch: int, metrics: object) -> None:
        if epoch == 4:
            raise Crash

    with pytest.raises(Crash):
        fit(config, data, tmp_path / "crashed", on_epoch=crash_after_epoch_4)
    assert (tmp_path / "crashed" / "checkpoints" / "LAST").read_text() == "epoch-0003"
    seen: list[int] = []
    resumed = fit(config, data, tmp_path / "crashed", resume=True, on_epoch=lambda e, m: seen.append(e))
    assert resumed.extras["resumed_from_epoch"] == 3
    assert seen == [4, 5, 6]  # only the epochs after the checkpoint ran again
    assert _strip(resumed.history) == _strip(full.history)
    for (name, a), b in zip(full.network.state_dict().items(), resumed.network.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_ignores_checkpoint_of_another_config(tmp_path: Path) -> None:
    data = overfit_data()
    fit(MLPConfig(hidden=[8], epochs=2, checkpoint_every=1), data, tmp_path)
    logs: list[str] = []
    model = fit(MLPConfig(hidden=[8], epochs=3, checkpoint_every=1), data, tmp_path, resume=True, log=logs.append)
    assert model.extras["resumed_from_epoch"] is None and len(model.history) == 3
    assert any("another config" in line for line in logs)


def test_stratified_folds_are_disjoint_and_cover_the_training_split() -> None:
    y = np.array([0] * 30 + [1] * 12 + [2] * 9)
    folds = stratified_folds(y, 3, seed=1)
    assert len(folds) == 3
    held = [set(h.tolist()) for _, h in folds]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not held[i] & held[j]
        train = set(folds[i][0].tolist())
        assert not train & held[i] and train | held[i] == set(range(len(y)))
        assert np.bincount(y[folds[i][1]]).tolist() == [10, 4, 3]  # stratified
    assert set().union(*held) == set(range(len(y)))
    with pytest.raises(UsageError, match="cv_folds"):
        stratified_folds(np.array([0] * 10 + [1] * 2), 3, seed=0)


def test_cv_reports_band_with_k_folds(tmp_path: Path) -> None:
    data = overfit_data(n_train=90)
    model = fit(MLPConfig(hidden=[16], epochs=3, cv_folds=3, **QUIET), data, tmp_path)
    cv = model.cv
    assert cv is not None and cv["folds"] == 3 and len(cv["per_fold"]) == 3
    assert sum(f["n_val"] for f in cv["per_fold"]) == 90
    for key in ("val_accuracy", "train_accuracy", "gap_accuracy", "val_loss", "gap_loss"):
        assert set(cv[key]) == {"mean", "std"}
    gaps = [f["train_accuracy"] - f["val_accuracy"] for f in cv["per_fold"]]
    assert cv["gap_accuracy"]["mean"] == pytest.approx(float(np.mean(gaps)))
    assert cv["gap_accuracy"]["std"] == pytest.approx(float(np.std(gaps, ddof=1)))
    with pytest.raises(SpecError, match="cv_folds"):
        spec_of(StageKind.TRAINER, "mlp").create({"cv_folds": 1})


def noisy_label_data(n_train: int = 100, n_val: int = 300, features: int = 5, flip: float = 0.2,
                     seed: int = 0) -> TrainingData:
    """A linear boundary in few features with a fifth of the labels flipped: a wide MLP memorises the
    flips (hidden-layer dropout barely matters when noise features are what gets memorised)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)

    def make(n: int) -> ArrayData:
        X = rng.normal(size=(n, features)).astype(np.float32)
        y = (X @ w > 0).astype(np.int64)
        flipped = rng.random(n) < flip
        return ArrayData(X, np.where(flipped, 1 - y, y))

    info = DatasetInfo("noisy", "y", [f"f{i}" for i in range(features)], ["0", "1"])
    return TrainingData(make(n_train), make(n_val), info)


def test_dropout_and_weight_decay_each_reduce_the_generalization_gap(tmp_path: Path) -> None:
    data = noisy_label_data()
    base = dict(hidden=[128, 128], epochs=40, batch_size=16, lr=3e-3, early_stopping_patience=None,
                restore_best_weights=False, **QUIET)
    runs = {name: fit(MLPConfig(**controls, **base), data, tmp_path / name, reports=False) for name, controls in {
        "plain": dict(dropout=0.0, weight_decay=0.0), "dropout": dict(dropout=0.5, weight_decay=0.0),
        "weight_decay": dict(dropout=0.0, weight_decay=10.0), "both": dict(dropout=0.5, weight_decay=10.0)}.items()}
    loss_gap = {name: m.metrics["val_loss"] - m.metrics["train_loss"] for name, m in runs.items()}
    plain = runs["plain"].metrics
    assert plain["train_accuracy"] >= 0.99 and loss_gap["plain"] > 1.0  # it did overfit
    for name in ("dropout", "weight_decay", "both"):
        assert loss_gap[name] < 0.5 * loss_gap["plain"], (name, loss_gap)
        assert runs[name].metrics["gap_accuracy"] < plain["gap_accuracy"], name


@torch.no_grad()
def _l1_norm(network: torch.nn.Module) -> float:
    return sum(float(p.abs().sum()) for p in network.parameters() if p.dim() > 1)


def test_l1_shrinks_weight_matrices_alongside_the_other_controls(tmp_path: Path) -> None:
    data = overfit_data()
    model = fit(MLPConfig(hidden=[32], epochs=4, l1=1e-3, label_smoothing=0.1, grad_clip=0.5, scheduler="plateau",
                          plateau_patience=0, lr=1e-2, norm="layer", activation="gelu", **QUIET), data, tmp_path)
    assert len(model.history) == 4 and all(np.isfinite(r["train_loss"]) for r in model.history)
    no_l1 = fit(MLPConfig(hidden=[32], epochs=4, label_smoothing=0.1, grad_clip=0.5, lr=1e-2, norm="layer",
                          activation="gelu", **QUIET), data, tmp_path / "b")
    assert _l1_norm(model.network) < _l1_norm(no_l1.network)


def test_label_smoothing_caps_training_confidence(tmp_path: Path) -> None:
    data = overfit_data()
    base = dict(hidden=[128], dropout=0, epochs=25, batch_size=16, lr=1e-2, early_stopping_patience=None,
                restore_best_weights=False, **QUIET)
    confidence = {}
    for smoothing in (0.0, 0.3):
        model = fit(MLPConfig(label_smoothing=smoothing, **base), data, tmp_path / str(smoothing))
        with torch.no_grad():
            confidence[smoothing] = model.network(torch.from_numpy(data.train.X)).softmax(1).max(1).values
    assert float(confidence[0.0].mean()) > 0.98  # memorised with near-certain outputs
    # smoothing 0.3 over 2 classes targets 0.85 for the true class: outputs stay near it
    assert float(confidence[0.3].max()) < 0.92


def test_schedulers_set_the_learning_rate(tmp_path: Path) -> None:
    data = overfit_data()
    cosine = fit(MLPConfig(hidden=[16], epochs=6, lr=1e-2, scheduler="cosine", early_stopping_patience=None, **QUIET),
                 data, tmp_path / "cosine")
    lrs = [row["lr"] for row in cosine.history]  # the rate each epoch ran with
    expected = [1e-2 * (1 + np.cos(np.pi * e / 6)) / 2 for e in range(6)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    # plateau halves the rate after every epoch without a val-loss improvement (patience 0)
    plateau = fit(MLPConfig(hidden=[128, 128], dropout=0, epochs=10, batch_size=16, lr=3e-3, scheduler="plateau",
                            plateau_patience=0, early_stopping_patience=None, **QUIET), data, tmp_path / "plateau")
    best = np.inf
    for row, following in zip(plateau.history, plateau.history[1:], strict=False):  # pairs of consecutive epochs
        improved = row["val_loss"] < best
        best = min(best, row["val_loss"])
        assert following["lr"] == pytest.approx(row["lr"] * (1.0 if improved else 0.5))
    assert plateau.history[-1]["lr"] < 3e-3  # the overfitting model's val loss did stall


def test_gradient_clipping_bounds_the_updates(tmp_path: Path) -> None:
    data = overfit_data()
    moved, losses = {}, {}
    for clip in (None, 1e-10):
        model = fit(MLPConfig(hidden=[32], dropout=0, epochs=5, lr=1e-2, grad_clip=clip, early_stopping_patience=None,
                              restore_best_weights=False, **QUIET), data, tmp_path / str(clip))
        seed_everything(3)  # the trainer builds its network right after seeding with the context's seed
        start = build_network(model.architecture).state_dict()
        moved[clip] = max(float((p - start[k]).abs().max()) for k, p in model.network.state_dict().items())
        losses[clip] = [row["train_loss"] for row in model.history]
    # a 1e-10 gradient norm is far below Adam's eps: every step is ~100x smaller than lr
    assert moved[1e-10] < 0.02 * moved[None]
    assert losses[None][-1] < losses[None][0] - 0.1 and losses[1e-10][-1] == pytest.approx(losses[1e-10][0], abs=5e-3)


def test_reports_off_skips_human_reports_but_not_metrics(tmp_path: Path) -> None:
    data = overfit_data()
    model = fit(MLPConfig(hidden=[8], epochs=2, **QUIET), data, tmp_path, reports=False)
    assert len(model.history) == 2 and 0 <= model.metrics["val_accuracy"] <= 1 and model.extras["compute"]["wall_s"] > 0
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("report.*"))


def test_row_weights_and_class_weights_change_the_loss(tmp_path: Path) -> None:
    data = overfit_data(n_train=200)
    # rows of class 1 weigh nothing: the model learns to predict class 0 everywhere
    data.train.weight = (data.train.y == 0).astype(np.float32)
    model = fit(MLPConfig(hidden=[16], epochs=30, lr=3e-2, early_stopping_patience=None, **QUIET), data, tmp_path)
    logits = model.network(torch.from_numpy(data.validation.X))
    assert (logits.argmax(1) == 0).float().mean() > 0.97  # the labels are ~50/50
    with pytest.raises(UsageError, match="class_weight: expected 2 weights"):
        fit(MLPConfig(hidden=[4], epochs=1, class_weight=[1.0], **QUIET), data, tmp_path / "bad")


def test_balanced_class_weights_raise_minority_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.normal(size=600) > 1.6).astype(np.int64)  # ~7% minority
    info = DatasetInfo("imb", "y", [f"f{i}" for i in range(5)], ["0", "1"])
    data = TrainingData(ArrayData(X[:400], y[:400]), ArrayData(X[400:], y[400:]), info)
    recall = {}
    for weight in (None, "balanced"):
        model = fit(MLPConfig(hidden=[16], epochs=20, lr=1e-2, early_stopping_patience=None, class_weight=weight, **QUIET),
                    data, tmp_path / str(weight))
        pred = model.network(torch.from_numpy(data.validation.X)).argmax(1).numpy()
        recall[weight] = float((pred[data.validation.y == 1] == 1).mean())
    assert recall["balanced"] > recall[None] + 0.2


def test_logit_adjustment_trains_balanced_logits_and_early_stops_on_the_adjusted_ones(tmp_path: Path) -> None:
    # features carry no information: the best logits are log(prior), or equal once adjusted by tau=1
    y = (np.random.default_rng(0).random(600) < 0.1).astype(np.int64)
    X = np.zeros((600, 3), np.float32)
    info = DatasetInfo("prior", "y", ["a", "b", "c"], ["0", "1"])
    data = TrainingData(ArrayData(X[:400], y[:400]), ArrayData(X[400:], y[400:]), info)
    gap, val_loss = {}, {}
    for tau in (0.0, 1.0):
        model = fit(MLPConfig(hidden=[4], dropout=0.0, epochs=150, lr=3e-2, early_stopping_patience=None, restore_best_weights=False,
                              logit_adjustment=tau, **QUIET), data, tmp_path / str(tau))
        logits = model.network(torch.from_numpy(X[:1]))[0].detach()
        gap[tau], val_loss[tau] = float(logits[0] - logits[1]), model.history[-1]["val_loss"]
    counts = np.bincount(y[:400])
    assert gap[0.0] == pytest.approx(np.log(counts[0] / counts[1]), abs=0.15)
    assert abs(gap[1.0]) < 0.15  # the saved network's own logits are balanced
    # the loop scores the adjusted logits: the validation loss is the prior's entropy either way, not log 2
    assert val_loss[1.0] == pytest.approx(val_loss[0.0], abs=0.02) and val_loss[1.0] < 0.5
    assert np.isfinite(logit_offset(np.zeros(5, np.int64), MLPConfig(logit_adjustment=1.0), 3)).all()  # an absent class
    with pytest.raises(SpecError, match="logit_adjustment"):
        spec_of(StageKind.TRAINER, "mlp").create({"logit_adjustment": -1})


def test_reports_progress_and_compute_cost(tmp_path: Path) -> None:
    data = overfit_data()
    rows: list[dict] = []
    model = fit(MLPConfig(hidden=[8], epochs=3, **QUIET), data, tmp_path, on_epoch=lambda e, m: rows.append(dict(m)))
    assert [r["epoch"] for r in rows] == [0, 1, 2] and all(r["epochs"] == 3 for r in rows)
    for name in ("report.html", "report.md", "training_curves.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "report.html").read_text()
    assert "Training curves" in html and "confusion matrix" in html and "Compute cost" in html
    compute = model.extras["compute"]
    assert compute["wall_s"] > 0 and compute["device_seconds"] >= compute["wall_s"] and compute["peak_host_rss_mb"] > 10
    assert compute["energy_j"] is None and compute["energy_source"].startswith("unavailable")
    matrix = np.array(model.extras["confusion_matrix"]["matrix"])
    assert matrix.sum() == len(data.validation.y)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(model.metrics["val_accuracy"], abs=1e-6)


def test_peak_host_memory_is_the_fits_not_the_process_lifetimes(tmp_path: Path) -> None:
    import resource

    ballast = np.ones(512 * 2**20 // 8)  # 512 MiB touched, then returned to the OS
    del ballast
    lifetime_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = overfit_data()
    model = fit(MLPConfig(hidden=[8], epochs=2, **QUIET), data, tmp_path, reports=False)
    peak = model.extras["compute"]["peak_host_rss_mb"]
    assert 10 < peak < lifetime_mb - 400
    # memory held during the fit counts, though it stays below the lifetime peak (the sampler sees it)

    def hold_300_mib(epoch: int, metrics: object) -> None:
        block = np.ones(300 * 2**20 // 8)
        time.sleep(3 * RSS_SAMPLE_S)
        del block

    spiky = fit(MLPConfig(hidden=[8], epochs=2, **QUIET), data, tmp_path / "spiky", reports=False, on_epoch=hold_300_mib)
    assert peak + 250 < spiky.extras["compute"]["peak_host_rss_mb"] < lifetime_mb


def test_mlp_width_depth_and_architecture_rebuild(tmp_path: Path) -> None:
    data = overfit_data()
    trainer = MLPTrainer(MLPConfig(width=24, depth=3, norm="batch", epochs=2, **QUIET))
    model = trainer.fit(data, context(tmp_path, info=data.info))
    assert model.architecture["hidden"] == [24, 24, 24]
    rebuilt = spec_of(StageKind.TRAINER, "mlp").create({}).build_network(model.architecture)  # serving's path
    rebuilt.load_state_dict(model.network.state_dict())
    rebuilt.eval()
    x = torch.from_numpy(data.validation.X)
    assert torch.allclose(rebuilt(x), model.network(x))


def digits_data() -> TrainingData:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = ((X - X.mean(0)) / (X.std(0) + 1e-9)).astype(np.float32)
    info = DatasetInfo("digits", "target", [f"pixel_{i}" for i in range(64)], [str(i) for i in range(10)], [1, 8, 8])
    return TrainingData(ArrayData(X[:1000], y[:1000]), ArrayData(X[1000:1400], y[1000:1400]), info)


def test_cnn_learns_digits_and_rebuilds(tmp_path: Path) -> None:
    data = digits_data()
    model = CNNTrainer(CNNConfig(epochs=4, lr=3e-3, **QUIET)).fit(data, context(tmp_path, info=data.info))
    assert model.architecture["image_shape"] == [1, 8, 8]
    assert model.metrics["val_accuracy"] > 0.9
    rebuilt = spec_of(StageKind.TRAINER, "cnn").create({}).build_network(model.architecture)
    rebuilt.load_state_dict(model.network.state_dict())
    rebuilt.eval()
    x = torch.from_numpy(data.validation.X[:20])
    assert torch.allclose(rebuilt(x), model.network(x), atol=1e-6)


def test_cnn_refuses_data_that_is_not_an_image(tmp_path: Path) -> None:
    data = overfit_data()
    with pytest.raises(UsageError, match="image_shape"):
        CNNTrainer(CNNConfig(epochs=1)).fit(data, context(tmp_path, info=data.info))
    with pytest.raises(UsageError, match="has 64 pixels but the data has 40 features"):
        CNNTrainer(CNNConfig(epochs=1, image_shape=[1, 8, 8])).fit(data, context(tmp_path, info=data.info))


def test_deterministic_flag_gives_identical_runs_and_is_restored(tmp_path: Path) -> None:
    data = overfit_data()
    config = MLPConfig(hidden=[16], dropout=0.2, epochs=3, deterministic=True, **QUIET)
    during: list[bool] = []
    a = fit(config, data, tmp_path / "a", on_epoch=lambda e, m: during.append(torch.are_deterministic_algorithms_enabled()))
    b = fit(config, data, tmp_path / "b")
    assert during == [True] * 3  # deterministic kernels while training ...
    assert not torch.are_deterministic_algorithms_enabled()  # ... and only then
    assert _strip(a.history) == _strip(b.history)
    off: list[bool] = []
    fit(config.model_copy(update={"deterministic": False}), data, tmp_path / "c",
        on_epoch=lambda e, m: off.append(torch.are_deterministic_algorithms_enabled()))
    assert off == [False] * 3


def test_epoch_seconds_cover_all_per_epoch_work(tmp_path: Path) -> None:
    """The history's epoch time (what benchmarks/training.py compares) includes the epoch callback."""
    data = overfit_data()
    model = fit(MLPConfig(hidden=[8], epochs=2, **QUIET), data, tmp_path, reports=False,
                on_epoch=lambda e, m: time.sleep(0.2))
    assert all(row["seconds"] >= 0.2 for row in model.history)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_paths_train_on_cpu(amp: str, tmp_path: Path) -> None:
    """The AMP code path (autocast, GradScaler for fp16, unscale before clipping) also runs on CPU."""
    data = digits_data()
    model = fit(MLPConfig(width=64, epochs=3, lr=3e-3, amp=amp, grad_clip=1.0, **QUIET), data, tmp_path)
    assert model.extras["amp"] == amp and model.metrics["val_accuracy"] > 0.8
    assert all(p.dtype == torch.float32 for p in model.network.parameters())  # master weights stay fp32
