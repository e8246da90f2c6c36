"""`mlplat demo` on an image spec (pipelines/images_demo.yaml): predict test images sent as base64 PNGs, explain
one (attribution map and overlay), then clean traffic and windows perturbed by brightness, blur and noise,
each with its delayed labels, until the drift alerts rise."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlplat.cli.common import console

WINDOW = 300  # images per traffic window


def _encoded(location: str, perturb: Callable[[Any], Any] | None = None) -> str:
    from PIL import Image

    from mlplat.images import read_bytes

    data = read_bytes(location)
    if perturb is not None:
        image = perturb(Image.open(io.BytesIO(data)).convert("RGB"))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    return base64.b64encode(data).decode()


def perturbations() -> dict[str, Callable[[Any], Any]]:
    from PIL import Image, ImageEnhance, ImageFilter

    rng = np.random.default_rng(0)

    def noise(image: Any) -> Any:
        pixels = np.asarray(image, np.float32) + rng.normal(0, 90, (image.size[1], image.size[0], 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    return {"brightness x2.2": lambda image: ImageEnhance.Brightness(image).enhance(2.2),
            "blur r=2.5": lambda image: image.filter(ImageFilter.GaussianBlur(2.5)), "noise sigma=90": noise}


def image_demo(client: Any, name: str, splits: Any, run_dir: Path, next_evaluation: Callable[..., dict[str, Any]]) -> None:
    from mlplat.images import IMAGE_COLUMN

    classes = splits.info.classes
    test = splits.test.features[IMAGE_COLUMN].astype(str).tolist()
    body = {"instances": [{"image": {"b64": _encoded(location)}} for location in test[:3]]}
    reply = client.post(f"/v1/models/{name}:predict", json=body)
    reply.raise_for_status()
    truth = [classes[i] for i in splits.test.labels[:3]]
    console.print(f"[bold]predict[/] (3 PNGs as {{\"image\": {{\"b64\": ...}}}}) → {reply.json()['predictions']}  (truth: {truth})")
    started = time.perf_counter()
    reply = client.post(f"/v1/models/{name}:explain", json={"instances": body["instances"][:1]})
    if reply.status_code == 200:
        explanation = reply.json()["explanations"][0]
        overlay = run_dir / "explain-overlay.png"
        overlay.write_bytes(base64.b64decode(explanation["overlay_png_b64"]))
        console.print(f"[bold]explain[/] ({(time.perf_counter() - started) * 1000:.0f} ms, {explanation['method']}): class "
                      f"{explanation['class']}, attribution map {explanation['map_shape']}, overlay written to {overlay}")
    else:
        console.print(f"[yellow]explain[/] → HTTP {reply.status_code}: {reply.text[:200]}")
    pool, labels = splits.validation.features[IMAGE_COLUMN].astype(str).tolist(), splits.validation.labels
    rng = np.random.default_rng(0)
    phases: list[tuple[str, Callable[[Any], Any] | None]] = [("in-distribution", None)]
    for perturbation, change in perturbations().items():
        phases += [(f"{perturbation}, window {k}", change) for k in (1, 2, 3)]
    for phase, perturb in phases:
        index = rng.integers(0, len(pool), WINDOW)
        ids: list[str] = []
        for batch in np.array_split(index, WINDOW // 20):
            instances = [{"image": {"b64": _encoded(pool[i], perturb)}} for i in batch]
            ids += client.post(f"/v1/models/{name}:predict", json={"instances": instances}).json()["request_ids"]
        client.post(f"/v1/models/{name}/feedback", json={"ids": ids, "labels": [classes[i] for i in labels[index]]})
        summary = next_evaluation(client, name, time.time())
        prediction = summary.get("prediction") or {}
        console.print(f"[bold]{phase}[/]: {WINDOW} images + labels → drifted {summary.get('drifted_features', [])[:4]}, "
                      f"output KS p {prediction.get('p_value', float('nan')):.3g}; "
                      f"alerts: data drift {summary.get('data_drift_alert')}, prediction drift "
                      f"{summary.get('prediction_drift_alert')}; live accuracy "
                      f"{summary.get('live', {}).get('accuracy', float('nan')):.3f}")
    metrics = client.get("/metrics").text
    console.print("[bold]/metrics[/] (drift gauges, what the PrometheusRule alerts on):")
    for line in [line for line in metrics.splitlines() if line.startswith(("mlplat_data_drift_detected",
                 "mlplat_prediction_drift", "mlplat_feature_drift_score{", "mlplat_live_accuracy"))][:20]:
        console.print(f"  {line}", highlight=False)
