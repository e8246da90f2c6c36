"""Tabular schema and quality validator (TFDV-style schema inference + checks)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplat.registry import PluginSpec, StageKind

Severity = Literal["info", "warn", "fail"]


class TabularValidatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_missing_rate: float = Field(0.0, ge=0, le=1, description="missing-value rate above which a column is an anomaly")
    range_tolerance: float = Field(0.5, ge=0, description="allowed overshoot of the training range, as a fraction of its width")
    min_minority_share: float = Field(0.1, gt=0, le=0.5, description="minority-class share below which imbalance is flagged")
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="per-check severity override, e.g. {duplicates: fail, imbalance: warn}"
    )


SPEC = PluginSpec(
    name="tabular",
    kind=StageKind.VALIDATOR,
    config_model=TabularValidatorConfig,
    factory="mlplat_plugins.tabular_validation.validator:TabularValidator",
    summary="Schema inference + anomalies (types, ranges, missing values), duplicates, constants, imbalance",
)
