"""Light: imported when plugins are listed. The implementation loads only when used."""
from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class ClipConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantile: float = Field(0.01, ge=0, lt=0.5, description="share clipped at each tail")


SPEC = PluginSpec("clip_outliers", StageKind.AUGMENTER, ClipConfig, factory="mlplat_example.clip:ClipOutliers",
                  summary="clip each training feature to its [q, 1-q] quantiles")
