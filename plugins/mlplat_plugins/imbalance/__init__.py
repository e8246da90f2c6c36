"""Oversampling for class imbalance with imbalanced-learn (random duplicates or SMOTE)."""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class RandomOversampleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampling_strategy: float | Literal["auto", "minority", "not majority", "all"] = Field(
        "auto", description="imbalanced-learn sampling_strategy: 'auto' balances every class; a float is the minority/majority "
                            "ratio (binary)")
    shrinkage: float | None = Field(None, ge=0, description="smoothed bootstrap: gaussian jitter of the copies (imbalanced-learn); "
                                    "~1.0 helps a minority of a few rows (benchmarks/data_quality.py)")


class SmoteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampling_strategy: float | Literal["auto", "minority", "not majority", "all"] = "auto"
    k_neighbors: int = Field(5, ge=1, description="neighbours to interpolate between (capped by the minority size - 1)")


RANDOM_SPEC = PluginSpec(
    name="random_oversample",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.AUGMENTER,
    extra="imbalance",
    config_model=RandomOversampleConfig,
    factory="mlplat_plugins.imbalance.oversample:RandomOversampler",
    summary="Random oversampling of minority classes (imbalanced-learn RandomOverSampler)",
)
SMOTE_SPEC = PluginSpec(
    name="smote",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.AUGMENTER,
    extra="imbalance",
    config_model=SmoteConfig,
    factory="mlplat_plugins.imbalance.oversample:SmoteOversampler",
    summary="SMOTE interpolation between minority neighbours (imbalanced-learn)",
)
