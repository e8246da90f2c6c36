"""Data quality and quantity benchmark, through the real plugins (registry), on scikit-learn data.

1. Label-noise detection: precision / recall of the `tabular` validator's confident-learning
   suspects at 10 % and 20 % injected symmetric noise.
2. Imbalance at 1:20: balanced accuracy of the MLP trained naively vs with remediation
   (random oversampling, SMOTE; class-weighted loss, a trainer option, for comparison).
3. Small data: test accuracy training on 10 % of the training split, with vs without augmentation.

Baselines are measured in the same run; figures are means over seeds.
Run: .venv/bin/python benchmarks/data_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlplat import registry
from mlplat.contracts import StepContext
from mlplat.data import Splits, Table, load_source, split_frame
from mlplat.registry import StageKind
from mlplat.steps import prepare_training

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="mlplat-dq-bench-"))


def splits_for(dataset: str, seed: int, validation: float = 0.2, test: float = 0.2) -> Splits:
    frame, label = load_source(f"sklearn:{dataset}", None, None, REPO)
    shape = [1, 8, 8] if dataset == "digits" else None
    return split_frame(frame, label, dataset, validation, test, seed, image_shape=shape)


def context(splits: Splits, seed: int, findings: dict[str, Any] | None = None) -> StepContext:
    return StepContext("bench", SCRATCH, splits.info, seed=seed, findings=findings or {})


# --- 1. label noise ---------------------------------------------------------------------------

def inject_symmetric_noise(labels: np.ndarray, n_classes: int, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    noisy = labels.copy()
    flipped = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    shift = rng.integers(1, n_classes, size=len(flipped))  # a uniformly chosen *other* class
    noisy[flipped] = (labels[flipped] + shift) % n_classes
    return noisy, flipped


def label_noise_detection(dataset: str, rate: float, model: str, seeds: list[int]) -> dict[str, float]:
    precision, recall, seconds = [], [], []
    for seed in seeds:
        splits = splits_for(dataset, seed, 0.1, 0.1)
        rng = np.random.default_rng(seed)
        noisy, flipped = inject_symmetric_noise(splits.train.labels, splits.info.n_classes, rate, rng)
        t = splits.train
        splits = splits.with_train(Table(t.features, noisy, t.row_ids))
        validator = registry.get(StageKind.VALIDATOR, "tabular").create(
            {"plot_columns": 0, "label_noise": {"model": model}})
        started = time.perf_counter()
        report = validator.validate(splits, context(splits, seed))
        seconds.append(time.perf_counter() - started)
        found = set(report.findings["label_noise"]["row_ids"])
        truth = set(t.row_ids[flipped].tolist())
        precision.append(len(found & truth) / max(len(found), 1))
        recall.append(len(found & truth) / len(truth))
    return {"precision": float(np.mean(precision)), "recall": float(np.mean(recall)), "seconds": float(np.mean(seconds))}


# --- training helper ----------------------------------------------------------------------------

def train_and_score(splits: Splits, seed: int, trainer: str = "mlp", **params: Any) -> dict[str, float]:
    """Train through the trainer plugin on (possibly augmented) splits; score on the real test split."""
    import torch
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    torch.manual_seed(seed)
    training, standardizer = prepare_training(splits)
    base = {"epochs": 60, "early_stopping_patience": 10, "checkpoint_every": 0, "lr": 3e-3, "device": "cpu"}
    fitted = registry.get(StageKind.TRAINER, trainer).create({**base, **params}).fit(training, context(splits, seed))
    X = torch.as_tensor(standardizer.transform(splits.test.features.to_numpy()), dtype=torch.float32)
    network = fitted.network.cpu().eval()
    with torch.no_grad():
        predicted = network(X).argmax(1).numpy()
    y = splits.test.labels
    return {"accuracy": accuracy_score(y, predicted), "balanced_accuracy": balanced_accuracy_score(y, predicted)}


def augmented(splits: Splits, seed: int, chain: list[tuple[str, dict[str, Any]]], findings: dict[str, Any] | None = None) -> Splits:
    train = splits.train
    for name, params in chain:
        train = registry.get(StageKind.AUGMENTER, name).create(params).augment(train, context(splits, seed, findings))
    return splits.with_train(train)


# --- 2. imbalance -------------------------------------------------------------------------------

def make_imbalanced(splits: Splits, ratio: int, minority: int, seed: int) -> Splits:
    """Train and validation at majority:minority = ratio:1; the test split keeps its real mix."""
    rng = np.random.default_rng(seed)

    def cut(table: Table) -> Table:
        majority = np.flatnonzero(table.labels != minority)
        keep_minority = rng.choice(np.flatnonzero(table.labels == minority), size=max(2, len(majority) // ratio), replace=False)
        return table.take(np.sort(np.concatenate([majority, keep_minority])))

    return Splits(splits.info, cut(splits.train), cut(splits.validation), splits.test)


def generated_splits(seed: int) -> Splits:
    """A harder, overlapping binary problem from scikit-learn's make_classification generator."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=4000, n_features=20, n_informative=6, n_redundant=4, class_sep=1.0,
                               flip_y=0.0, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(target=y)
    return split_frame(frame, "target", "make_classification", 0.2, 0.2, seed)


def imbalance_benchmark(dataset: str, seeds: list[int]) -> dict[str, float]:
    variants: dict[str, list[float]] = {"naive": [], "random_oversample": [], "smote": [], "class_weight=balanced (trainer)": []}
    for seed in seeds:
        base = generated_splits(seed) if dataset == "make_classification" else splits_for(dataset, seed)
        splits = make_imbalanced(base, ratio=20, minority=1, seed=seed)
        variants["naive"].append(train_and_score(splits, seed)["balanced_accuracy"])
        for name in ("random_oversample", "smote"):
            variants[name].append(train_and_score(augmented(splits, seed, [(name, {})]), seed)["balanced_accuracy"])
        variants["class_weight=balanced (trainer)"].append(train_and_score(splits, seed, class_weight="balanced")["balanced_accuracy"])
    return {k: float(np.mean(v)) for k, v in variants.items()}


# --- 2b. label-noise remediation ----------------------------------------------------------------

def noise_remediation_benchmark(rate: float, seeds: list[int]) -> dict[str, float]:
    out: dict[str, list[float]] = {"noisy": [], "label_noise drop": [], "label_noise downweight": []}
    for seed in seeds:
        splits = splits_for("breast_cancer", seed)
        noisy, _ = inject_symmetric_noise(splits.train.labels, 2, rate, np.random.default_rng(seed))
        t = splits.train
        splits = splits.with_train(Table(t.features, noisy, t.row_ids))
        report = registry.get(StageKind.VALIDATOR, "tabular").create({"plot_columns": 0}).validate(splits, context(splits, seed))
        findings = {"validate": report.findings}
        out["noisy"].append(train_and_score(splits, seed)["accuracy"])
        out["label_noise drop"].append(train_and_score(augmented(splits, seed, [("label_noise", {})], findings), seed)["accuracy"])
        out["label_noise downweight"].append(train_and_score(
            augmented(splits, seed, [("label_noise", {"action": "downweight"})], findings), seed)["accuracy"])
    return {k: float(np.mean(v)) for k, v in out.items()}


# --- 3. small data ------------------------------------------------------------------------------

def small_data_benchmark(dataset: str, chains: dict[str, list[tuple[str, dict[str, Any]]]], seeds: list[int],
                         fraction: float = 0.1, **trainer: Any) -> dict[str, float]:
    scores: dict[str, list[float]] = {name: [] for name in ["none", *chains]}
    for seed in seeds:
        splits = splits_for(dataset, seed)
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(splits.train)), train_size=fraction, random_state=seed, stratify=splits.train.labels)
        small = splits.with_train(splits.train.take(np.sort(keep)))
        scores["none"].append(train_and_score(small, seed, **trainer)["accuracy"])
        for name, chain in chains.items():
            scores[name].append(train_and_score(augmented(small, seed, chain), seed, **trainer)["accuracy"])
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per figure")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else [0, 1, 2]
    started = time.perf_counter()

    print("== 1. Label-noise detection (confident learning, out-of-fold, 5 folds) ==")
    print(f"{'dataset':<14}{'noise':>6}  {'model':<9}{'precision':>10}{'recall':>8}{'seconds':>9}")
    runs = [("breast_cancer", m) for m in ("logistic", "forest", "mlp")] + [("wine", "logistic"), ("digits", "logistic")]
    for dataset, model in runs:
        for rate in (0.1, 0.2):
            r = label_noise_detection(dataset, rate, model, seeds)
            print(f"{dataset:<14}{rate:>6.0%}  {model:<9}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['seconds']:>9.2f}")
    sys.stdout.flush()

    print("\n== 2. Imbalance 1:20 in train and validation (minority = class 1), test balanced accuracy ==")
    for dataset, imb_seeds in [("breast_cancer", seeds if args.quick else list(range(10))),  # 10 minority rows: more seeds
                               ("make_classification", seeds)]:
        imb = imbalance_benchmark(dataset, imb_seeds)
        for name, value in imb.items():
            delta = f"{(value - imb['naive']) * 100:+.1f} pts" if name != "naive" else "baseline"
            print(f"{dataset:<22}{name:<34}{value:>8.3f}   {delta}")

    print("\n== 2b. Label noise 20% (breast_cancer): test accuracy with vs without noise handling ==")
    nr = noise_remediation_benchmark(0.2, seeds)
    for name, value in nr.items():
        delta = f"{(value - nr['noisy']) * 100:+.1f} pts" if name != "noisy" else "baseline"
        print(f"{name:<34}{value:>8.3f}   {delta}")
    sys.stdout.flush()

    print("\n== 3. Training on 10% of the training split: test accuracy ==")
    tabular = {"gaussian_noise x4": [("gaussian_noise", {"copies": 4, "scale": 0.1})],
               "mixup x4": [("mixup", {"copies": 4})],
               "gaussian_copula x2": [("gaussian_copula", {"ratio": 2.0})]}
    images = {"image_augment x4 (default)": [("image_augment", {"copies": 4})],
              "image_augment x4 rotation only": [("image_augment", {"copies": 4, "max_shift": 0, "noise_std": 0.0})]}
    for dataset, chains, trainer in [("breast_cancer", tabular, {}), ("digits", images, {}), ("digits", images, {"trainer": "cnn"})]:
        small = small_data_benchmark(dataset, chains, seeds, **trainer)
        label = f"{dataset} ({trainer.get('trainer', 'mlp')})"
        for name, value in small.items():
            ratio = f"x{value / small['none']:.3f} ({(value - small['none']) * 100:+.1f} pts)" if name != "none" else "baseline"
            print(f"{label:<22}{name:<32}{value:>8.3f}   {ratio}")
    print(f"\n(total {time.perf_counter() - started:.0f}s, seeds {seeds})")


if __name__ == "__main__":
    main()
