"""PyTorch trainers (tabular MLP, image CNN) sharing one training engine.

This module stays light: config models and plugin specs only. The engine and the
networks live in sibling modules that import torch when a trainer is created.
"""

from __future__ import annotations

from typing import Any, Literal

from mlplat.deprecations import renamed_keys
from mlplat.registry import Direction, PluginSpec, StageKind
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RENAMED_PARAMS = {"monitor": "early_stopping_metric"}  # old -> new; the old name still reads, with a DeprecationWarning


class TrainingConfig(BaseModel):
    """Options of the shared training engine (every trainer accepts them)."""

    model_config = ConfigDict(extra="forbid")

    # optimisation
    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, le=10)
    # overfitting controls
    weight_decay: float = Field(0.0, ge=0, description="decoupled (AdamW) weight decay")
    l1: float = Field(0.0, ge=0, description="L1 penalty on weight matrices (not biases or norms)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    loss: Literal["auto", "cross_entropy", "mse", "huber"] = Field(
        "auto", description="'auto': cross-entropy for a classification, MSE for a regression; 'huber' = Huber on the standardized target")
    huber_delta: float = Field(1.0, gt=0, description="Huber threshold, in target standard deviations (loss: huber)")
    early_stopping_patience: int | None = Field(10, ge=1, description="epochs without val improvement before stopping; null = off")
    early_stopping_metric: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss", description="validation metric early stopping, the best weights and the plateau scheduler follow")
    min_delta: float = Field(0.0, ge=0, description="smallest change of early_stopping_metric that counts as improvement")
    restore_best_weights: bool = True
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(3, ge=0)
    min_lr: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    class_weight: Literal["balanced"] | list[float] | None = Field(
        None, description="'balanced' (n / (k * count)) or one weight per class; multiplies per-row weights")
    logit_adjustment: float = Field(
        0.0, ge=0, le=10, description="tau of the logit-adjusted loss (Menon et al. 2021; 1.0 = theirs, 0 = off): trains on "
        "logits + tau * log(class prior of the training rows), so the network learns balanced logits for an imbalanced split")
    decision: Literal["argmax", "out_of_fold"] = Field(
        "argmax", description="'out_of_fold': per-class offsets on the log-probabilities (a threshold for two classes) "
        "maximizing balanced accuracy on the CV's out-of-fold predictions (cv_folds, else min(5, smallest class) folds), "
        "saved in model.json `decision` and applied wherever the model predicts a class")
    ensemble: Literal["none", "out_of_fold"] = Field(
        "none", description="'out_of_fold': the served network averages the logits of the CV's fold networks and the final "
        "one (k + 1 networks in model.safetensors, architecture key `ensemble`); the folds are those of cv_folds or "
        "decision: out_of_fold, else min(5, smallest class). A few minority rows make one network's ranking noisy")
    imbalance: Literal["none", "logit_adjust"] = Field(
        "none", description="'logit_adjust': the remedy for a rare class (the tabular validator recommends it): "
        "logit_adjustment 1.0 unless set, decision: out_of_fold, and ensemble: out_of_fold unless set")
    cv_folds: int = Field(0, ge=0, le=20, description="stratified K-fold CV inside the step (0 = off)")
    # compute
    device: str = Field("auto", description="'auto' (CUDA, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="autocast dtype; fp16 uses a GradScaler")
    compile: bool = Field(False, description="torch.compile the network for training")
    ddp_processes: int = Field(1, ge=1, le=64, description="processes for DDP via torchrun (one node); 1 = no DDP")
    ddp_backend: Literal["auto", "gloo", "nccl"] = "auto"
    checkpoint_every: int = Field(5, ge=0, description="save a resumable checkpoint every N epochs (0 = off)")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms + cuDNN deterministic")
    eval_batch_size: int = Field(8192, ge=1)
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes decoding image files (0: in the training "
                                                     "process); on a cluster they need the pod's /dev/shm (dataset.image.shm_size)")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="NHWC memory format for image networks; 'auto': on CUDA only")
    # warm start / transfer learning
    init_from: str | None = Field(None, description="model directory, run id or 'latest' to initialise weights from")
    freeze: list[str] = Field(default_factory=list, description="parameter-name prefixes to freeze, e.g. ['body'] or ['body.0']")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_keys(data, RENAMED_PARAMS, "params.", cls.__name__)

    @model_validator(mode="after")
    def _imbalance_preset(self) -> TrainingConfig:
        if self.imbalance == "logit_adjust":
            self.logit_adjustment = self.logit_adjustment or 1.0
            self.decision = "out_of_fold"
            if "ensemble" not in self.model_fields_set:
                self.ensemble = "out_of_fold"
        return self

    @classmethod
    def task_problems(cls, params: dict[str, Any], task: str) -> list[tuple[str, str]]:
        """(param, message) for each set option that the task cannot use (mlplat.spec.task_problems calls it)."""
        if task == "regression":
            bound = {"loss": params.get("loss") == "cross_entropy",
                     "early_stopping_metric": params.get("early_stopping_metric") == "val_accuracy",
                     "class_weight": params.get("class_weight") is not None,
                     "logit_adjustment": bool(params.get("logit_adjustment")),
                     "label_smoothing": bool(params.get("label_smoothing")),
                     "imbalance": params.get("imbalance", "none") != "none",
                     "decision": params.get("decision", "argmax") != "argmax"}
            return [(name, f"{params.get(name)!r} is a classification option; this spec is a regression "
                     "(loss: mse | huber, early_stopping_metric: val_loss)") for name, refused in bound.items() if refused]
        if params.get("loss") in ("mse", "huber"):
            return [("loss", f"{params['loss']!r} is a regression loss; a classification trains on cross_entropy")]
        return []

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cv_folds must be 0 (off) or at least 2")
        return value


Norm = Literal["none", "batch", "layer"]


class MLPConfig(TrainingConfig):
    width: int = Field(64, ge=1, description="hidden width (when `hidden` is not given)")
    depth: int = Field(2, ge=0, le=64, description="hidden layers (when `hidden` is not given)")
    hidden: list[int] | None = Field(None, description="explicit hidden widths; overrides width/depth")
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: Norm = "none"
    activation: Literal["relu", "gelu", "silu"] = "relu"
    onehot_max_categories: int = Field(
        16, ge=1, description="a categorical feature with at most this many codes (vocabulary + unknown) is one-hot "
                              "encoded, a larger one gets a learned embedding")
    embedding_dim: int = Field(8, ge=1, le=1024, description="width of each categorical embedding")


class CNNConfig(TrainingConfig):
    channels: list[int] = Field(default_factory=lambda: [16, 32], description="conv block output channels")
    hidden: int = Field(64, ge=1, description="width of the dense layer before the classifier")
    dropout: float = Field(0.2, ge=0, lt=1)
    norm: Norm = "batch"
    image_shape: list[int] | None = Field(None, min_length=3, max_length=3,
                                          description="[channels, height, width]; default: the dataset's image_shape")


class VisionConfig(TrainingConfig):
    arch: Literal["resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"] = "resnet18"
    stem: Literal["auto", "small", "imagenet"] = Field(
        "auto", description="'small': 3x3 stride-1 first convolution (no ResNet max-pool) for small inputs such as "
        "32x32; 'imagenet': torchvision's; 'auto': small below 96 pixels")
    pretrained: str | None = Field(None, description="path or URI of a .safetensors file or a .pth state dict "
                                   "(torchvision or mlplat key layout); a head of another shape is skipped")
    freeze_backbone_epochs: int = Field(0, ge=0, description="epochs with the backbone frozen (only the head trains)")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="the backbone's learning rate, as a fraction of lr")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    early_stopping_patience: int | None = Field(5, ge=1)


# what the engine reports every epoch (and at the end) that the tune step may optimize
TUNE_METRICS: dict[str, Direction] = {"val_accuracy": "maximize", "val_loss": "minimize"}
# a regression's engine reports these instead (mlplat.tasks.REGRESSION_METRICS on the validation split)
TASK_TUNE_METRICS: dict[str, dict[str, Direction]] = {
    "classification": TUNE_METRICS,
    "regression": {"val_rmse": "minimize", "val_mae": "minimize", "val_r2": "maximize", "val_loss": "minimize"},
}
# a tune trial needs one score: no CV band (~K+1 times the cost) and no checkpoints (its dir is deleted)
TUNE_TRIAL_PARAMS = {"cv_folds": 0, "checkpoint_every": 0}

MLP_SPEC = PluginSpec(
    name="mlp",
    kind=StageKind.TRAINER,
    extra="torch",
    config_model=MLPConfig,
    factory="mlplat_plugins.torch_trainers.mlp:MLPTrainer",
    tune_metrics=TUNE_METRICS,
    task_tune_metrics=TASK_TUNE_METRICS,
    tune_trial_params=TUNE_TRIAL_PARAMS,
    summary="Tabular MLP (PyTorch): norm/dropout/L1/L2, early stopping, CV, AMP, DDP, checkpoints, warm start",
)

CNN_SPEC = PluginSpec(
    name="cnn",
    kind=StageKind.TRAINER,
    extra="torch",
    config_model=CNNConfig,
    factory="mlplat_plugins.torch_trainers.cnn:CNNTrainer",
    tune_metrics=TUNE_METRICS,
    task_tune_metrics=TASK_TUNE_METRICS,
    tune_trial_params=TUNE_TRIAL_PARAMS,
    needs=frozenset({"image"}),  # image files (dataset.image), or pixel features with DatasetInfo.image_shape (sklearn:digits)
    handles_images=True,
    summary="Image CNN (PyTorch) for image files (DataLoader workers) or pixel features, e.g. sklearn:digits 8x8; same engine as mlp",
)

VISION_SPEC = PluginSpec(
    name="vision",
    kind=StageKind.TRAINER,
    extra="vision",
    config_model=VisionConfig,
    factory="mlplat_plugins.torch_trainers.vision:VisionTrainer",
    tune_metrics=TUNE_METRICS,
    task_tune_metrics=TASK_TUNE_METRICS,
    tune_trial_params=TUNE_TRIAL_PARAMS,
    needs=frozenset({"image"}),
    handles_images=True,
    summary="torchvision backbones (resnet18/34/50, mobilenet_v3, efficientnet_b0): pretrained weights, "
            "backbone freezing, discriminative LRs, AMP + channels_last; same engine as mlp/cnn",
)
