"""Tuner plugins on a cheap, real objective: a noisy quadratic "training curve" that reports every
epoch, so samplers, pruning, failures, resume and parallel workers run exactly as in a pipeline."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlplat.contracts import StepContext
from mlplat.data import DatasetInfo
from mlplat.errors import MlplatError
from mlplat.registry import StageKind, spec_of

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True, "grid_points": 3},
    "depth": {"type": "int", "low": 1, "high": 3},
    "act": {"type": "categorical", "choices": ["relu", "gelu"]},
    "hidden": {"type": "categorical", "choices": [[16], [32, 16]]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "when": {"depth": {"gt": 1}}, "grid_points": 2},
}
EPOCHS = 6


def curve(params: dict[str, Any], report: Any, calls: list[dict[str, Any]] | None = None) -> float:
    """Best at lr = 0.01: the final score is reached linearly over the epochs."""
    if calls is not None:
        calls.append(dict(params))
    final = 1.0 - abs(math.log10(params["lr"]) + 2) / 4 - 0.01 * params["depth"]
    value = 0.0
    for epoch in range(EPOCHS):
        value = final * (epoch + 1) / EPOCHS
        report(epoch, value)
    return value


def context(tmp_path: Path, resume: bool = False, seed: int = 3) -> StepContext:
    info = DatasetInfo("toy", "y", ["a"], ["0", "1"])
    return StepContext(step="tune", work_dir=tmp_path, info=info, seed=seed, resume=resume)


def tuner(name: str, **params: Any) -> Any:
    return spec_of(StageKind.TUNER, name).create(params)


@pytest.mark.parametrize("name", ["grid", "random", "bayesian", "gp"])
def test_each_tuner_runs_a_tiny_search(tmp_path: Path, name: str) -> None:
    calls: list[dict[str, Any]] = []
    result = tuner(name, n_trials=6, pruner="none").tune(lambda p, r: curve(p, r, calls), SPACE, context(tmp_path))
    assert len(result.trials) == len(calls) == 6
    assert all(t["state"] == "complete" and t["epochs"] == EPOCHS for t in result.trials)
    assert result.best_value == max(t["value"] for t in result.trials)
    assert set(result.best_params) >= {"lr", "depth", "act", "hidden"}
    assert result.best_params["hidden"] in ([16], [32, 16])  # list choices come back as lists
    for params in calls:  # the conditional param exists exactly when its condition holds
        assert ("dropout" in params) == (params["depth"] > 1)
    if name == "grid":  # grid points only
        assert {c["lr"] for c in calls} <= {1e-4, 0.01, 1.0}
    report = (tmp_path / "report.html").read_text()
    assert report.count("<img") == 3 and "Trials" in report
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["grid", "bayesian"])
def test_a_minimized_metric_keeps_the_lowest_value(tmp_path: Path, name: str) -> None:
    def loss(params: dict[str, Any], report: Any) -> float:
        return 1.0 - curve(params, lambda epoch, value: report(epoch, 1.0 - value))

    result = tuner(name, n_trials=8, pruner="median", pruner_startup_trials=2).tune(
        loss, SPACE, context(tmp_path), direction="minimize")
    values = [t["value"] for t in result.trials if t["state"] == "complete"]
    assert result.best_value == min(values) < max(values)
    # resuming it as a maximization would mix two objectives in one study
    with pytest.raises(MlplatError, match="made to minimize its metric"):
        tuner(name, n_trials=9).tune(loss, SPACE, context(tmp_path, resume=True), direction="maximize")


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband"])
def test_pruning_stops_hopeless_trials(tmp_path: Path, pruner: str) -> None:
    result = tuner("random", n_trials=14, pruner=pruner, pruner_startup_trials=2, pruner_warmup_epochs=1,
                   reduction_factor=2).tune(curve, SPACE, context(tmp_path))
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert pruned, "no trial was pruned"
    assert all(t["epochs"] < EPOCHS for t in pruned)
    assert sum(t["epochs"] for t in result.trials) < 14 * EPOCHS
    assert any(t["state"] == "complete" for t in result.trials)


def test_bayesian_prunes_with_hyperband_by_default() -> None:
    assert isinstance(tuner("bayesian").pruner(), optuna.pruners.HyperbandPruner)
    assert isinstance(tuner("random").pruner(), optuna.pruners.MedianPruner)


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    def flaky(params: dict[str, Any], report: Any) -> float:
        if params["act"] == "gelu":
            raise RuntimeError("CUDA out of memory (simulated)")
        if params["hidden"] == [16]:
            report(0, float("nan"))
        return curve(params, report)

    result = tuner("random", n_trials=12, pruner="none").tune(flaky, SPACE, context(tmp_path))
    states = [t["state"] for t in result.trials]
    assert len(states) == 12 and "fail" in states and "complete" in states
    errors = {t["error"] for t in result.trials if t["state"] == "fail"}
    assert any("RuntimeError: CUDA out of memory" in e for e in errors)
    assert all(t["error"] is None for t in result.trials if t["state"] == "complete")
    assert any("validation metric is nan at epoch 0" in e for e in errors)  # the seeded search hits both


def test_no_successful_trial_is_a_clear_error(tmp_path: Path) -> None:
    def broken(params: dict[str, Any], report: Any) -> float:
        raise ValueError("bad data")

    with pytest.raises(MlplatError, match="tuning finished no trial.*ValueError: bad data"):
        tuner("random", n_trials=2).tune(broken, SPACE, context(tmp_path))


def test_resume_continues_the_study_without_repeating_finished_trials(tmp_path: Path) -> None:
    first: list[dict[str, Any]] = []
    before = tuner("bayesian", n_trials=4, pruner="none").tune(lambda p, r: curve(p, r, first), SPACE, context(tmp_path))
    # a search killed mid-trial leaves it RUNNING in the study: it must be re-run, not counted
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{tmp_path / 'study.db'}")
    stale = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    second: list[dict[str, Any]] = []
    after = tuner("bayesian", n_trials=7, pruner="none").tune(lambda p, r: curve(p, r, second),
                                                               SPACE, context(tmp_path, resume=True))
    assert len(first) == 4 and len(second) == 3  # only the missing trials ran
    assert second[0]["lr"] == stale.params["lr"]  # the interrupted trial was re-queued first
    assert [t["params"] for t in after.trials[:4]] == [t["params"] for t in before.trials]
    interrupted = [t for t in after.trials if t["number"] == stale.number][0]
    assert interrupted["state"] == "fail" and "interrupted" in interrupted["error"]
    assert sum(t["state"] == "complete" for t in after.trials) == 7
    # without resume, the same work dir starts over
    third: list[dict[str, Any]] = []
    fresh = tuner("bayesian", n_trials=2, pruner="none").tune(lambda p, r: curve(p, r, third), SPACE, context(tmp_path))
    assert len(third) == 2 and len(fresh.trials) == 2


def test_parallel_trials_run_in_worker_processes(tmp_path: Path) -> None:
    marks = tmp_path / "pids"
    marks.mkdir()

    def objective(params: dict[str, Any], report: Any) -> float:
        import torch

        (marks / f"{os.getpid()}-{len(list(marks.iterdir()))}").write_text(json.dumps({"threads": torch.get_num_threads()}))
        return curve(params, report)

    result = tuner("random", n_trials=6, parallel=2, threads_per_trial=1, pruner="none").tune(
        objective, SPACE, context(tmp_path))
    pids = {p.name.split("-")[0] for p in marks.iterdir()}
    assert len(result.trials) == 6 and all(t["state"] == "complete" for t in result.trials)
    assert len(pids) == 2 and str(os.getpid()) not in pids
    assert all(json.loads(p.read_text())["threads"] == 1 for p in marks.iterdir())


@pytest.mark.parametrize("name, params", [("random", {}), ("bayesian", {"n_startup_trials": 10})])
def test_resumed_search_draws_new_params(tmp_path: Path, name: str, params: dict[str, Any]) -> None:
    """A sampler seeded as in the first run would replay its draws (TPE's startup trials are random)."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    tuner(name, n_trials=3, pruner="none", **params).tune(lambda p, r: curve(p, r, first), SPACE, context(tmp_path))
    tuner(name, n_trials=6, pruner="none", **params).tune(lambda p, r: curve(p, r, second), SPACE,
                                                          context(tmp_path, resume=True))
    assert len(second) == 3 and {p["lr"] for p in second}.isdisjoint(p["lr"] for p in first)


def test_resumed_parallel_workers_draw_new_params(tmp_path: Path) -> None:
    space = {"lr": SPACE["lr"], "depth": SPACE["depth"]}
    search = dict(parallel=2, threads_per_trial=1, pruner="none")
    tuner("random", n_trials=4, **search).tune(curve, space, context(tmp_path))
    after = tuner("random", n_trials=8, **search).tune(curve, space, context(tmp_path, resume=True))
    lrs = [t["params"]["lr"] for t in after.trials]
    assert len(lrs) == 8 and len(set(lrs)) == 8  # no worker replays another's (or the first run's) draws


def test_grid_runs_each_active_combination_once(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    result = tuner("grid", n_trials=1000).tune(lambda p, r: curve(p, r, calls), SPACE, context(tmp_path))
    # 3 lr x 2 act x 2 hidden x (depth 1, or depth 2-3 x 2 dropout values): dropout is not gridded for depth 1
    assert len(calls) == len(result.trials) == 3 * 2 * 2 * (1 + 2 * 2)
    assert len({json.dumps(c, sort_keys=True) for c in calls}) == len(calls)
    # a resumed grid search with a larger budget runs nothing again: the grid is done
    again: list[dict[str, Any]] = []
    tuner("grid", n_trials=1000).tune(lambda p, r: curve(p, r, again), SPACE, context(tmp_path, resume=True))
    assert again == []


def test_grid_smaller_than_budget_resumes_with_the_points_not_yet_run(tmp_path: Path) -> None:
    space = {"lr": SPACE["lr"], "depth": SPACE["depth"]}  # 9 points
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    tuner("grid", n_trials=4).tune(lambda p, r: curve(p, r, first), space, context(tmp_path))
    tuner("grid", n_trials=9).tune(lambda p, r: curve(p, r, second), space, context(tmp_path, resume=True))
    assert len(first) == 4 and len(second) == 5
    assert sorted(json.dumps(c, sort_keys=True) for c in first + second) == \
        sorted(json.dumps({"lr": lr, "depth": d}, sort_keys=True) for lr in (1e-4, 0.01, 1.0) for d in (1, 2, 3))


def test_empty_search_space_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlplatError, match="search_space is empty"):
        tuner("random").tune(curve, {}, context(tmp_path))
