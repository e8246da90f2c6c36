"""Class imbalance (issue 17.4): balanced accuracy of the recommended remedy against naive training.

    .venv/bin/python benchmarks/effectiveness/imbalance.py [--seeds 3] [--datasets wine_binary,digits_8]

Four binary problems, the minority always class 1: breast cancer (malignant), a 4,000-row and a 400-row
make_classification set, and digits 8 against the rest; two more never tuned on (HELD_OUT): digits 3 against
the rest, and wine (cultivar 0 against the rest). Each is split 60/20/20 (stratified, seeded); the training
and validation splits are cut to majority:minority = 1:10 and 1:20 by dropping minority rows (wine keeps 7 and 3
minority training rows); the test split keeps its real mix (10 to 37 % minority), scored with balanced accuracy.
3 seeds per setting.

Variants, all through the `mlp` trainer plugin from the registry with the same params:
- naive: the imbalanced splits as they are, argmax;
- smote: the `smote` augmenter first (imbalanced-learn, k capped by the minority size);
- recommended: `imbalance: logit_adjust`, what the tabular validator recommends (logit-adjusted loss, tau 1;
  the decision offsets chosen on out-of-fold predictions, `model.json` `decision`; the fold networks' logits
  averaged with the final network's, `ensemble: out_of_fold`); the predicted class is `mlplat.decision.decide`,
  as evaluation and serving apply it;
- a `--extra` variant set for context: logit adjustment alone, and recommended after a smoothed bootstrap.
Target (issue 17.4, stated at 1:20): mean gain of the recommended remedy >= +10 points of balanced accuracy over
naive at 1:20, PASS/MISS per dataset; 1:10 is printed with its gain for information. The exit status counts
the four tuned datasets only.

Measured (seeds 0-2, loaded machine; naive / smote / recommended, gain): at 1:20 breast_cancer (10 minority rows)
0.850 / 0.918 / 0.932 +8.2 MISS; make_classification (60) 0.713 / 0.798 / 0.839 +12.6 PASS;
make_classification_400 (6) 0.504 / 0.721 / 0.775 +27.1 PASS; digits_8 (48) 0.865 / 0.906 / 0.966 +10.1 PASS;
held out: digits_3 (48) 0.923 / 0.941 / 0.967 +4.4 MISS, wine_binary (3) 0.972 / 1.000 / 0.972 +0.0 MISS.
At 1:10 (reported): +2.4, +5.9, +4.6, +3.0; held out +2.2, -1.4. Breast cancer misses because its ranking, not
its threshold, limits it: +10 needs 0.950 against 0.959 for naive training on the uncut splits, and the best
threshold chosen on the test split itself reaches 0.946 with the averaged networks (0.940 with one). The held-out
misses are ceilings: naive training on the uncut splits scores 0.950 (digits 3) and 0.993 (wine), so at most
+2.7 and +2.1 points were lost to the cut; the remedy recovers more than all of it on digits 3. 273 s wall.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRATCH = Path(tempfile.mkdtemp(prefix="mlplat-imbalance-bench-"))
TRAINING = {"epochs": 60, "early_stopping_patience": 10, "checkpoint_every": 0, "lr": 3e-3, "device": "cpu"}
RATIOS = (10, 20)
JUDGED_RATIO = 20  # the issue states its target at 1:20; 1:10 is reported for information
DATASETS = ("breast_cancer", "make_classification", "make_classification_400", "digits_8")
HELD_OUT = ("digits_3", "wine_binary")  # never tuned on: judged and printed, not counted in the exit status
TARGET_POINTS = 10.0

# variant -> (augmenter chain, trainer params)
VARIANTS: dict[str, tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]] = {
    "naive": ([], {}),
    "smote": ([("smote", {})], {}),
    "recommended": ([], {"imbalance": "logit_adjust"}),
}
EXTRA_VARIANTS: dict[str, tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]] = {
    "logit_adjust only": ([], {"logit_adjustment": 1.0}),
    "bootstrap + recommended": ([("random_oversample", {"shrinkage": 1.0})], {"imbalance": "logit_adjust"}),
}


def binary_frames(seed: int) -> dict[str, Any]:
    """name -> (frame with a binary `target`, 1 = the minority-to-be)."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification

    def frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(target=y.astype(int))

    cancer, wine, digits = load_breast_cancer(), load_wine(), load_digits()
    X, y = make_classification(n_samples=4000, n_features=20, n_informative=6, n_redundant=4, class_sep=1.0,
                               flip_y=0.0, random_state=seed)
    X_small, y_small = make_classification(n_samples=400, n_features=10, n_informative=4, n_redundant=2, class_sep=1.0,
                                           flip_y=0.0, random_state=seed + 100)
    return {"breast_cancer": frame(cancer.data, cancer.target == 0), "make_classification": frame(X, y),
            "make_classification_400": frame(X_small, y_small), "digits_8": frame(digits.data, digits.target == 8),
            "wine_binary": frame(wine.data, wine.target == 0), "digits_3": frame(digits.data, digits.target == 3)}


def imbalanced_splits(frame: Any, name: str, ratio: int | None, seed: int) -> Any:
    """60/20/20 stratified split; train and validation cut to majority:minority = ratio:1 (class 1 the minority;
    None: not cut, the ceiling's splits)."""
    from mlplat.data import Splits, Table, split_frame

    splits = split_frame(frame, "target", name, 0.2, 0.2, seed)
    if ratio is None:
        return splits
    rng = np.random.default_rng(seed)

    def cut(table: Table) -> Table:
        majority, minority = np.flatnonzero(table.labels == 0), np.flatnonzero(table.labels == 1)
        keep = rng.choice(minority, size=min(len(minority), max(2, len(majority) // ratio)), replace=False)
        return table.take(np.sort(np.concatenate([majority, keep])))

    return Splits(splits.info, cut(splits.train), cut(splits.validation), splits.test)


def balanced_accuracy(splits: Any, seed: int, chain: list[tuple[str, dict[str, Any]]], params: dict[str, Any]) -> float:
    """Augment (chain), train the `mlp` plugin, predict the test split by the trained decision rule."""
    import torch
    from mlplat import registry
    from mlplat.contracts import StepContext
    from mlplat.decision import decide
    from mlplat.registry import StageKind
    from mlplat.steps import prepare_training
    from sklearn.metrics import balanced_accuracy_score

    context = StepContext("bench", SCRATCH, splits.info, seed=seed)
    train = splits.train
    for plugin, config in chain:
        train = registry.spec_of(StageKind.AUGMENTER, plugin).create(config).augment(train, context)
    splits = splits.with_train(train)
    torch.manual_seed(seed)
    trainer = registry.spec_of(StageKind.TRAINER, "mlp").create({**TRAINING, **params})
    training, standardizer = prepare_training(splits, None)
    fitted = trainer.fit(training, context)
    X = torch.as_tensor(standardizer.transform(splits.test.features.to_numpy()), dtype=torch.float32)
    with torch.no_grad():
        probabilities = torch.softmax(fitted.network.cpu().eval()(X), dim=1).numpy()
    return float(balanced_accuracy_score(splits.test.labels, decide(probabilities, fitted.decision)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(DATASETS + HELD_OUT), help=f"comma-separated, of {', '.join(binary_frames(0))}")
    parser.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    parser.add_argument("--extra", action="store_true", help="also the context variants (EXTRA_VARIANTS)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    variants = {**VARIANTS, **(EXTRA_VARIANTS if args.extra else {})}
    started, misses = time.perf_counter(), 0
    print(f"{'dataset':24s} {'ratio':>5s} {'minority':>8s} {'uncut':>7s} " + " ".join(f"{v:>24s}" for v in variants)
          + "   gain (recommended - naive)")
    for name in args.datasets.split(","):
        # for context: naive training on the uncut splits (the dataset's own class mix)
        uncut = float(np.mean([balanced_accuracy(imbalanced_splits(binary_frames(seed)[name], name, None, seed), seed, [], {})
                                 for seed in range(args.seeds)]))
        for ratio in map(int, args.ratios.split(",")):
            scores: dict[str, list[float]] = {v: [] for v in variants}
            minority = []
            for seed in range(args.seeds):
                splits = imbalanced_splits(binary_frames(seed)[name], name, ratio, seed)
                minority.append(int((splits.train.labels == 1).sum()))
                for variant, (chain, params) in variants.items():
                    scores[variant].append(balanced_accuracy(splits, seed, chain, params))
            means = {v: float(np.mean(s)) for v, s in scores.items()}
            gain = 100 * (means["recommended"] - means["naive"])
            judged = ratio == JUDGED_RATIO
            misses += judged and gain < TARGET_POINTS and name not in HELD_OUT
            verdict = f"target >= +{TARGET_POINTS:.0f}: {'PASS' if gain >= TARGET_POINTS else 'MISS'}" if judged else "(reported)"
            verdict += " (held out)" if name in HELD_OUT else ""
            cells = " ".join(f"{means[v]:>9.3f} ({100 * (means[v] - means['naive']):+6.1f} pts)" for v in variants)
            print(f"{name:24s} {'1:' + str(ratio):>5s} {min(minority):>8d} {uncut:>7.3f} {cells}   {gain:+.1f} pts {verdict}",
                  flush=True)
    print(f"wall {time.perf_counter() - started:.0f} s")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
