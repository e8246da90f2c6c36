"""Tabular schema and quality validator (TFDV-style schema inference + checks)."""

from __future__ import annotations

from typing import Any, Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["info", "warn", "fail"]

DEFAULT_SEVERITY: dict[str, Severity] = {
    "schema.columns": "fail",
    "schema.dtype": "fail",
    "schema.range": "fail",
    "schema.missing": "fail",
    "schema.parse": "fail",  # a cell of a numeric column that is no number (nor an na_values marker)
    "schema.domain": "fail",
    "schema.shift": "warn",  # a shifted batch may be real (drift), not corrupt: reported, not blocking
    "schema.label": "fail",
    "schema.label_coverage": "warn",
    "schema.association": "fail",  # a feature lost its relation to the label vs the schema: shuffled or misaligned
    "duplicates": "warn",
    "leakage": "warn",
    "constant": "warn",
    "outliers": "warn",
    "label_leak": "fail",
    "imbalance": "warn",
    "label_noise": "warn",
    "skew": "warn",
    "skew.share": "fail",
}
CHECKS = tuple(DEFAULT_SEVERITY)
# checks of class labels: a regression skips them (the validator) and refuses their severity (task_problems)
CLASSIFICATION_CHECKS = ("imbalance", "label_noise", "schema.label", "schema.label_coverage", "label_leak")


class LabelNoiseConfig(BaseModel):
    """Confident learning on out-of-fold predicted probabilities."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: Literal["ensemble", "logistic", "forest", "knn", "mlp"] = Field(
        "ensemble", description="cross-validated model: the mean probabilities of those of a random forest, a logistic regression "
                                "and a k-nearest-neighbour vote within 0.05 of the best out-of-fold accuracy (ensemble), "
                                "one of them alone, or a small torch MLP")
    method: Literal["prune_by_noise_rate", "confident_joint"] = Field(
        "prune_by_noise_rate", description="flag the estimated number of issues per class pair by margin, or only the joint's off-diagonal")
    folds: int = Field(5, ge=2, le=20)
    max_noise_share: float = Field(0.1, ge=0, le=1, description="suspect share of training rows above which the check fires")
    mlp_epochs: int = Field(
        25, ge=1, description="full-batch epochs of the torch MLP per fold; kept short so that it cannot memorize the noisy labels")


class TabularValidatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_missing_rate: float = Field(
        0.3, ge=0, le=1, description="missing-value rate above which a column is an anomaly, in any split (train included)")
    missing_alpha: float = Field(
        0.01, gt=0, lt=1, description="family-wise significance of the missing-rate z-tests (split vs training rate), "
                                      "Bonferroni-divided over columns and splits")
    max_unseen_category_share: float = Field(
        0.05, ge=0, le=1, description="share of a split's rows whose category is not in the training domain above which "
                                      "schema.domain fires (below it, the model's unknown bucket takes them)")
    range_tolerance: float = Field(
        1.0, ge=0, description="allowed overshoot of the training range, as a fraction of its width (catches unit/sign "
                               "errors; moderate shifts are max_mean_shift's)")
    max_out_of_range_share: float = Field(
        0.02, ge=0, le=1, description="share of a column's values outside the tolerated training range above which it is an anomaly")
    max_mean_shift: float = Field(
        1.0, gt=0, description="largest |column mean - training mean|, in training std, before a checked split is shifted")
    min_minority_share: float = Field(
        0.1, gt=0, le=0.5, description="minority-class share below which imbalance is flagged (capped at half the balanced share 1/(2k))")
    outlier_iqr: float = Field(8.0, gt=0, description="a value beyond Q1 - k*IQR or Q3 + k*IQR of the training column is extreme")
    max_outlier_share: float = Field(0.01, ge=0, le=1, description="share of extreme values above which a column is flagged")
    schema_path: str | None = Field(
        None, description="expected schema.json (e.g. a published model's); every split, train included, is checked against it")
    serving_sample: str | None = Field(
        None, description="CSV/Parquet sample of serving data to check for train/serve skew (absolute or relative to the working dir)")
    skew_method: str | None = Field(None, description="Evidently drift method per column (default: Evidently's choice)")
    skew_threshold: float | None = Field(None, description="Evidently drift threshold (default: the method's)")
    max_skew_share: float = Field(0.3, ge=0, le=1, description="share of skewed columns above which the dataset-level skew check fires")
    label_noise: LabelNoiseConfig = Field(default_factory=LabelNoiseConfig)
    plot_columns: int = Field(24, ge=0, description="columns drawn in the HTML report (anomalous columns first)")
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="per-check severity override, e.g. {duplicates: fail, imbalance: warn}"
    )

    @classmethod
    def task_problems(cls, params: dict[str, Any], task: str) -> list[tuple[str, str]]:
        """A regression runs no class checks (imbalance, label noise, label classes): a severity set for one is refused."""
        if task != "regression":
            return []
        return [(f"severity.{check}", f"{check} is a classification check; a regression skips it")
                for check in CLASSIFICATION_CHECKS if check in (params.get("severity") or {})]

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        unknown = sorted(set(value) - set(CHECKS))
        if unknown:  # a typo would silently keep the default severity
            raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
        return value


SPEC = PluginSpec(
    name="tabular",
    kind=StageKind.VALIDATOR,
    config_model=TabularValidatorConfig,
    factory="mlplat_plugins.tabular_validation.validator:TabularValidator",
    summary="Schema + anomalies, duplicates, leakage, constants, outliers, label leaks, imbalance, label noise, skew",
)
