"""Data quality and quantity benchmark, through the real plugins (registry), on scikit-learn data.

1. Label-noise detection: precision / recall of the `tabular` validator's confident-learning
   suspects at 10 % and 20 % injected symmetric noise.
2. Imbalance at 1:20: balanced accuracy of the MLP trained naively vs with remediation
   (random oversampling, plain and smoothed; SMOTE; noise drop + SMOTE; and two trainer options:
   class-weighted loss and the logit-adjusted loss, `logit_adjustment`).
3. Small data: test accuracy training on 10 % of the training split, with vs without augmentation,
   and warm-started (`init_from`, through the real train step) from a model trained on the other 90 %.

Baselines are measured in the same run; figures are means over seeds. Each target of issue 3 is
printed with PASS / MISS: label noise >= 80 % recall at >= 80 % precision at 20 % noise on
breast_cancer (the validator's default model, logistic); imbalance >= +10 points of balanced accuracy
over naive training at 1:20 (the best remediation, per dataset).

Why the imbalance target is missed on breast_cancer (measured, 10 seeds): at 1:20 the training split
keeps 10 malignant rows and validation 3. Naive training reaches 0.85 balanced accuracy; the same MLP
on the full balanced data 0.97 (logistic regression), so +10 points means recovering almost all of
what 200 minority rows give from 10. Remediation gains +4 to +5 points (SMOTE, duplicates, class
weights) and +7 with a smoothed bootstrap (random_oversample shrinkage 1.0), whose jitter widens
the tiny minority region SMOTE can only interpolate inside. It is not the naive baseline's early
stopping on the (equally imbalanced) val_loss: with early stopping off every variant moves by < 1
point on breast_cancer; on make_classification, restoring the best-val_loss epoch costs the naive
model ~3 points against its last epoch, which flatters the gain rather than hiding it. Noise drop
before SMOTE hurts (+3 instead of +4): with no injected noise the suspects are mostly the
minority's own rows. The logit-adjusted loss (tau 1) gains +4.4 here: it moves the decision
boundary, and no boundary is good enough: choosing the threshold on the test set itself (an oracle,
not a method) tops out at 0.917 for the naive model, 0.941 for the smoothed bootstrap and 0.948 for
an ensemble of 5 smoothed-bootstrap models (target 0.952); test AUC is 0.95 / 0.97. Also measured,
all below the smoothed bootstrap: borderline-SMOTE 1/2, ADASYN, SVM-SMOTE (+3.7 to +4.4), post-hoc
logit adjustment of the naive model (+4.0 at tau 0.5 or 1), class weights plus post-hoc adjustment;
a wider bootstrap (shrinkage 1.5-2) gains +7.2 here but loses 5 points on make_classification.
Logistic regression with balanced class weights on the same rows reaches 0.929.
On make_classification (60 minority rows) the logit-adjusted loss (tau 1, the paper's value) meets
the target: +11.2 over the benchmark's 5 seeds, +12.2 over seeds 5-9, about 2 points above the smoothed
bootstrap (+9.1, +10.0) and class weights (+7.3, +7.9) on the same seeds. Its early stopping watches
the adjusted logits' validation loss (the imbalanced split's own distribution); watching the raw,
balanced logits' instead gains only +9.0 / +10.8. Post-hoc adjustment of the naive model gains +10.0.
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
from mlplat.steps import inherited_preprocessing, prepare_training

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="mlplat-dq-bench-"))
TRAINING = {"epochs": 60, "early_stopping_patience": 10, "checkpoint_every": 0, "lr": 3e-3, "device": "cpu"}
TARGET_RECALL = TARGET_PRECISION = 0.8  # at 20 % noise on breast_cancer
TARGET_IMBALANCE_PTS = 10.0


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


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
        validator = registry.spec_of(StageKind.VALIDATOR, "tabular").create(
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
    plugin = registry.spec_of(StageKind.TRAINER, trainer).create({**TRAINING, **params})
    ctx = context(splits, seed)
    training, standardizer = prepare_training(splits, inherited_preprocessing(plugin, ctx))  # a warm start keeps its source's
    fitted = plugin.fit(training, ctx)
    X = torch.as_tensor(standardizer.transform(splits.test.features.to_numpy()), dtype=torch.float32)
    network = fitted.network.cpu().eval()
    with torch.no_grad():
        predicted = network(X).argmax(1).numpy()
    y = splits.test.labels
    return {"accuracy": accuracy_score(y, predicted), "balanced_accuracy": balanced_accuracy_score(y, predicted)}


def augmented(splits: Splits, seed: int, chain: list[tuple[str, dict[str, Any]]], findings: dict[str, Any] | None = None) -> Splits:
    train = splits.train
    for name, params in chain:
        train = registry.spec_of(StageKind.AUGMENTER, name).create(params).augment(train, context(splits, seed, findings))
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


IMBALANCE_CHAINS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "random_oversample": [("random_oversample", {})],
    "random_oversample shrinkage=1.0": [("random_oversample", {"shrinkage": 1.0})],  # smoothed bootstrap
    "smote": [("smote", {})],
    "label_noise drop + smote": [("label_noise", {}), ("smote", {})],
}

IMBALANCE_TRAINING: dict[str, dict[str, Any]] = {  # trainer options on the imbalanced splits as they are
    "class_weight=balanced (trainer)": {"class_weight": "balanced"},
    "logit_adjustment=1.0 (trainer)": {"logit_adjustment": 1.0},  # Menon et al. 2021's tau
}


def imbalance_benchmark(dataset: str, seeds: list[int]) -> dict[str, float]:
    variants: dict[str, list[float]] = {"naive": [], **{name: [] for name in IMBALANCE_CHAINS}, **{name: [] for name in IMBALANCE_TRAINING}}
    for seed in seeds:
        base = generated_splits(seed) if dataset == "make_classification" else splits_for(dataset, seed)
        splits = make_imbalanced(base, ratio=20, minority=1, seed=seed)
        report = registry.spec_of(StageKind.VALIDATOR, "tabular").create({"plot_columns": 0}).validate(splits, context(splits, seed))
        variants["naive"].append(train_and_score(splits, seed)["balanced_accuracy"])
        for name, chain in IMBALANCE_CHAINS.items():
            remedied = augmented(splits, seed, chain, {"validate": report.findings})
            variants[name].append(train_and_score(remedied, seed)["balanced_accuracy"])
        for name, params in IMBALANCE_TRAINING.items():
            variants[name].append(train_and_score(splits, seed, **params)["balanced_accuracy"])
    return {k: float(np.mean(v)) for k, v in variants.items()}


# --- 2b. label-noise remediation ----------------------------------------------------------------

def noise_remediation_benchmark(rate: float, seeds: list[int]) -> dict[str, float]:
    out: dict[str, list[float]] = {"noisy": [], "label_noise drop": [], "label_noise downweight": []}
    for seed in seeds:
        splits = splits_for("breast_cancer", seed)
        noisy, _ = inject_symmetric_noise(splits.train.labels, 2, rate, np.random.default_rng(seed))
        t = splits.train
        splits = splits.with_train(Table(t.features, noisy, t.row_ids))
        report = registry.spec_of(StageKind.VALIDATOR, "tabular").create({"plot_columns": 0}).validate(splits, context(splits, seed))
        findings = {"validate": report.findings}
        out["noisy"].append(train_and_score(splits, seed)["accuracy"])
        out["label_noise drop"].append(train_and_score(augmented(splits, seed, [("label_noise", {})], findings), seed)["accuracy"])
        out["label_noise downweight"].append(train_and_score(
            augmented(splits, seed, [("label_noise", {"action": "downweight"})], findings), seed)["accuracy"])
    return {k: float(np.mean(v)) for k, v in out.items()}


# --- 3. small data ------------------------------------------------------------------------------

WARM_STARTS = {"warm start from the other 90% (init_from)": {}, "warm start, body frozen": {"freeze": ["body"]}}


def source_model(splits: Splits, seed: int, trainer: str) -> Path:
    """A model trained through the real train step on `splits` (published-model layout), for `init_from`."""
    from mlplat import steps
    from mlplat.spec import parse_spec, resolve

    work = Path(tempfile.mkdtemp(prefix="source-", dir=SCRATCH))
    splits.save(work / "data")
    spec = resolve(parse_spec({"name": "source", "seed": seed, "dataset": {"source": f"sklearn:{splits.info.name}"},
                               "steps": {"train": {"plugin": trainer, "params": TRAINING}}}))
    return steps.train(spec, work / "data", work / "train")


def small_data_benchmark(dataset: str, chains: dict[str, list[tuple[str, dict[str, Any]]]], seeds: list[int],
                         fraction: float = 0.1, **trainer: Any) -> dict[str, float]:
    scores: dict[str, list[float]] = {name: [] for name in ["none", *chains, *WARM_STARTS]}
    for seed in seeds:
        splits = splits_for(dataset, seed)
        from sklearn.model_selection import train_test_split

        keep, rest = train_test_split(np.arange(len(splits.train)), train_size=fraction, random_state=seed, stratify=splits.train.labels)
        small = splits.with_train(splits.train.take(np.sort(keep)))
        scores["none"].append(train_and_score(small, seed, **trainer)["accuracy"])
        for name, chain in chains.items():
            scores[name].append(train_and_score(augmented(small, seed, chain), seed, **trainer)["accuracy"])
        # the larger, disjoint portion a previous run trained on; the 10 % run fine-tunes from it
        source = source_model(splits.with_train(splits.train.take(np.sort(rest))), seed, trainer.get("trainer", "mlp"))
        for name, warm in WARM_STARTS.items():
            scores[name].append(train_and_score(small, seed, **trainer, init_from=str(source), **warm)["accuracy"])
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
    target = None
    for dataset, model in runs:
        for rate in (0.1, 0.2):
            r = label_noise_detection(dataset, rate, model, seeds)
            print(f"{dataset:<14}{rate:>6.0%}  {model:<9}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['seconds']:>9.2f}")
            if (dataset, rate, model) == ("breast_cancer", 0.2, "logistic"):
                target = r
    assert target is not None
    met = target["recall"] >= TARGET_RECALL and target["precision"] >= TARGET_PRECISION
    print(f"target: recall >= {TARGET_RECALL:.0%} at precision >= {TARGET_PRECISION:.0%}, 20% noise, breast_cancer, logistic "
          f"(default): {verdict(met)} (precision {target['precision']:.3f}, recall {target['recall']:.3f})")
    sys.stdout.flush()

    print("\n== 2. Imbalance 1:20 in train and validation (minority = class 1), test balanced accuracy ==")
    for dataset, imb_seeds in [("breast_cancer", seeds if args.quick else list(range(10))),  # 10 minority rows: more seeds
                               ("make_classification", seeds if args.quick else list(range(5)))]:
        imb = imbalance_benchmark(dataset, imb_seeds)
        for name, value in imb.items():
            delta = f"{(value - imb['naive']) * 100:+.1f} pts" if name != "naive" else "baseline"
            print(f"{dataset:<22}{name:<34}{value:>8.3f}   {delta}")
        best = max((name for name in imb if name != "naive"), key=imb.__getitem__)
        gain = (imb[best] - imb["naive"]) * 100
        print(f"{dataset:<22}target: >= +{TARGET_IMBALANCE_PTS:.0f} pts over naive: {verdict(gain >= TARGET_IMBALANCE_PTS)} "
              f"(best: {best}, {gain:+.1f} pts; see the module docstring)")

    print("\n== 2b. Label noise 20% (breast_cancer): test accuracy with vs without noise handling ==")
    nr = noise_remediation_benchmark(0.2, seeds)
    for name, value in nr.items():
        delta = f"{(value - nr['noisy']) * 100:+.1f} pts" if name != "noisy" else "baseline"
        print(f"{name:<34}{value:>8.3f}   {delta}")
    sys.stdout.flush()

    print("\n== 3. Training on 10% of the training split (augmented, or warm-started from the other 90%): test accuracy ==")
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
            print(f"{label:<22}{name:<44}{value:>8.3f}   {ratio}")
    print(f"\n(total {time.perf_counter() - started:.0f}s, seeds {seeds})")


if __name__ == "__main__":
    main()
