"""Image drift: MMD on penultimate-layer embeddings, KS per class on softmax outputs, KS on image statistics."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class ImageDriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_rows: int = Field(300, ge=20, le=5000, description="reference rows kept (seeded sample) for the tests")
    window_rows: int = Field(300, ge=20, le=5000, description="most window rows tested (seeded sample of the latest)")
    min_window: int = Field(100, ge=1, description="rows below which a window never counts as drifted")
    permutations: int = Field(300, ge=50, le=5000, description="permutations of the MMD test (p-value resolution 1/(n+1))")
    embedding_alpha: float = Field(0.005, gt=0, lt=1, description="MMD permutation p-value below which embeddings drifted")
    output_alpha: float = Field(0.005, gt=0, lt=1, description="family-wise level of the per-class KS tests on softmax outputs")
    statistics_alpha: float = Field(0.005, gt=0, lt=1, description="family-wise level of the KS tests on image statistics")
    seed: int = 0


SPEC = PluginSpec(
    name="image_drift",
    kind=StageKind.DRIFT_DETECTOR,
    config_model=ImageDriftConfig,
    needs=frozenset({"image_files"}),
    handles_images=True,
    factory="mlplat_plugins.image_drift.detector:ImageDriftDetector",
    summary="image models: RBF-MMD permutation test on embeddings, per-class KS on softmax outputs, image statistics",
)
