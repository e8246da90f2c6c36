"""Synthetic training rows from a per-class gaussian copula, with a fidelity report."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class GaussianCopulaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(1.0, gt=0, le=20, description="synthetic rows per real training row, per class")
    min_class_rows: int = Field(5, ge=3, description="classes with fewer real rows get no synthetic rows")


SPEC = PluginSpec(
    name="gaussian_copula",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.AUGMENTER,
    config_model=GaussianCopulaConfig,
    factory="mlplat_plugins.synthetic.copula:GaussianCopulaGenerator",
    summary="Per-class gaussian copula generator fitted to train; writes a fidelity report (marginals, correlations)",
)
