"""Tuner contract: search a trainer's config space.

The runner builds the objective: it trains the configured trainer with the trial's
params merged into its config and returns the tune metric; `direction` says whether the
tuner maximizes or minimizes it (losses are minimized).
`report(epoch, value)` is passed to the objective's trainer as its epoch callback; a
tuner that prunes raises from it (optuna.TrialPruned) to stop a hopeless trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from mlplat.contracts.context import StepContext

Reporter = Callable[[int, float], None]
Objective = Callable[[dict[str, Any], Reporter], float]


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # params, value, state, duration_s, error


@runtime_checkable
class Tuner(Protocol):
    def tune(self, objective: Objective, search_space: Mapping[str, Any], context: StepContext,
             direction: Literal["maximize", "minimize"] = "maximize") -> TuneResult:
        ...
