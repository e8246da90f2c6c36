"""Grid vs random vs TPE+pruning at equal budgets, on a scikit-learn dataset (digits by default).

Every strategy gets the same number of trials (the grid's size) over the same search space,
runs the real `mlp` trainer through the tune step's objective (mlplat.steps.tune_objective) and
the real tuner plugins with their default settings (what a user gets), one trial at a time with
one thread. What is counted is trial-epochs: the epochs actually trained, so a pruned trial costs
only the epochs it ran. The space has three params that matter (lr, width, depth) and two that
matter little (dropout, weight decay), as real searches do: 180 grid points.

A trial trains with the pipeline seed, so the grid's scores do not depend on the sampler seed: the
grid runs once, and its trial-epochs to its best are the expectation over the orders it could visit
its points in ((n + 1) / (k + 1) trials for k of n points at the best). Random and TPE run once per
sampler seed. The target: TPE+pruning needs at most 1/3 of the grid's trial-epochs to its best
(mean over seeds; a seed that never reaches it counts what it spent) and reaches it in every seed,
else NOT met. The benchmark also retrains the grid's best config with 4 other training seeds: their
sd is the metric's resolution, and the same figures within it (for the grid too) are printed for
information; the verdict is the strict one.

    .venv/bin/python benchmarks/tuning.py               # digits, 4 seeds, 20 epochs (~5 minutes on an idle core)
    .venv/bin/python benchmarks/tuning.py --seeds 1 --epochs 6   # quick look
    .venv/bin/python benchmarks/tuning.py --pruner median   # TPE with another pruner (default: the tuner's, hyperband)

Measured (20 epochs, 4 seeds; the same figures on the shared machine and on the idle one, 5m11s): NOT met.
grid best 0.9778 (2 configs of 180 at 352/360 rows, 1 row above the next), expected 1207
trial-epochs to it; TPE+pruning reached it in 3/4 seeds (604-1849), 1.125x the grid's trial-epochs
to its best (0.377x its full budget of 3600), spending 2134 of 3600 per search; random 3/4, 1.177x.
Within the resolution (sd 0.0037, 1.3 rows: >= 0.9741, 7 grid points): 4/4 seeds, 0.773x the grid's
452 (0.097x its full budget).

Why not met (exploration 2026-12, 8 seeds per setting unless said): the objective is dominated by
training noise, not just by the 360-row validation split. The same config retrained with 5 other
seeds moves val accuracy by sd 0.004-0.005 (1.5-2 rows; the grid's best scored 0.967-0.978) and val
loss by sd 0.027 (0.10-0.18), as much as the gap between the grid's top ~15 configs. "Reaching the
grid's best" is reaching the luckiest of 60-180 noisy draws, and a tolerance at the resolution helps
the grid as much as TPE (its expected cost falls too), so the ratio stays above 1/3.
- validation 0.4 / test 0.1 (719 rows), val accuracy: 4/8 seeds reached, as with 360 rows.
- val loss as the objective (continuous, best 0.122 vs next 0.140): median pruning 3/8, Hyperband
  8/8 (ratio 0.52 vs the grid's expected 610, 0.26 of its full budget) in the former 60-point
  space; in the 180-point space 4/8 (reached ones at 184-248 of 1810, failures within 0.005 of
  the best, far below the loss's resolution). Kept val accuracy: the issue's "validation score".
- former 60-point space (lr x width 16-128 x depth), val accuracy: median 4/8, Hyperband 5/8;
  180-point space with Hyperband 7/8 (ratio 0.70 vs the grid's expected 1207, 0.24 of its budget).
- former settings (median, 5 startup trials, warmup 2) 4/8; earlier: median warmup 5, 3 or 10
  startup trials, independent TPE, successive halving: at most 2 of 4 seeds.
Kept: `bayesian` defaults to the Hyperband pruner (Optuna's benchmarks recommend it for TPE; here it
reached the grid's best more often with either metric: median prunes slow low-lr trials that end
best), and the 180-point space.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# lr, width and depth matter; dropout and weight decay matter little here, as in most real searches: the
# grid spends 4x its budget on them while a sampler keeps spreading over lr (Bergstra & Bengio 2012)
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True, "grid_points": 5},
    "width": {"type": "categorical", "choices": [32, 64, 128]},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "grid_points": 2},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "grid_points": 2},
}
RESOLUTION_SEEDS = 4  # retrainings of the grid's best config with other training seeds


def strategies(budget: int, pruner: str | None, warmup: int | None) -> dict[str, tuple[str, dict[str, Any]]]:
    tpe = {"n_trials": budget, **({"pruner": pruner} if pruner else {}),
           **({"pruner_warmup_epochs": warmup} if warmup is not None else {})}
    return {
        "grid": ("grid", {"n_trials": budget, "pruner": "none"}),
        "random": ("random", {"n_trials": budget, "pruner": "none"}),
        "tpe+pruning": ("bayesian", tpe),
    }


def epochs_to_reach(trials: list[dict[str, Any]], target: float) -> float:
    """Trial-epochs spent (in trial order) up to and including the first trial scoring >= target."""
    spent = 0
    for t in sorted(trials, key=lambda t: t["number"]):
        spent += t["epochs"]
        if t["state"] == "complete" and t["value"] is not None and t["value"] >= target - 1e-9:
            return spent
    return math.inf


def grid_expected(trials: list[dict[str, Any]], target: float, epochs: int) -> float:
    """Trial-epochs the grid needs to first reach `target`, expected over the orders it could visit its
    points in: with k of n points reaching it, (n + 1) / (k + 1) trials."""
    k = sum(t["value"] is not None and t["value"] >= target - 1e-9 for t in trials)
    return (len(trials) + 1) / (k + 1) * epochs


def bench_spec(args: argparse.Namespace, seed: int) -> Any:
    from mlplat.spec import parse_spec, resolve

    return resolve(parse_spec({
        "name": "tuning-benchmark", "seed": seed,
        "dataset": {"source": f"sklearn:{args.dataset}"},
        "steps": {"tune": {"plugin": "grid", "search_space": SPACE, "metric": "val_accuracy"},
                  "train": {"plugin": "mlp", "params": {
                      "epochs": args.epochs, "batch_size": 64, "early_stopping_patience": None,
                      "monitor": "val_accuracy", "checkpoint_every": 0, "device": "cpu"}}},
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="scikit-learn dataset (sklearn:NAME)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial")
    parser.add_argument("--seeds", type=int, default=4, help="sampler seeds to run and sum over")
    parser.add_argument("--pruner", default=None, choices=["median", "successive_halving", "hyperband"],
                        help="TPE's pruner (default: the tuner's)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="pruner_warmup_epochs (default: the tuner's): median: epochs before a trial may be "
                             "stopped; successive halving, hyperband: the first rung")
    args = parser.parse_args()

    import statistics

    import torch

    from mlplat import steps
    from mlplat.contracts import StepContext
    from mlplat.data import Splits
    from mlplat.registry import StageKind, get
    from mlplat.search_space import parse_search_space

    torch.set_num_threads(1)
    spec = bench_spec(args, 0)
    space = parse_search_space(spec.steps.tune.search_space)
    budget = len(space.grid_points())
    plans = strategies(budget, args.pruner, args.warmup)
    tpe_settings = get(StageKind.TUNER, "bayesian").parse_config(plans["tpe+pruning"][1])
    print(f"dataset sklearn:{args.dataset}; {budget} trials per search (the grid's size), "
          f"{args.epochs} epochs per trial, {args.seeds} seed(s); TPE settings {tpe_settings.model_dump(exclude_none=True)}; "
          f"space: {json.dumps(SPACE)}", flush=True)
    totals: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mlplat-tuning-bench-") as tmp:
        root = Path(tmp)
        steps.ingest(spec, REPO, root / "data")
        splits = Splits.load(root / "data")
        objective = steps.tune_objective(spec, splits, root / "objective")

        def search(label: str, seed: int) -> Any:
            plugin, params = plans[label]
            work = root / f"{label}-{seed}"
            work.mkdir()
            started = time.perf_counter()
            result = get(StageKind.TUNER, plugin).create(params).tune(
                objective, SPACE, StepContext(step="tune", work_dir=work, info=splits.info, seed=1000 + seed))
            result.wall = time.perf_counter() - started
            return result

        # a trial trains with the pipeline seed, so the grid's scores do not depend on the sampler seed: one
        # grid search, and its trial-epochs to its best are the expectation over the orders it could run in
        grid = search("grid", 0)
        grid_best = grid.best_value
        grid_epochs = sum(t["epochs"] for t in grid.trials)
        expected = grid_expected(grid.trials, grid_best, args.epochs)
        print(f"grid         best={grid_best:.4f} trial-epochs={grid_epochs:5d} to-its-best={expected:.0f} "
              f"(expected over visiting orders) wall={grid.wall:5.1f}s", flush=True)
        # the metric's resolution: how far the same config moves when retrained with another seed
        best_params = grid.best_params
        rescored = [grid_best] + [steps.tune_objective(bench_spec(args, s), splits, root / f"resolution-{s}")(
            best_params, lambda epoch, value: None) for s in range(1, 1 + RESOLUTION_SEEDS)]
        resolution = statistics.stdev(rescored)
        print(f"grid's best config retrained with {RESOLUTION_SEEDS} other training seeds: "
              f"{', '.join(f'{v:.4f}' for v in rescored[1:])} (sd {resolution:.4f} = the metric's resolution)", flush=True)
        loose = grid_best - resolution
        loose_expected = grid_expected(grid.trials, loose, args.epochs)
        loose_tpe = 0.0
        loose_reached = 0
        for seed in range(args.seeds):
            for label in ("random", "tpe+pruning"):
                result = search(label, seed)
                row = totals.setdefault(label, {"epochs": 0, "to_grid_best": 0, "reached": 0, "best": 0.0, "wall": 0.0})
                reach = epochs_to_reach(result.trials, grid_best)
                spent = sum(t["epochs"] for t in result.trials)
                row["epochs"] += spent
                row["to_grid_best"] += reach if math.isfinite(reach) else spent  # not reached: what it spent (and not met)
                row["reached"] += math.isfinite(reach)
                row["best"] += result.best_value / args.seeds
                row["wall"] += result.wall
                if label == "tpe+pruning":
                    within = epochs_to_reach(result.trials, loose)
                    loose_tpe += within if math.isfinite(within) else spent
                    loose_reached += math.isfinite(within)
                pruned = sum(t["state"] == "pruned" for t in result.trials)
                print(f"seed {seed} {label:12s} best={result.best_value:.4f} trial-epochs={spent:5d} "
                      f"to-grid-best={reach:>5} pruned={pruned:3d}/{len(result.trials)} wall={result.wall:5.1f}s", flush=True)
    n = args.seeds
    print(f"\nper seed (mean over {n} seed(s); the grid: its one search); 'reached': seeds reaching the grid's best")
    print(f"{'strategy':12s} {'mean best':>9s} {'trial-epochs':>12s} {'to grid best':>12s} {'reached':>7s} "
          f"{'ratio vs grid':>13s} {'wall s':>7s}")
    print(f"{'grid':12s} {grid_best:9.4f} {grid_epochs:12d} {expected:12.0f} {'-':>7s} {1:13.3f} {grid.wall:7.1f}")
    for label, row in totals.items():
        print(f"{label:12s} {row['best']:9.4f} {row['epochs'] / n:12.0f} {row['to_grid_best'] / n:12.0f} "
              f"{row['reached']:4.0f}/{n:<2d} {row['to_grid_best'] / n / expected:13.3f} {row['wall'] / n:7.1f}")
    tpe = totals["tpe+pruning"]
    ratio = tpe["to_grid_best"] / n / expected
    missed = n - int(tpe["reached"])
    met = ratio <= 1 / 3 and not missed
    print(f"\nTPE+pruning needs {ratio:.3f}x the grid's trial-epochs to reach the grid's best "
          f"({tpe['to_grid_best'] / n / grid_epochs:.3f}x the grid's full budget); target <= 0.333 with every seed "
          f"reaching it: {'met' if met else 'NOT met'}"
          + (f" ({missed} of {n} seed(s) never reached the grid's best)" if missed else ""))
    print(f"within the metric's resolution (>= {loose:.4f}, for the grid too): TPE+pruning reached it in "
          f"{loose_reached}/{n} seeds, {loose_tpe / n / loose_expected:.3f}x the grid's {loose_expected:.0f} trial-epochs "
          f"({loose_tpe / n / grid_epochs:.3f}x its full budget); for information, the verdict above is the strict one")


if __name__ == "__main__":
    sys.exit(main())
