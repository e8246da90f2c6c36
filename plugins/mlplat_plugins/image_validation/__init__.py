"""Image-file validator: decodability, modes, class counts, image sizes, duplicates, channel statistics, label noise."""

from __future__ import annotations

from typing import Literal

from mlplat.registry import PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field, field_validator

Severity = Literal["info", "warn", "fail"]

DEFAULT_SEVERITY: dict[str, Severity] = {
    "images.undecodable": "fail",  # not an image at all (a text file, a wrong extension)
    "images.truncated": "fail",  # the header decodes, the pixel data does not
    "images.too_large": "fail",  # the header declares more than dataset.image.max_pixels (a decompression bomb)
    "images.mode": "warn",  # CMYK, palette, 16-bit, alpha: converted to the model's channels, maybe not as meant
    "images.class_counts": "warn",  # a class with too few training images, or absent from a split
    "images.sizes": "warn",  # images smaller than the network input (upsampled) or of widely mixed aspect
    "images.duplicates": "warn",  # identical files within the training split
    "images.duplicate_labels": "fail",  # identical files with different labels
    "images.leakage": "fail",  # identical files in training and validation/test: the held-out score is inflated
    "images.channels": "warn",  # a split's channel means far from the training split's, or a constant channel
    "images.label_noise": "warn",  # training images whose label confident learning doubts (pooled pixels + CNN)
}
CHECKS = tuple(DEFAULT_SEVERITY)


class ImageValidatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_images_per_class: int = Field(10, ge=1, description="fewest training images of a class before class_counts fires")
    max_aspect_ratio: float = Field(4.0, ge=1, description="width/height (or height/width) above which an image counts as odd")
    max_odd_size_share: float = Field(0.05, ge=0, le=1, description="share of images smaller than the input or of odd "
                                                                      "aspect above which images.sizes fires")
    max_channel_shift: float = Field(0.25, gt=0, description="largest |split channel mean - training mean| in training "
                                                             "pixel stds (images.channels fires beyond it and channel_z)")
    channel_z: float = Field(4.0, gt=0, description="z of a split's channel mean against training's, over per-image means: "
                                                    "a smaller shift is sampling noise")
    label_noise: bool = Field(True, description="confident learning on out-of-fold probabilities of pooled pixels (forest, "
                                                "logistic, k-NN) and of the small CNN, when those models can tell the classes apart")
    label_noise_grid: int = Field(8, ge=2, le=32, description="pixels are average-pooled to grid x grid per channel")
    label_noise_cnn: bool = Field(True, description="add the platform's small CNN (out of fold, on the images shrunk to "
                                                    "label_noise_cnn_size) to the label-noise ensemble: it sees shapes")
    label_noise_cnn_size: int = Field(16, ge=4, le=64, description="images are average-pooled to at most this many pixels "
                                                                  "a side for the CNN member")
    label_noise_cnn_epochs: int = Field(15, ge=1, le=100, description="CNN epochs per fold: few, so that it does not "
                                                                     "memorize the flipped labels")
    label_noise_cnn_max_images: int = Field(2000, ge=10, description="training images the CNN fits per fold at most (a "
                                                                     "seeded sample): bounds the check's time; all are assessed")
    min_label_noise_accuracy: float = Field(
        0.6, ge=0, le=1, description="out-of-fold accuracy on pooled pixels below which label noise is not assessed: a model "
                                     "that cannot tell the classes apart flags its own errors, not mislabelled images")
    max_noise_share: float = Field(0.1, ge=0, le=1, description="share of suspect training images above which the check fires")
    listed: int = Field(20, ge=1, le=1000, description="files named per finding in the report (all are in report.json details)")
    severity: dict[str, Severity] = Field(default_factory=dict, description="per-check severity override, "
                                                                            "e.g. {images.mode: fail}")

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        unknown = sorted(set(value) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
        return value


SPEC = PluginSpec(
    name="images",
    kind=StageKind.VALIDATOR,
    config_model=ImageValidatorConfig,
    factory="mlplat_plugins.image_validation.validator:ImageValidator",
    needs=frozenset({"image_files"}),
    handles_images=True,
    tasks=frozenset({"classification"}),
    summary="Image files: undecodable/truncated files and wrong modes by name, class counts, sizes, duplicates, channel stats",
)
