"""Noise handling: drop or down-weight the rows the validator's label-noise check flagged."""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class NoiseHandlingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["drop", "downweight"] = "drop"
    weight: float = Field(0.1, ge=0, le=1, description="loss weight of a flagged row when action is 'downweight'")
    min_score: float = Field(0.0, ge=0, le=1, description="only rows whose suspicion score (probability margin) exceeds this")
    max_share: float = Field(0.3, gt=0, le=1, description="never touch more than this share of the training rows (highest scores first)")


SPEC = PluginSpec(
    name="label_noise",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.AUGMENTER,
    config_model=NoiseHandlingConfig,
    factory="mlplat_plugins.label_noise.handler:NoiseHandler",
    needs=frozenset({"step:validate"}),  # it acts on the validator's findings; checked when the spec is resolved
    summary="Drop or down-weight training rows flagged as likely mislabelled by the validator (needs a validate step)",
)
