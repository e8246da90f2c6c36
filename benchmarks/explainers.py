"""Explainer benchmark: explain latency per instance, and faithfulness against exact Shapley values.

    .venv/bin/python benchmarks/explainers.py [--rows 30]

1. Latency: one breast-cancer MLP (30 features) trained by the real pipeline. Each explainer
   plugin is fitted by its own `fit` (k-means background) and explains test rows one at a time,
   as `:explain` does; we report p50 per instance. The baseline, measured in the same run, is
   alibi KernelShap on 100 raw background rows with its default nsamples.
   Target: the default (kernel_shap) at most 50 ms per instance on 2 cores.
2. Faithfulness: a second MLP on 8 features, small enough to enumerate all 2^8 coalitions.
   Exact Shapley values of the predicted-class probability with the same weighted k-means
   background the plugins store; Spearman rank correlation of kernel_shap and
   integrated_gradients attributions with them, averaged over test rows.

Measured 2026-12-01 on the idle 2-core dev VM, 21 s: baseline (alibi KernelShap, 100 raw rows)
514-524 ms; kernel_shap (default) 12.4-12.6 ms (41x faster; target <= 50 ms: met), shap_kernel
7.9-12.5 ms, lime 11.7-11.8 ms, integrated_gradients 1.6-1.7 ms (fastest, ~315x), anchors
630-643 ms; Spearman rho with exact Shapley over 30 rows: kernel_shap mean 0.972 (median 0.976,
min 0.786), integrated_gradients mean 0.862 (median 0.905, min 0.310). (2026-11-22, the same VM
under load average ~8: kernel_shap 287 ms against a 4236 ms baseline, 389 s in all.)
2026-12-03, shared 2-core VM under heavy load, 487 s: baseline 3121 ms; kernel_shap 150 ms (20.8x),
shap_kernel 92.5 ms (33.7x), lime 214 ms (14.6x), integrated_gradients 236 ms (13.2x: centroid paths,
8 centroids x 32 steps; was ~315x with the mean baseline), anchors 29 s; Spearman with exact Shapley:
kernel_shap 0.972, integrated_gradients 0.971 (median 0.976, min 0.929; was 0.862 with the mean baseline).
On the 10-feature xor model the same IG takes 3.4-5.9 ms a row (n_steps 16: 3.0-3.6 ms, relevance 0.814
against 0.817).
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlplat import registry
from mlplat.contracts.context import StepContext
from mlplat.modeldir import LoadedModel

REPO = Path(__file__).resolve().parents[1]
SMALL_FEATURES = ["mean radius", "mean texture", "mean smoothness", "mean concavity", "mean symmetry",
                  "worst radius", "worst concave points", "worst texture"]


def train(name: str, store_dir: Path, features: list[str] | None = None) -> LoadedModel:
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    source = "sklearn:breast_cancer"
    if features:  # a file source, so that dataset.features applies
        from sklearn.datasets import load_breast_cancer

        source = str(store_dir / f"{name}.csv")
        load_breast_cancer(as_frame=True).frame[[*features, "target"]].to_csv(source, index=False)
    spec = resolve(parse_spec({
        "name": name, "seed": 3,
        "dataset": {"source": source, "label": "target", "validation": 0.2, "test": 0.2, "features": features},
        "steps": {"train": {"plugin": "mlp", "params": {"hidden": [64, 64], "epochs": 30}}},
    }))
    return LoadedModel.load(run_pipeline(spec, REPO, RunStore(store_dir / name)).model_dir)


def split_rows(model: LoadedModel, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of breast_cancer restricted to the model's features."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    X = frame[model.feature_names].to_numpy(dtype=np.float32)
    train_rows, test_rows = train_test_split(X, test_size=0.2, random_state=seed, stratify=frame["target"])
    return train_rows, test_rows


def context(work_dir: Path) -> StepContext:
    return StepContext(step="explain", work_dir=work_dir, info=None, seed=0)  # type: ignore[arg-type]


def p50_ms(explain: Any, rows: np.ndarray) -> float:
    explain(rows[:1])  # warm-up: lazy imports, first-call allocations
    times = []
    for row in rows:
        start = time.perf_counter()
        explain(row[None, :])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def baseline_kernel_shap(model: LoadedModel, train_rows: np.ndarray) -> Any:
    """What one writes without the plugin: alibi KernelShap on 100 raw training rows, default nsamples."""
    from alibi.explainers import KernelShap

    explainer = KernelShap(model.predict_proba, feature_names=model.feature_names, seed=0)
    background = train_rows[np.random.default_rng(0).choice(len(train_rows), 100, replace=False)]
    explainer.fit(background)
    return lambda X: explainer.explain(X, silent=True)


def fitted(name: str, model: LoadedModel, train_rows: np.ndarray, work_dir: Path) -> tuple[Any, Any]:
    plugin = registry.spec_of("explainer", name).create({})
    state = plugin.fit(model, train_rows, context(work_dir))
    return plugin.load(model, state), state


def exact_shapley(model: LoadedModel, x: np.ndarray, background: np.ndarray, weights: np.ndarray,
                  target: int) -> np.ndarray:
    """Shapley values of v(S) = E_background[f(x_S, b_rest)] by enumerating every coalition."""
    n = len(x)
    assert n <= 12, "exact enumeration is for small models"
    coalitions = list(itertools.product([0, 1], repeat=n))
    masks = np.array(coalitions, dtype=bool)  # [2^n, n]
    # every coalition against every background row, in one batch
    mixed = np.where(masks[:, None, :], x[None, None, :], background[None, :, :]).reshape(-1, n)
    f = model.predict_proba(mixed.astype(np.float32))[:, target].reshape(len(masks), len(background))
    value = {c: float(v) for c, v in zip(coalitions, f @ weights, strict=True)}
    phi = np.zeros(n)
    for i in range(n):
        for c in coalitions:
            if c[i]:
                continue
            size = sum(c)
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            with_i = c[:i] + (1,) + c[i + 1:]
            phi[i] += weight * (value[with_i] - value[c])
    return phi


def attributions_of(explanations: list[dict[str, Any]], features: list[str]) -> np.ndarray:
    return np.array([[e["attributions"][f] for f in features] for e in explanations])


def latency(model: LoadedModel, train_rows: np.ndarray, test_rows: np.ndarray, rows: int, work_dir: Path) -> None:
    print(f"== explain latency, breast_cancer MLP ({len(model.feature_names)} features), p50 per instance ==")
    baseline = p50_ms(baseline_kernel_shap(model, train_rows), test_rows[:max(5, rows // 3)])
    print(f"baseline  alibi KernelShap, 100 raw background rows, nsamples=auto: {baseline:8.1f} ms")
    results: dict[str, float] = {}
    found = registry.discover(registry.StageKind.EXPLAINER)
    for name in sorted(n for n, plugin in found.items() if not plugin.spec.handles_images):  # tabular explainers
        bound, _ = fitted(name, model, train_rows, work_dir / name)
        n = max(3, rows // 6) if name == "anchors" else rows  # anchors searches rules: seconds per row
        results[name] = p50_ms(bound.explain, test_rows[:n])
        print(f"{name:22s}: {results[name]:8.1f} ms   ({baseline / results[name]:6.1f}x faster than baseline)")
    fastest = min(results, key=results.get)  # type: ignore[arg-type]
    default = results["kernel_shap"]
    print(f"default kernel_shap: {default:.1f} ms per instance (target <= 50 ms): "
          f"{'PASS' if default <= 50 else 'MISS'}; {baseline / default:.1f}x faster than the baseline")
    # the 50 ms target assumes 2 idle cores, where the baseline takes ~350 ms; on a shared machine
    # both slow down alike, so the ratio is the figure that carries over
    print(f"default scaled to a 350 ms baseline (idle 2 cores): {350 * default / baseline:.1f} ms")
    print(f"fastest: {fastest} at {results[fastest]:.2f} ms ({baseline / results[fastest]:.0f}x faster than the baseline)")


def faithfulness(model: LoadedModel, train_rows: np.ndarray, test_rows: np.ndarray, rows: int, work_dir: Path) -> None:
    from scipy.stats import spearmanr

    print(f"\n== faithfulness vs exact Shapley values, {len(model.feature_names)}-feature MLP, {rows} test rows ==")
    shap_bound, state = fitted("kernel_shap", model, train_rows, work_dir / "f_kernel_shap")
    ig_bound, _ = fitted("integrated_gradients", model, train_rows, work_dir / "f_ig")
    background, weights = state.arrays["background"], state.arrays["weights"].astype(np.float64)
    X = test_rows[:rows]
    targets = model.predict_proba(X).argmax(axis=1)
    exact = np.stack([exact_shapley(model, x, background, weights, int(t)) for x, t in zip(X, targets, strict=True)])
    for name, bound in (("kernel_shap", shap_bound), ("integrated_gradients", ig_bound)):
        values = attributions_of(bound.explain(X), model.feature_names)
        rhos = [spearmanr(v, e).statistic for v, e in zip(values, exact, strict=True)]
        print(f"{name:22s}: Spearman rho with exact Shapley  mean {np.nanmean(rhos):.3f}  "
              f"median {np.nanmedian(rhos):.3f}  min {np.nanmin(rhos):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30, help="test rows explained per explainer")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big = train("bench-explain-30", work)
        train_rows, test_rows = split_rows(big)
        latency(big, train_rows, test_rows, args.rows, work)
        small = train("bench-explain-8", work, SMALL_FEATURES)
        train_rows, test_rows = split_rows(small)
        faithfulness(small, train_rows, test_rows, args.rows, work)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
