"""captum explainers (Apache 2.0): IntegratedGradients (torch-native, fast) and LIME."""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class IntegratedGradientsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_steps: int = Field(32, ge=4, description="Riemann steps along the path from baseline to input")
    background_clusters: int = Field(8, ge=1, le=200, description="k-means centroids summarizing the background")
    baseline: Literal["centroids", "mean"] = Field(
        "centroids", description="paths from every centroid, averaged by weight (cost x clusters), or from their weighted mean")
    importance_rows: int = Field(200, ge=1, description="training rows explained for the global importance")
    seed: int = 0


class LimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(500, ge=10, description="perturbed samples per explained row")
    # Lasso (captum's own default) selects features: a ridge surrogate spreads about a quarter of the
    # attribution over features the model ignores (benchmarks/explainer_relevance.py)
    surrogate: Literal["lasso", "ridge"] = Field("lasso", description="the local linear surrogate")
    alpha: float = Field(0.01, ge=0, validation_alias=AliasChoices("alpha", "ridge_alpha"),
                         description="regularization of the surrogate (ridge_alpha: its former name)")
    background_clusters: int = Field(8, ge=1, le=200, description="k-means centroids; masked features take their mean")
    importance_rows: int = Field(30, ge=1, description="training rows explained for the global importance")
    seed: int = 0


INTEGRATED_GRADIENTS_SPEC = PluginSpec(
    name="integrated_gradients",
    kind=StageKind.EXPLAINER,
    extra="captum",
    config_model=IntegratedGradientsConfig,
    factory="mlplat_plugins.captum_explainers.attribution:IntegratedGradientsExplainer",
    summary="captum IntegratedGradients from the k-means background: fast, exact completeness, Apache 2.0",
)

LIME_SPEC = PluginSpec(
    name="lime",
    kind=StageKind.EXPLAINER,
    extra="captum",
    config_model=LimeConfig,
    factory="mlplat_plugins.captum_explainers.attribution:LimeExplainer",
    summary="captum Lime: a local linear surrogate per row, Apache 2.0",
)


class ImageAttributionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["integrated_gradients", "occlusion"] = "integrated_gradients"
    n_steps: int = Field(16, ge=4, description="integrated gradients: Riemann steps from the mean image")
    occlusion_window: int = Field(4, ge=1, description="occlusion: side of the square patch, in pixels")
    map_size: int = Field(32, ge=4, le=256, description="the returned map is sum-pooled to at most this many pixels a side")
    samples_per_class: int = Field(2, ge=1, le=20, description="test images per class shown in the explain step's report")


IMAGE_ATTRIBUTION_SPEC = PluginSpec(
    name="image_attribution",
    kind=StageKind.EXPLAINER,
    extra="captum",
    config_model=ImageAttributionConfig,
    needs=frozenset({"image_files"}),
    handles_images=True,
    factory="mlplat_plugins.captum_explainers.images:ImageAttributionExplainer",
    summary="image models: captum Integrated Gradients or Occlusion maps (downsampled) and PNG overlays",
)
