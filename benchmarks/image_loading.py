"""Image loading benchmark: images/s of mlplat's data path against a hand-written torchvision one.

mlplat:   mlplat.images.ImageFiles over the image paths + mlplat.images.loader (what the cnn trainer uses)
baseline: torchvision.datasets.ImageFolder with Resize, ToTensor, Normalize + torch DataLoader

Both read the same generated folder (mlplat.datasets.shapes, 32x32 RGB PNGs), decode with PIL, resize
to the same size, scale to [0, 1] and normalize with the same statistics, with the same batch size,
shuffle, worker count (0 and 2) and persistent workers. Each round times one epoch of each path,
alternating which goes first; the ratio per worker count is the median over rounds of mlplat's
images/s over the baseline's, measured in the same run. Target (issue 16): ratio >= 0.95.

Run: .venv/bin/python benchmarks/image_loading.py [--quick] [--per-class N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlplat import vision
from mlplat.datasets.shapes import write_shapes
from mlplat.images import ImageFiles, fit_preprocessing, loader

TARGET = 0.95


def epoch_rate(batches: Any) -> float:
    """Images per second over one pass of a DataLoader."""
    started, seen = time.perf_counter(), 0
    for images, _ in batches:
        seen += len(images)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    per_class, rounds = (60, 3) if args.quick else (args.per_class, args.rounds)
    tv = vision.load()
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory(prefix="mlplat-image-bench-") as tmp:
        root = Path(tmp) / "shapes"
        write_shapes(root, per_class=per_class, seed=0)
        folder = datasets.ImageFolder(str(root))
        locations = [path for path, _ in folder.samples]
        labels = np.array([label for _, label in folder.samples])
        prep = fit_preprocessing(locations, size=[32, 32], channels=3)
        baseline_set = datasets.ImageFolder(str(root), transform=transforms.Compose([
            transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize(prep.mean, prep.std)]))
        ours_set = ImageFiles(locations, labels, prep)
        a, b = ours_set[5][0], baseline_set[5][0]
        assert torch.allclose(a, b, atol=1e-5), "the two paths must produce the same tensors"
        print(f"torchvision {tv.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
              f"{len(locations)} images 32x32 RGB, batch {args.batch_size}, {rounds} rounds")
        lines = []
        for workers in (0, 2):
            ours = loader(ours_set, batch_size=args.batch_size, shuffle=True, workers=workers, seed=0)
            generator = torch.Generator().manual_seed(0)
            baseline = torch.utils.data.DataLoader(baseline_set, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                                   pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                                   generator=generator)
            epoch_rate(ours), epoch_rate(baseline)  # warm up: start the workers, fill the page cache
            ratios, ours_rates, base_rates = [], [], []
            for r in range(rounds):
                first, second = (ours, baseline) if r % 2 == 0 else (baseline, ours)
                rates = {id(first): epoch_rate(first), id(second): epoch_rate(second)}
                ours_rates.append(rates[id(ours)])
                base_rates.append(rates[id(baseline)])
                ratios.append(rates[id(ours)] / rates[id(baseline)])
            ratio = statistics.median(ratios)
            print(f"workers={workers}: mlplat {statistics.median(ours_rates):8.0f} img/s, "
                  f"torchvision ImageFolder {statistics.median(base_rates):8.0f} img/s, ratio {ratio:.3f} "
                  f"(rounds {min(ratios):.3f}..{max(ratios):.3f})")
            lines.append((workers, ratio))
            del ours, baseline
        for workers, ratio in lines:
            print(f"{'PASS' if ratio >= TARGET else 'MISS'} image loading, workers={workers}: {ratio:.3f}x the torchvision "
                  f"baseline (target >= {TARGET}x)")


if __name__ == "__main__":
    main()
