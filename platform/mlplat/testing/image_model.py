"""A small image model directory written directly (no pipeline run), for serving, explain and drift tests
and the image benchmarks: generated 32x32 RGB shapes, the `cnn` trainer's network, a few hundred steps.

Classes: a filled square, a ring, horizontal stripes, vertical stripes; random colours, positions and sizes.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

CLASSES = ["square", "ring", "hstripes", "vstripes"]
SIZE = 32


def shapes(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, size, size, 3], labels [n]) of the four shape classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        background, colour = rng.uniform(0, 0.4, 3), rng.uniform(0.6, 1.0, 3)
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.18, size * 0.3)
        period = rng.integers(3, 6)
        if label == 0:
            mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
        elif label == 1:
            d = np.hypot(yy - cy, xx - cx)
            mask = (d < r) & (d > r * 0.55)
        elif label == 2:
            mask = (yy // period) % 2 == 0
        else:
            mask = (xx // period) % 2 == 0
        image = np.where(mask[..., None], colour, background) + rng.normal(0, 0.03, (size, size, 3))
        out[i] = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return out, labels


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_model(directory: Path, *, steps: int = 150, seed: int = 0, name: str = "shapes", size: int = SIZE,
                      train_images: int = 1024, reference_images: int = 512,
                      channels: tuple[int, ...] = (8, 16), hidden: int = 32) -> Path:
    """Train the `cnn` trainer's network on generated shapes and write a loadable image model directory
    (ImagePreprocessing, one "image" feature, reference.parquet of its drift features)."""
    import torch

    from mlplat import registry
    from mlplat.manifest import Feature, ImagePreprocessing, Metrics, ModelManifest, PluginRef
    from mlplat.modeldir import ModelDir

    torch.manual_seed(seed)
    pixels, labels = shapes(train_images, seed, size)
    mean = (pixels / 255.0).reshape(-1, 3).mean(0)
    std = (pixels / 255.0).reshape(-1, 3).std(0)
    preprocessing = ImagePreprocessing(size=[size, size], channels=3, mean=mean.tolist(), std=std.tolist())
    X = torch.from_numpy(((pixels / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    y = torch.from_numpy(labels)
    architecture = {"type": "cnn", "image_shape": [3, size, size], "n_classes": len(CLASSES),
                    "channels": list(channels), "hidden": hidden}
    trainer = registry.create("trainer", "cnn", {}, step="train")
    network = trainer.build_network(architecture)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    network.train()
    for _ in range(steps):
        batch = torch.randint(0, len(X), (32,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(X[batch]), y[batch]).backward()
        optimizer.step()
    network.eval()
    model_dir = ModelDir(Path(directory))
    manifest = ModelManifest(
        name=name, label="shape", classes=CLASSES, image_shape=[3, size, size], preprocessing=preprocessing,
        features=[Feature(name="image", dtype="image", kind="image")],
        trainer=PluginRef.of("trainer", "cnn", {}), architecture=architecture, metrics=Metrics(),
        seed=seed, created_at=time.time())
    model_dir.write_weights(network)
    model_dir.write(manifest)
    # the reference as the train step writes it: image locations (PNGs beside the model) and predicted classes
    import pandas as pd

    from mlplat.contracts.drift_detector import PREDICTION_COLUMN
    from mlplat.embeddings import drift_reference
    from mlplat.images import IMAGE_COLUMN
    from mlplat.modeldir import LoadedModel

    loaded = LoadedModel.load(model_dir)
    folder = model_dir.path.parent / f"{model_dir.path.name}-reference-images"
    folder.mkdir(parents=True, exist_ok=True)
    locations = []
    for i, image in enumerate(shapes(reference_images, seed + 1, size)[0]):
        locations.append(str(folder / f"{i}.png"))
        Path(locations[-1]).write_bytes(png(image))
    reference = pd.DataFrame({IMAGE_COLUMN: locations})
    reference[PREDICTION_COLUMN] = loaded.predict_proba_files(locations).argmax(1)
    reference.to_parquet(model_dir.reference, index=False)
    drift_reference(loaded)  # drift_features.parquet, as the drift step writes it
    return model_dir.path
