"""Explainer defaults on synthetic relevance tasks: relevance share, faithfulness to exact Shapley, deletion curves.

    .venv/bin/python benchmarks/explainer_relevance.py [--rows 30] [--explainers lime,anchors] [--tasks xor]
                                                      [--background 100] [--models DIR]

Three tasks, 10 standard-normal features, 2 of them relevant (x0, x1), 3,000 rows:
  linear      y = [x0 + x1 > 0]
  xor         y = [x0 * x1 > 0]                (an interaction: no single feature is informative)
  distractor  y = [x0 + x1 > 0], x2 = x0 + 0.4 noise (correlation 0.93: a feature the label does not use)
An MLP is trained by the real pipeline on each (trainer defaults but the width and epochs). Every
tabular explainer plugin, with its defaults, is fitted on the first 2,000 rows and explains held-out rows.

Per explainer and task:
  relevance  the share of a row's attribution on x0, x1: sum |a_relevant| / sum |a| (anchors: the share
             of the anchor's features that are relevant), averaged over rows. Target (issue 17): >= 0.90.
             Baseline: a uniform attribution's share, 2/10 = 0.20.
  spearman   rank correlation of the attributions with EXACT Shapley values of the predicted-class
             probability (all 1,024 coalitions; interventional value function over `--background` rows
             sampled from the training rows), averaged over rows. Anchors gives rules, not attributions: n/a.
  deletion   features set to the training mean one by one in decreasing attribution order (anchors: the
             anchor's features first); area under the predicted-class probability curve, 11 points, k/10
             on the x axis. Lower is more faithful. Baselines in the same run: a random order (5
             permutations per row) and the exact Shapley order; printed as explainer / random.
The exact-Shapley line is the ceiling: the share the model itself puts on x0, x1. On xor the
unregularized MLP bends its boundary with the noise features (~15 % of its exact Shapley mass);
`--l1 1e-3` trains a model that does not, to tell the explainers' misses from the model's.
`--models DIR` keeps the trained models there and reuses them on the next run (development only).

Measured 2026-12-03, shared 2-core VM under load, 60 s: linear and distractor PASS for every explainer
(0.92-0.96 relevance), xor MISS for every one against the model's exact-Shapley ceiling of 0.85 (IG 0.82,
lime 0.82, Kernel SHAP 0.81, anchors 0.51); with --l1 1e-3 the ceiling is 0.90 and lime passes (0.98).
Anchors on xor (15 rows, alibi directly): beam_size 1 / 2 / 4 / 10 -> 0.51 / 0.61 / 0.68 / 0.75 at
5-16 s a row under load; threshold 0.90 -> 0.49. The model's part, exact-Shapley ceiling on 30 rows held
out of a longer draw: 3,000 task rows 0.896 (accuracy 0.966), l1 1e-3 0.913, l1 3e-3 0.908; 10,000 rows
0.976 (accuracy 0.991), with l1 1e-3 0.984. The 30-row ceiling moves by ~0.05 with the rows explained.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FEATURES = [f"x{i}" for i in range(10)]
RELEVANT = {"x0", "x1"}
TARGET = 0.90


def make_task(task: str, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, len(FEATURES)))
    if task == "distractor":
        X[:, 2] = X[:, 0] + 0.4 * rng.standard_normal(rows)
    y = (X[:, 0] * X[:, 1] > 0) if task == "xor" else (X[:, 0] + X[:, 1] > 0)
    frame = pd.DataFrame(X.astype(np.float32), columns=FEATURES)
    frame["y"] = np.where(y, "pos", "neg")
    return frame


def train(task: str, frame: pd.DataFrame, work: Path, keep: Path | None, l1: float) -> Any:  # -> LoadedModel
    from mlplat.modeldir import LoadedModel, copy_model_dir
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    kept = keep / f"{task}-l1-{l1:g}" if keep is not None else None
    if kept is not None and (kept / "model.json").is_file():
        return LoadedModel.load(kept)
    source = work / f"{task}.csv"
    frame.to_csv(source, index=False)
    spec = resolve(parse_spec({
        "name": f"relevance-{task}", "seed": 0,
        "dataset": {"source": str(source), "label": "y", "validation": 0.2, "test": 0.2},
        "steps": {"train": {"plugin": "mlp", "params": {"hidden": [64, 64], "epochs": 60, "l1": l1}}},
    }))
    model_dir = run_pipeline(spec, REPO, RunStore(work / task)).model_dir
    if kept is not None:
        copy_model_dir(model_dir, kept)
    return LoadedModel.load(model_dir)


def exact_shapley(predict: Any, x: np.ndarray, background: np.ndarray, target: int) -> np.ndarray:
    """Shapley values of v(S) = mean_b f(x_S, b_rest)[target], every one of the 2^n coalitions enumerated."""
    n = len(x)
    masks = np.arange(2 ** n)
    bits = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)  # [2^n, n]: coalition S as feature flags
    mixed = np.where(bits[:, None, :], x[None, None, :], background[None, :, :]).reshape(-1, n)
    value = predict(mixed.astype(np.float32))[:, target].reshape(len(masks), len(background)).mean(axis=1)
    sizes = bits.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    phi = np.empty(n)
    for i in range(n):
        without = masks[~bits[:, i]]
        phi[i] = (weight[sizes[without]] * (value[without | (1 << i)] - value[without])).sum()
    return phi


def relevance_share(explanation: dict[str, Any], features: list[str]) -> float:
    if "attributions" in explanation:
        values = np.abs([explanation["attributions"][f] for f in features])
        return float(values[[f in RELEVANT for f in features]].sum() / values.sum()) if values.sum() > 0 else math.nan
    named = explanation.get("features") or []
    return sum(f in RELEVANT for f in named) / len(named) if named else math.nan


def deletion_auc(predict: Any, x: np.ndarray, order: np.ndarray, fill: np.ndarray, target: int) -> float:
    """Area under f(x with the first k features of `order` set to `fill`)[target], k = 0..n, x axis k/n."""
    steps = np.repeat(x[None, :], len(x) + 1, axis=0)
    for k in range(1, len(x) + 1):
        steps[k:, order[k - 1]] = fill[order[k - 1]]
    curve = predict(steps.astype(np.float32))[:, target]
    return float(np.trapz(curve, dx=1 / len(x)))


def deletion_order(explanation: dict[str, Any], features: list[str], rng: np.random.Generator) -> np.ndarray:
    """Most evidence for the predicted class first; an anchor's features, then the rest at random."""
    if "attributions" in explanation:
        return np.argsort([-explanation["attributions"][f] for f in features], kind="stable")
    first = [features.index(f) for f in explanation.get("features") or []]
    rest = [i for i in rng.permutation(len(features)) if i not in first]
    return np.array(first + rest)


def evaluate(explanations: list[dict[str, Any]], model: Any, X: np.ndarray, exact: np.ndarray,
             fill: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    features, predict = model.feature_names, model.predict_proba
    targets = predict(X).argmax(axis=1)
    rng = np.random.default_rng(0)
    shares, rhos, aucs = [], [], []
    for e, x, phi, t in zip(explanations, X, exact, targets, strict=True):
        shares.append(relevance_share(e, features))
        if "attributions" in e:
            rhos.append(spearmanr([e["attributions"][f] for f in features], phi).statistic)
        aucs.append(deletion_auc(predict, x, deletion_order(e, features, rng), fill, int(t)))
    return {"relevance": float(np.nanmean(shares)), "spearman": float(np.nanmean(rhos)) if rhos else math.nan,
            "deletion": float(np.mean(aucs))}


def reference_deletion(model: Any, X: np.ndarray, exact: np.ndarray, fill: np.ndarray) -> tuple[float, float]:
    """(random-order deletion AUC, exact-Shapley-order deletion AUC), averaged over the rows."""
    predict, rng = model.predict_proba, np.random.default_rng(1)
    targets = predict(X).argmax(axis=1)
    random_auc = np.mean([deletion_auc(predict, x, rng.permutation(len(x)), fill, int(t))
                          for x, t in zip(X, targets, strict=True) for _ in range(5)])
    exact_auc = np.mean([deletion_auc(predict, x, np.argsort(-phi, kind="stable"), fill, int(t))
                         for x, phi, t in zip(X, exact, targets, strict=True)])
    return float(random_auc), float(exact_auc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30, help="held-out rows explained per explainer and task")
    parser.add_argument("--anchor-rows", type=int, default=0, help="rows for anchors (seconds each; default rows/2)")
    parser.add_argument("--background", type=int, default=100, help="training rows of the exact Shapley value function")
    parser.add_argument("--explainers", default="", help="comma-separated plugin names (default: every tabular one)")
    parser.add_argument("--tasks", default="linear,xor,distractor")
    parser.add_argument("--l1", type=float, default=0.0, help="the trainer's L1 penalty (its default: 0)")
    parser.add_argument("--models", type=Path, default=None, help="keep / reuse trained models in this folder")
    args = parser.parse_args()
    from mlplat import registry
    from mlplat.contracts.context import StepContext

    found = registry.discover(registry.StageKind.EXPLAINER)
    names = args.explainers.split(",") if args.explainers else sorted(
        name for name, plugin in found.items() if not plugin.spec.handles_images)
    started_all = time.perf_counter()
    print(f"relevance baseline (uniform attribution): {len(RELEVANT) / len(FEATURES):.2f}; target >= {TARGET:.2f}")
    print(f"{'task':10s} {'explainer':21s} {'relevance':>9s}       {'spearman':>8s}  "
          f"{'deletion AUC (random, exact order)':>36s} {'time':>7s}")
    misses = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            frame = make_task(task, 3000, seed=1)
            model = train(task, frame, work, args.models, args.l1)
            X = frame[model.feature_names].to_numpy(np.float32)
            background, test = X[:2000], X[2000:2000 + args.rows]
            fill = background.mean(axis=0)
            sample = background[np.random.default_rng(0).choice(len(background), args.background, replace=False)]
            targets = model.predict_proba(test).argmax(axis=1)
            exact = np.stack([exact_shapley(model.predict_proba, x, sample, int(t)) for x, t in zip(test, targets, strict=True)])
            random_auc, exact_auc = reference_deletion(model, test, exact, fill)
            # the ceiling: the share the model itself puts on x0, x1, which no faithful explainer exceeds much
            ceiling = np.mean([relevance_share({"attributions": dict(zip(FEATURES, phi, strict=True))}, FEATURES)
                               for phi in exact])
            print(f"{task:10s} {'exact Shapley':21s} {ceiling:9.3f}       {1.0:8.3f}  "
                  f"{exact_auc:6.3f} (random {random_auc:.3f}, exact {exact_auc:.3f})")
            for name in names:
                started = time.perf_counter()
                plugin = registry.spec_of("explainer", name).create({})
                context = StepContext(step="explain", work_dir=work / task / name, info=None, seed=0)  # type: ignore[arg-type]
                state = plugin.fit(model, background, context)
                n = (args.anchor_rows or max(5, args.rows // 2)) if name == "anchors" else args.rows
                scores = evaluate(plugin.load(model, state).explain(test[:n]), model, test[:n], exact[:n], fill)
                verdict = "PASS" if scores["relevance"] >= TARGET else "MISS"
                misses += verdict == "MISS"
                print(f"{task:10s} {name:21s} {scores['relevance']:9.3f} {verdict}  {scores['spearman']:8.3f}  "
                      f"{scores['deletion']:6.3f} (random {random_auc:.3f}, exact {exact_auc:.3f}) "
                      f"{scores['deletion'] / random_auc:4.2f}x  {time.perf_counter() - started:5.1f} s", flush=True)
    print(f"{misses} MISS; total {time.perf_counter() - started_all:.0f} s")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
