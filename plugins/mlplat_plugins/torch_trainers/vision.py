"""torchvision backbones (ResNet, MobileNetV3, EfficientNet) for image classification, and transfer learning.

The network is `body` (the torchvision model, its classifier's last `nn.Linear` swapped for an identity)
then `head` (a new `nn.Linear` to the dataset's classes), so the input of the network's last
`nn.Linear` is its embedding (serving records it with a forward hook). Models are built with
`weights=None`: nothing is downloaded. `pretrained: PATH|URI` loads a safetensors file or a `.pth`
state dict (`torch.load(weights_only=True)`, never a pickle), in torchvision's key layout or mlplat's.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ImageSet, TrainingData
from mlplat.errors import SpecError
from torch import nn

from mlplat_plugins.torch_trainers import VisionConfig, engine
from mlplat_plugins.torch_trainers.trainer import TorchTrainer, network_outputs

# the torchvision module path of each architecture's final classifier layer
HEADS = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "mobilenet_v3_small": "classifier.3",
         "mobilenet_v3_large": "classifier.3", "efficientnet_b0": "classifier.1"}
SMALL_STEM_BELOW = 96  # `stem: auto`: inputs smaller than this (e.g. 32x32) keep full resolution in the stem


class VisionNet(nn.Module):
    def __init__(self, arch: str, n_classes: int, image_shape: list[int], stem: str) -> None:
        super().__init__()
        from mlplat import vision

        vision.load()
        from torchvision import models

        if arch not in HEADS:
            raise SpecError([("arch", f"unknown architecture {arch!r}; expected one of {sorted(HEADS)}")])
        model = getattr(models, arch)(weights=None)
        head = model.get_submodule(HEADS[arch])
        assert isinstance(head, nn.Linear)
        model.set_submodule(HEADS[arch], nn.Identity())
        _adapt_stem(model, arch, int(image_shape[0]), stem)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.body = model
        self.head = nn.Linear(head.in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat pixel rows (a pixel-column dataset)
            x = x.reshape(-1, *self.image_shape)
        return self.head(self.body(x))


def _adapt_stem(model: nn.Module, arch: str, channels: int, stem: str) -> None:
    """The first convolution takes `channels`; the `small` stem keeps small inputs at full resolution
    (3x3 stride-1 convolution, and no max-pool for a ResNet), as CIFAR networks do."""
    name = "conv1" if arch.startswith("resnet") else "features.0.0"
    conv = model.get_submodule(name)
    assert isinstance(conv, nn.Conv2d)
    if stem == "small":
        model.set_submodule(name, nn.Conv2d(channels, conv.out_channels, 3, 1, 1, bias=False))
        if arch.startswith("resnet"):
            model.set_submodule("maxpool", nn.Identity())
    elif channels != conv.in_channels:
        model.set_submodule(name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                                            conv.padding, bias=False))  # type: ignore[arg-type]


def build(architecture: Mapping[str, Any]) -> nn.Module:
    return VisionNet(str(architecture["arch"]), int(architecture["n_classes"]), list(architecture["image_shape"]),
                     str(architecture["stem"]))


def read_state_dict(location: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a `.pth` state dict, local or remote (fsspec)."""
    from mlplat.images import read_bytes

    try:
        data = read_bytes(location)
    except (OSError, ValueError) as exc:
        raise SpecError([("pretrained", f"cannot read {location}: {exc}")]) from None
    if location.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(data)
        except SafetensorError as exc:
            raise SpecError([("pretrained", f"{location} is not a safetensors file ({exc})")]) from None
    if not location.endswith((".pth", ".pt")):
        raise SpecError([("pretrained", f"{location}: expected a .safetensors file or a .pth state dict")])
    try:  # weights_only: tensors and plain containers only, no code runs while loading
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise SpecError([("pretrained", f"{location} is not a weights-only state dict ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})")]) from None
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise SpecError([("pretrained", f"{location} holds no state dict of tensors")])
    return dict(state)


def to_mlplat_keys(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """torchvision's key layout (`conv1.weight`, `fc.weight`) as this network's (`body.`, `head.`);
    a state dict already in mlplat's layout (e.g. an mlplat model's weights) is kept."""
    if all(k.startswith(("body.", "head.")) for k in state):
        return dict(state)
    head = HEADS[arch] + "."
    return {("head." + k[len(head):] if k.startswith(head) else "body." + k): v for k, v in state.items()}


def load_pretrained(network: nn.Module, state: Mapping[str, torch.Tensor], location: str) -> dict[str, Any]:
    """Load `state` into `network`; the head is skipped (and reported) when its shape differs, as when
    the checkpoint was trained for other classes. Any other missing, unexpected or misshapen key is an error."""
    target = network.state_dict()
    skipped = sorted(k for k in target if k.startswith("head.") and (k not in state or state[k].shape != target[k].shape))
    problems = [f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(target[k].shape)}"
                for k, v in state.items() if k in target and k not in skipped and v.shape != target[k].shape]
    problems += [f"{k}: missing from the checkpoint" for k in target if k not in state and k not in skipped]
    problems += [f"{k}: not in the network" for k in state if k not in target]
    if problems:
        raise SpecError([("pretrained", f"{location} does not fit the network: " + "; ".join(problems[:5])
                          + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))])
    network.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return {"source": location, "loaded_tensors": len(target) - len(skipped), "skipped_head": skipped}


class VisionTrainer(TorchTrainer):
    config_class = VisionConfig
    config: VisionConfig

    def __init__(self, config: VisionConfig) -> None:
        super().__init__(config)
        self._pretrained: dict[str, torch.Tensor] | None = None

    def architecture_of(self, data: TrainingData) -> dict[str, Any]:
        if isinstance(data.train, ImageSet):
            prep = data.train.preprocessing
            shape = [int(prep.channels), *(int(v) for v in prep.size)]
        elif data.info.image_shape:
            shape = [int(v) for v in data.info.image_shape]
        else:
            raise SpecError([("dataset", f"'vision' needs an image dataset; {data.info.name!r} has no images")])
        stem = self.config.stem
        if stem == "auto":
            stem = "small" if min(shape[1:]) < SMALL_STEM_BELOW else "imagenet"
        return {"type": "vision", "arch": self.config.arch, "n_classes": network_outputs(data.info),
                "image_shape": shape, "stem": stem}

    def prepare_network(self, network: nn.Module, context: StepContext) -> dict[str, Any]:
        location = self.config.pretrained
        if not location:
            return {}
        if self._pretrained is None:  # read once, used by every CV fold and the final model
            self._pretrained = to_mlplat_keys(read_state_dict(location), self.config.arch)
        info = load_pretrained(network, self._pretrained, location)
        context.log(f"pretrained: {info['loaded_tensors']} tensors from {location}"
                    + (f"; head skipped (other shape): {info['skipped_head']}" if info["skipped_head"] else ""))
        return {"pretrained": info}

    def schedule(self, network: nn.Module) -> engine.BackboneSchedule | None:
        c = self.config
        if c.freeze_backbone_epochs == 0 and c.backbone_lr_scale == 1.0:
            return None
        return engine.BackboneSchedule(network.get_submodule("body"), c.backbone_lr_scale, c.freeze_backbone_epochs)
