"""Optuna tuners: grid, random, bayesian (TPE) and gp, sharing one study runner.

Light module: config models and plugin specs only; Optuna is imported by `tuner.py`.
Each spec's `katib_algorithm` names the Katib suggestion algorithm that runs the same search on a
cluster (mlplat.k8s.katib reads it), so the core needs no table of plugin names.
"""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class OptunaTunerConfig(BaseModel):
    """Options shared by every Optuna tuner."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int = Field(20, ge=1, le=100_000, description="trials in total, across resumes and parallel workers")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    parallel: int = Field(1, ge=1, le=64, description="trials at once, each in its own process")
    threads_per_trial: int = Field(1, ge=1, le=256, description="torch/BLAS threads per trial (parallel x threads <= cores)")
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    pruner_startup_trials: int = Field(5, ge=0, description="median: finished trials needed before pruning (optuna's default)")
    pruner_warmup_epochs: int = Field(2, ge=0, description="median: epochs a trial always gets; successive halving, "
                                                           "hyperband: min resource (epochs before the first rung)")
    reduction_factor: int = Field(3, ge=2, description="successive halving, hyperband: keep 1/reduction_factor per rung")
    seed: int | None = Field(None, description="sampler seed (default: the pipeline seed)")


class GridConfig(OptunaTunerConfig):
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = "none"


class RandomConfig(OptunaTunerConfig):
    """Random search: the shared options only."""


class BayesianConfig(OptunaTunerConfig):
    # Optuna's benchmarks (tutorial "Which Sampler and Pruner Should be Used?"): Hyperband suits TPE best; its
    # brackets also give slow starters (a low lr) full runs, which median pruning at a fixed epoch cuts short
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = "hyperband"
    n_startup_trials: int = Field(5, ge=1, description="random trials before TPE models the space")
    multivariate: bool = Field(True, description="model params jointly (grouped, so conditional params work)")


class GPConfig(OptunaTunerConfig):
    n_startup_trials: int = Field(5, ge=1, description="random trials before the Gaussian process is fitted")


def _spec(name: str, config: type[OptunaTunerConfig], cls: str, katib_algorithm: str, summary: str) -> PluginSpec:
    return PluginSpec(name=name, kind=StageKind.TUNER, config_model=config, factory=f"mlplat_plugins.optuna_tuners.tuner:{cls}",
                      summary=summary, extra="optuna", katib_algorithm=katib_algorithm)


GRID_SPEC = _spec("grid", GridConfig, "GridTuner", "grid", "Optuna grid search (grid_points per float/int param)")
RANDOM_SPEC = _spec("random", RandomConfig, "RandomTuner", "random", "Optuna random search with pruning")
BAYESIAN_SPEC = _spec("bayesian", BayesianConfig, "BayesianTuner", "tpe", "Optuna TPE (Bayesian) search with pruning")
GP_SPEC = _spec("gp", GPConfig, "GPTuner", "bayesianoptimization", "Optuna Gaussian-process Bayesian search with pruning")
