"""Image CNN trainer: image files (ImageSet batches [B, C, H, W] from a DataLoader), or flat pixel rows
(e.g. sklearn:digits, 8x8) reshaped to [C, H, W] inside the network."""

from __future__ import annotations

import math
from typing import Any

from mlplat.data import DatasetInfo

from mlplat_plugins.torch_trainers import CNNConfig
from mlplat_plugins.torch_trainers.networks import check_image_shape
from mlplat_plugins.torch_trainers.trainer import TorchTrainer, network_outputs


class CNNTrainer(TorchTrainer):
    config_class = CNNConfig
    config: CNNConfig

    def architecture(self, info: DatasetInfo) -> dict[str, Any]:
        c = self.config
        if info.image_files:  # the network input is the decoded image, [channels, *dataset.image.size]
            shape = check_image_shape(c.image_shape or info.image_shape, math.prod(info.image_shape or [0]))
        else:
            shape = check_image_shape(c.image_shape or info.image_shape, info.n_features)
        return {"type": "cnn", "image_shape": shape, "n_classes": network_outputs(info), "channels": list(c.channels),
                "hidden": c.hidden, "dropout": c.dropout, "norm": c.norm}
