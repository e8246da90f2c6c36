"""Alibi explainers: KernelShap (the default) and AnchorTabular.

Alibi is licensed BSL 1.1; it is imported only here, so a deployment that cannot accept that
license swaps `explain.plugin` for the Apache-licensed captum or shap explainers.
"""

from __future__ import annotations

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field


class KernelShapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    background_clusters: int = Field(8, ge=1, le=200, description="k-means centroids summarizing the background")
    nsamples: int = Field(256, ge=16, description="coalitions sampled per explained row")
    link: str = Field("identity", pattern="^(identity|logit)$", description="attribution scale: probability or log-odds")
    importance_rows: int = Field(40, ge=1, description="training rows explained for the global importance")
    seed: int = 0


class AnchorsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.95, gt=0, le=1, description="minimum anchor precision")
    train_rows: int = Field(500, ge=10, description="training rows kept to sample perturbations from")
    disc_perc: list[float] = Field(default_factory=lambda: [25.0, 50.0, 75.0], description="discretization percentiles")
    coverage_samples: int = Field(2000, ge=100)
    # on an interaction (XOR) no single feature raises precision, so a beam of 1 grows the rule from an
    # arbitrary feature: beam 10 lifts the relevant share 0.51 -> 0.75 there (benchmarks/explainer_relevance.py)
    beam_size: int = Field(1, ge=1, le=64, description="candidate rules kept per search step (alibi's beam width)")
    importance_rows: int = Field(5, ge=1, description="rows anchored for the global importance (seconds each)")
    seed: int = 0


KERNEL_SHAP_SPEC = PluginSpec(
    name="kernel_shap",
    kind=StageKind.EXPLAINER,
    extra="alibi",
    config_model=KernelShapConfig,
    factory="mlplat_plugins.alibi_explainers.kernel_shap:AlibiKernelShap",
    summary="alibi KernelShap (BSL 1.1) on a k-means background: per-feature Shapley attributions",
)

ANCHORS_SPEC = PluginSpec(
    name="anchors",
    tasks=frozenset({"classification"}),  # its work is per class; refused at resolve time for a regression
    kind=StageKind.EXPLAINER,
    extra="alibi",
    config_model=AnchorsConfig,
    factory="mlplat_plugins.alibi_explainers.anchors:AlibiAnchors",
    summary="alibi AnchorTabular (BSL 1.1): if-then rules with precision and coverage",
)
