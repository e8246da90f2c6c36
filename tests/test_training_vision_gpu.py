"""CUDA paths of the `vision` trainer: AMP (bf16, fp16 + GradScaler) with channels_last, on image files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import TrainingData
from mlplat.testing.images import image_task
from mlplat_plugins.image_augment import ImageAugmentConfig
from mlplat_plugins.image_augment.augment import ImageAugmenter
from mlplat_plugins.torch_trainers import VisionConfig
from mlplat_plugins.torch_trainers.vision import VisionTrainer

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_with_channels_last_trains_an_image_backbone(amp: str, tmp_path: Path) -> None:
    train, val, info = image_task("source", 600, tmp_path / "images", size=32, seed=0, validation=100)
    augmentation = ImageAugmenter(ImageAugmentConfig(hflip=0.5, mixup_alpha=0.2)).image_augmentation(
        train.preprocessing, info.n_classes, StepContext("augment", tmp_path, info, seed=0))
    model = VisionTrainer(VisionConfig(arch="resnet18", epochs=6, batch_size=64, lr=2e-3, amp=amp, device="cuda",
                                       checkpoint_every=0, workers=2)).fit(
        TrainingData(train, val, info, augmentation=augmentation), StepContext("train", tmp_path, info, seed=0))
    assert model.extras["device"].startswith("cuda") and model.extras["amp"] == amp
    assert model.network.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # channels_last: auto on CUDA
    assert model.metrics["val_accuracy"] > 0.5  # 10 classes: well above chance in 6 epochs
    assert next(model.network.parameters()).device.type == "cpu"
