"""The `vision` trainer: torchvision backbones, pretrained weights, backbone schedule, and the v2 image
augmenter (on-the-fly transforms, mixup/cutmix with soft targets) on generated PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.augmenter import ImageAugmenter
from mlplat.contracts.trainer import TrainingData
from mlplat.errors import SpecError
from mlplat.testing.images import image_task
from mlplat_plugins.image_augment import ImageAugmentConfig
from mlplat_plugins.image_augment.augment import ImageAugmenter as V2Augmenter
from mlplat_plugins.torch_trainers import VisionConfig
from mlplat_plugins.torch_trainers.networks import build_network
from mlplat_plugins.torch_trainers.vision import HEADS, VisionTrainer
from safetensors.torch import save_file
from torch import nn

FAST = {"epochs": 1, "batch_size": 32, "checkpoint_every": 0, "early_stopping_patience": None}


def arch(name: str, n_classes: int = 4, size: int = 16, stem: str = "small") -> dict:
    return {"type": "vision", "arch": name, "n_classes": n_classes, "image_shape": [3, size, size], "stem": stem}


def last_linear(network: nn.Module) -> nn.Linear:
    return [m for m in network.modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_architecture_takes_small_images_and_its_last_linear_reads_the_embedding(name: str) -> None:
    network = build_network(arch(name)).eval()
    seen: list[torch.Tensor] = []
    last_linear(network).register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    with torch.no_grad():
        out = network(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4)
    assert last_linear(network) is network.head  # the head, not a layer inside the torchvision classifier
    assert seen[0].shape == (2, network.head.in_features)
    assert torch.allclose(network.head(seen[0]), out)
    again = build_network(arch(name))  # serving rebuilds the network from the architecture dict alone
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in network.state_dict().items()}


def test_pretrained_weights_load_with_the_head_of_other_classes_skipped(tmp_path: Path) -> None:
    source = build_network(arch("resnet18", n_classes=10))
    save_file(source.state_dict(), str(tmp_path / "source.safetensors"))
    network = build_network(arch("resnet18", n_classes=4))
    trainer = VisionTrainer(VisionConfig(arch="resnet18", pretrained=str(tmp_path / "source.safetensors")))
    info = trainer.prepare_network(network, StepContext("train", tmp_path, None, seed=0))  # type: ignore[arg-type]
    assert info["pretrained"]["skipped_head"] == ["head.bias", "head.weight"]
    assert torch.equal(network.state_dict()["body.layer4.1.conv2.weight"], source.state_dict()["body.layer4.1.conv2.weight"])
    assert network.head.weight.shape == (4, 512)


def test_a_torchvision_state_dict_loads_through_a_uri_and_a_pickle_is_refused(tmp_path: Path) -> None:
    from mlplat import vision

    vision.load()
    from torchvision import models

    tv = models.resnet18(weights=None)  # torchvision's own layout: conv1.*, fc.* (1000 classes)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    network = build_network(arch("resnet18", size=64, stem="imagenet"))
    trainer = VisionTrainer(VisionConfig(arch="resnet18", pretrained=(tmp_path / "resnet18.pth").as_uri()))
    info = trainer.prepare_network(network, StepContext("train", tmp_path, None, seed=0))  # type: ignore[arg-type]
    assert info["pretrained"]["skipped_head"] == ["head.bias", "head.weight"]
    assert torch.equal(network.body.conv1.weight, tv.conv1.weight)

    torch.save({"conv1.weight": torch.zeros(1), "extra": Path("/etc")}, tmp_path / "pickle.pth")  # not weights-only
    with pytest.raises(SpecError, match="pretrained.*not a weights-only state dict"):
        VisionTrainer(VisionConfig(pretrained=str(tmp_path / "pickle.pth"))).prepare_network(
            network, StepContext("train", tmp_path, None, seed=0))  # type: ignore[arg-type]


def test_a_checkpoint_that_does_not_fit_names_the_key(tmp_path: Path) -> None:
    small_stem = build_network(arch("resnet18")).state_dict()  # 3x3 stem: does not fit the 7x7 ImageNet stem
    save_file(small_stem, str(tmp_path / "small.safetensors"))
    network = build_network(arch("resnet18", stem="imagenet"))
    with pytest.raises(SpecError, match=r"body\.conv1\.weight: checkpoint \(64, 3, 3, 3\) vs network \(64, 3, 7, 7\)"):
        VisionTrainer(VisionConfig(pretrained=str(tmp_path / "small.safetensors"))).prepare_network(
            network, StepContext("train", tmp_path, None, seed=0))  # type: ignore[arg-type]
    save_file({**small_stem, "body.extra.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(SpecError, match=r"body\.extra\.weight: not in the network"):
        VisionTrainer(VisionConfig(pretrained=str(tmp_path / "extra.safetensors"))).prepare_network(
            build_network(arch("resnet18")), StepContext("train", tmp_path, None, seed=0))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return image_task("source", 96, tmp_path_factory.mktemp("shapes"), size=16, seed=0, validation=32)


def test_frozen_backbone_epochs_train_only_the_head_then_the_backbone_at_its_scaled_rate(shapes: tuple, tmp_path: Path) -> None:
    train, val, info = shapes
    initial = build_network(arch("resnet18", n_classes=10))
    save_file(initial.state_dict(), str(tmp_path / "init.safetensors"))
    params = {**FAST, "arch": "resnet18", "pretrained": str(tmp_path / "init.safetensors"), "restore_best_weights": False}
    frozen = VisionTrainer(VisionConfig(**params, freeze_backbone_epochs=1)).fit(
        TrainingData(train, val, info), StepContext("train", tmp_path, info, seed=0))
    state = frozen.network.state_dict()
    for key, value in initial.state_dict().items():  # weights and batch-norm statistics alike
        assert torch.equal(state[key], value) == key.startswith("body."), key
    thawed = VisionTrainer(VisionConfig(**{**params, "epochs": 2}, freeze_backbone_epochs=1, backbone_lr_scale=0.1)).fit(
        TrainingData(train, val, info), StepContext("train", tmp_path, info, seed=0))
    assert not torch.equal(thawed.network.state_dict()["body.conv1.weight"], initial.state_dict()["body.conv1.weight"])
    assert thawed.extras["pretrained"]["skipped_head"] == []


def test_v2_augmentation_runs_on_the_fly_with_soft_targets(shapes: tuple, tmp_path: Path) -> None:
    train, val, info = shapes
    augmenter = V2Augmenter(ImageAugmentConfig(crop_scale=0.6, hflip=0.5, color_jitter=0.3, policy="randaugment",
                                               mixup_alpha=0.4, cutmix_alpha=1.0, noise_std=0.02))
    assert isinstance(augmenter, ImageAugmenter)
    augmentation = augmenter.image_augmentation(train.preprocessing, 10, StepContext("augment", tmp_path, info, seed=0))
    assert augmentation.sample is not None and augmentation.batch is not None
    image, _ = train.dataset()[0]
    torch.manual_seed(0)
    views = torch.stack([augmentation.sample(image) for _ in range(4)])
    assert views.shape == (4, *image.shape) and not torch.allclose(views[0], views[1])  # a new view each time
    labels = torch.arange(4)
    mixed, soft = augmentation.batch(views, labels)
    assert mixed.shape == views.shape and soft.shape == (4, 10)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and soft.max() < 1  # soft targets, summing to 1

    seen: list[torch.Tensor] = []
    mix = augmentation.batch

    def watch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = mix(x, y)
        seen.append(y)
        return x, y

    augmentation.batch = watch
    model = VisionTrainer(VisionConfig(**FAST, arch="mobilenet_v3_small")).fit(
        TrainingData(train, val, info, augmentation=augmentation), StepContext("train", tmp_path, info, seed=0))
    assert len(seen) == 2 and all(y.dim() == 2 for y in seen)  # every training batch, none of validation
    assert np.isfinite(model.history[0]["train_loss"]) and 0 <= model.metrics["val_accuracy"] <= 1

