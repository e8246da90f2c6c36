"""Transfer learning: accuracy on 10 % of a target task's data, pretrained backbone vs from scratch.

    python benchmarks/transfer.py                  # resnet18, 32x32 generated shapes/textures (CPU)
    python benchmarks/transfer.py --arch mobilenet_v3_small --size 32

The source task (10 classes of filled shapes and textures) pretrains the `vision` trainer; its weights
are saved as safetensors. The target task (6 other shapes, drawn as outlines on another palette) then
trains on `--fraction` of its training images twice, with the same settings and preprocessing: from
scratch, and from the pretrained weights (`pretrained:`, the 10-class head skipped). Both are scored on
the same held-out target images (mlplat.testing.images.transfer_gain). Target: gain >= +10 points.

Not yet measured with the defaults. 2026-12-03, the test's configuration (tests/test_training_transfer.py:
resnet18 ImageNet stem at 16x16, 800 source images x 6 epochs, 40 target images x 10 epochs, 120
validation): source 0.763; target from scratch 0.158, pretrained 0.500: gain +34.2 points (PASS).
A far smaller run under load average ~16 (16x16,
300 source images x 3 epochs, 30 target images x 8 epochs, 90 validation): the source reached only
0.18 accuracy and the gain was +3.3 points (0.211 vs 0.178): pretraining that short teaches little.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from mlplat.testing.images import transfer_gain

TARGET_GAIN = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--stem", default="imagenet", choices=["auto", "small", "imagenet"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--source-images", type=int, default=1500)
    parser.add_argument("--target-images", type=int, default=1000, help="the target's training images (before --fraction)")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--freeze-epochs", type=int, default=5, help="fine-tuning: epochs with the pretrained backbone frozen")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    common = {"arch": args.arch, "stem": args.stem, "batch_size": 32, "lr": 2e-3, "checkpoint_every": 0,
              "early_stopping_patience": None, "device": args.device}
    print(f"arch={args.arch} stem={args.stem} size={args.size} source={args.source_images} target={args.target_images} "
          f"x {args.fraction} val={args.val_images} epochs={args.pretrain_epochs}/{args.epochs} threads={torch.get_num_threads()}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scores = transfer_gain(Path(tmp), size=args.size, n_source=args.source_images, n_target=args.target_images,
                               fraction=args.fraction, n_val=args.val_images, seed=args.seed,
                               pretrain_params={**common, "epochs": args.pretrain_epochs}, params={**common, "epochs": args.epochs},
                               finetune_params={"freeze_backbone_epochs": args.freeze_epochs})
    print(f"source task val accuracy {scores['source_val_accuracy']:.3f}; target trains on {scores['target_train_images']:.0f} images")
    print(f"target val accuracy: from scratch {scores['scratch_val_accuracy']:.3f} | pretrained {scores['pretrained_val_accuracy']:.3f}")
    verdict = "PASS" if scores["gain"] >= TARGET_GAIN else "MISS"
    print(f"gain = {100 * scores['gain']:+.1f} points   target >= +{100 * TARGET_GAIN:.0f}: {verdict}   "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
