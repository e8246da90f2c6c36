"""Label noise in images: out-of-fold class probabilities from models that see pooled pixels (the tabular
detector's forest, logistic regression and k-NN) and from one that sees shapes (the platform's `cnn` network,
`torch_trainers.networks.CNN` with `CNNConfig`'s defaults, a few epochs per fold on images shrunk to a small
size), combined as the tabular ensemble is (the members within `ENSEMBLE_TOLERANCE` of the best out-of-fold
accuracy are averaged), then the tabular validator's confident learning.

Pooled pixels tell colours and coarse layouts apart but not a square from its outline anywhere in the frame;
the CNN's convolutions and max-pools do. The CNN trains for few epochs so that it has no time to memorize
the flipped labels (their out-of-fold probabilities are what confident learning reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlplat_plugins.image_validation import ImageValidatorConfig
from mlplat_plugins.tabular_validation.label_noise import NoiseResult, combine_members, confident_learning, out_of_fold_members

CNN_BATCH = 32
CNN_LR = 3e-3
# few images: more epochs, up to this many steps (the held-out fold's labels are never fitted, so memorizing the
# fit folds' flips costs little; too few steps and the CNN had not learnt 3 shapes from 100 images)
CNN_MIN_STEPS = 500
CNN_SHIFT = 2  # random shifts of up to this many pixels per batch: a shape means the same anywhere (x2 accuracy gain on noisy labels)


@dataclass
class ImageNoise:
    members: list[str]  # the members averaged
    accuracy: float  # out-of-fold accuracy of the averaged probabilities on the given labels
    member_accuracy: dict[str, float]
    probabilities: dict[str, np.ndarray]  # out-of-fold probabilities per member
    result: NoiseResult | None  # None: not assessed (accuracy under config.min_label_noise_accuracy)


def shrunk(images: np.ndarray, size: int) -> np.ndarray:
    """[N, C, H, W] average-pooled to at most size x size (never enlarged)."""
    import torch

    side = min(size, images.shape[-2], images.shape[-1])
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(images, dtype=torch.float32), side)
    return pooled.numpy()


def detect(images: np.ndarray, y: np.ndarray, n_classes: int, config: ImageValidatorConfig, seed: int) -> ImageNoise:
    """Suspect positions into `images` ([N, C, H, W] float pixels) whose label `y` the ensemble doubts."""
    counts = np.bincount(y, minlength=n_classes)
    folds = min(5, int(counts[counts > 0].min()))
    pooled = shrunk(images, config.label_noise_grid).reshape(len(y), -1).astype(np.float64)
    members = out_of_fold_members(pooled, y, n_classes, "ensemble", folds, seed)
    if config.label_noise_cnn:
        members["cnn"] = out_of_fold_cnn(shrunk(images, config.label_noise_cnn_size), y, n_classes, folds, seed,
                                         config.label_noise_cnn_epochs, config.label_noise_cnn_max_images)
    proba, kept = combine_members(members, y)
    accuracy = float((proba.argmax(1) == y).mean())
    member_accuracy = {name: round(float((p.argmax(1) == y).mean()), 4) for name, p in members.items()}
    result = confident_learning(proba, y) if accuracy >= config.min_label_noise_accuracy else None
    return ImageNoise(kept, accuracy, member_accuracy, members, result)


def out_of_fold_cnn(images: np.ndarray, y: np.ndarray, n_classes: int, folds: int, seed: int, epochs: int,
                    max_images: int) -> np.ndarray:
    """Each image's softmax from a CNN trained on the other folds (at most `max_images` of them, a seeded sample)."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    proba = np.zeros((len(y), n_classes))
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small gains nothing from more threads; on shared cores it lost 5x to contention
    try:
        for fit_idx, held_idx in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(images, y):
            if len(fit_idx) > max_images:
                fit_idx = rng.choice(fit_idx, max_images, replace=False)
            proba[held_idx] = _fit_predict_cnn(images[fit_idx], y[fit_idx], images[held_idx], n_classes, seed, epochs)
    finally:
        torch.set_num_threads(threads)
    return proba


def _fit_predict_cnn(X: np.ndarray, y: np.ndarray, X_new: np.ndarray, n_classes: int, seed: int, epochs: int) -> np.ndarray:
    import torch

    from mlplat_plugins.torch_trainers import CNNConfig
    from mlplat_plugins.torch_trainers.networks import CNN

    torch.manual_seed(seed)
    mean, std = X.mean((0, 2, 3), keepdims=True), X.std((0, 2, 3), keepdims=True) + 1e-6  # per channel, from the fit images
    xt, yt = torch.as_tensor((X - mean) / std), torch.as_tensor(y, dtype=torch.int64)
    defaults = CNNConfig()
    net = CNN(list(X.shape[1:]), n_classes, defaults.channels, defaults.hidden, defaults.dropout, defaults.norm)
    optimizer = torch.optim.AdamW(net.parameters(), lr=CNN_LR, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    steps_per_epoch = -(-len(yt) // CNN_BATCH)
    for _ in range(max(epochs, -(-CNN_MIN_STEPS // steps_per_epoch))):
        order = torch.randperm(len(yt), generator=generator)
        for start in range(0, len(yt), CNN_BATCH):
            batch = order[start : start + CNN_BATCH]
            if len(batch) < 2:  # batch norm needs two images
                continue
            shift = torch.randint(-CNN_SHIFT, CNN_SHIFT + 1, (2,), generator=generator).tolist()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.roll(xt[batch], shift, (2, 3))), yt[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor((X_new - mean) / std)), 1).double().numpy()
