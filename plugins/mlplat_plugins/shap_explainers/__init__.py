"""shap's KernelExplainer (MIT): the same Kernel SHAP estimator as alibi's, without the BSL license."""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class ShapKernelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    background_clusters: int = Field(8, ge=1, le=200, description="k-means centroids summarizing the background")
    nsamples: int = Field(256, ge=16, description="coalitions sampled per explained row")
    link: str = Field("identity", pattern="^(identity|logit)$", description="attribution scale: probability or log-odds")
    importance_rows: int = Field(40, ge=1, description="training rows explained for the global importance")
    seed: int = 0


SHAP_KERNEL_SPEC = PluginSpec(
    name="shap_kernel",
    tasks=frozenset({"classification"}),  # attributes class probabilities only (alibi kernel_shap covers regression)
    kind=StageKind.EXPLAINER,
    extra="shap",
    config_model=ShapKernelConfig,
    factory="mlplat_plugins.shap_explainers.kernel:ShapKernel",
    summary="shap KernelExplainer (MIT) on a k-means background: per-feature Shapley attributions",
)
