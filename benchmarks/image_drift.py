"""Image drift: power and specificity of the image_drift detector on a CNN trained on generated shapes.

Per perturbation (brightness, blur, noise) one window of requests goes through the serving decode path
(PNG -> mlplat.images -> embedding hook) and the detector. Targets:
- a perturbation that costs >= 10 accuracy points is detected (output drift, the critical signal) within one window;
- <= 1 % false alarms (any drift verdict) over 200 clean windows;
- a perturbation that costs no accuracy raises no output-drift (critical) alert.

    .venv/bin/python benchmarks/image_drift.py [--windows 200] [--window-rows 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def perturbations() -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    from PIL import Image, ImageFilter

    def brightness(delta: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        return lambda x, rng: np.clip(x.astype(np.float32) + 255 * delta, 0, 255).astype(np.uint8)

    def blur(radius: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        return lambda x, rng: np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(radius)))

    def noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        return lambda x, rng: np.clip(x + rng.normal(0, 255 * sigma, x.shape), 0, 255).astype(np.uint8)

    return {"brightness +0.02 (harmless)": brightness(0.02), "brightness +0.45": brightness(0.45),
            "blur r=2.5": blur(2.5), "noise sigma=0.35": noise(0.35), "noise sigma=0.01 (harmless)": noise(0.01)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--window-rows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args()

    from mlplat import registry
    from mlplat.embeddings import EmbeddingProbe, drift_columns, drift_reference, drift_rows
    from mlplat.modeldir import LoadedModel
    from mlplat.serving.image_requests import IMAGE_STATS, ImageSchema
    from mlplat.testing.image_model import png, shapes, write_image_model

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mlplat-image-drift-"))
    model_dir = write_image_model(work / "model", steps=args.steps, reference_images=400)
    loaded = LoadedModel.load(model_dir)
    detector = registry.create("drift_detector", "image_drift", {}, step="benchmark")
    state = detector.fit(drift_reference(loaded), None)
    probe = EmbeddingProbe(loaded.network)
    columns = drift_columns(probe.dim, len(loaded.class_names), IMAGE_STATS)
    schema = ImageSchema(loaded.image_preprocessing, max_images=10_000)

    def window(pixels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        X, stats = schema.decode_all([png(p) for p in pixels], "benchmark")
        rows, predicted = drift_rows(probe, X, stats)
        frame = pd.DataFrame(rows, columns=columns)
        frame["__prediction__"] = predicted
        return frame, predicted

    pool_pixels, pool_labels = shapes(2000, seed=100)
    pool, pool_predicted = window(pool_pixels)
    clean_accuracy = float((pool_predicted == pool_labels).mean())
    print(f"model trained and reference fitted in {time.perf_counter() - started:.0f} s; clean accuracy {clean_accuracy:.3f}")

    rng = np.random.default_rng(0)
    false_data = false_output = 0
    t = time.perf_counter()
    for _ in range(args.windows):
        rows = rng.choice(len(pool), args.window_rows, replace=False)
        result = detector.detect(state, pool.iloc[rows])
        false_data += result.dataset_drift
        false_output += bool(result.prediction and result.prediction.drifted)
    any_rate = max(false_data, false_output) / args.windows
    print(f"clean windows: {args.windows} x {args.window_rows} rows, {(time.perf_counter() - t) / args.windows * 1000:.0f} ms each; "
          f"embedding alarms {false_data}, output alarms {false_output}")
    lines = [("false alarms over clean windows <= 1%", (false_data + false_output) / args.windows <= 0.01,
              f"{(false_data + false_output) / args.windows:.2%} (embedding {false_data}, output {false_output}; max {any_rate:.2%})")]

    pixels, labels = shapes(args.window_rows, seed=200)
    for name, perturb in perturbations().items():
        perturbed = np.stack([perturb(p, rng) for p in pixels])
        frame, predicted = window(perturbed)
        accuracy = float((predicted == labels).mean())
        result = detector.detect(state, frame)
        output = bool(result.prediction and result.prediction.drifted)
        cost = clean_accuracy - accuracy
        print(f"{name:32s} accuracy {accuracy:.3f} (cost {cost * 100:+.1f} pts)  embedding drift {result.dataset_drift} "
              f"(p={result.features[0].p_value:.3g})  output drift {output} "
              f"(p={result.prediction.p_value if result.prediction else 1:.3g})")
        if cost >= 0.10:
            lines.append((f"{name}: costs >= 10 pts, detected in one window", output, f"cost {cost * 100:.1f} pts"))
        elif abs(cost) < 0.02:
            lines.append((f"{name}: costs no accuracy, no critical (output) alert", not output, f"cost {cost * 100:.1f} pts"))
    print()
    for line, passed, detail in lines:
        print(f"{'PASS' if passed else 'MISS'}  {line}: {detail}")


if __name__ == "__main__":
    main()
