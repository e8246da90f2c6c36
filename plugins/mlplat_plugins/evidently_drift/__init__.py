"""Evidently drift detector with cached reference statistics and alert-noise control."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class EvidentlyDriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(0.5, gt=0, le=1, description="Evidently's dataset-drift share (library verdict)")
    min_window: int = Field(200, ge=1, description="rows below which a window never counts as drifted")
    fdr: float = Field(0.01, gt=0, lt=1, description="Benjamini-Hochberg false-discovery rate across features (K-S p-values)")
    min_effect_size: float = Field(0.1, ge=0, description="normed Wasserstein distance (reference std units) a feature must exceed")
    min_prediction_effect: float = Field(0.1, ge=0, le=1, description="total-variation distance of predicted classes for prediction drift")
    importance_floor: float = Field(0.01, ge=0, lt=1, description="features with a smaller normalized importance never alert")
    alert_share: float = Field(0.25, gt=0, le=1, description="importance-weighted share of drifted features that makes a drifted window")
    top_importance_share: float = Field(0.8, gt=0, le=1, description="the top features: the fewest, by importance, that carry this share "
                                        "of it; any of them drifting is critical")
    min_output_ks: float = Field(0.1, ge=0, le=1, description="K-S distance a class's probability must exceed for output drift (critical)")


SPEC = PluginSpec(
    name="evidently",
    kind=StageKind.DRIFT_DETECTOR,
    extra="evidently",
    config_model=EvidentlyDriftConfig,
    factory="mlplat_plugins.evidently_drift.detector:EvidentlyDriftDetector",
    summary="Evidently drift tests on cached reference statistics; BH correction, effect size, importance weighting",
)
