"""Image explanations (captum IG / Occlusion maps and PNG overlays through :explain) and image drift
(embedding MMD, per-class output KS) on the small generated-shapes CNN."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlplat import registry
from mlplat.embeddings import EmbeddingProbe, drift_columns, drift_reference, drift_rows
from mlplat.manifest import ExplainerRef
from mlplat.modeldir import LoadedModel, ModelDir, copy_model_dir
from mlplat.serving.image_requests import IMAGE_STATS, ImageSchema
from mlplat.serving.predictor import ServingOptions
from mlplat.serving.server import build_app
from mlplat.testing.image_model import png, shapes


@pytest.fixture(scope="module")
def model(image_model_dir: Path) -> LoadedModel:
    return LoadedModel.load(image_model_dir)


def decoded(model: LoadedModel, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ImageSchema(model.image_preprocessing, 10_000).decode_all([png(p) for p in pixels], "test")


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_explain_returns_a_small_map_and_a_png_overlay(image_model_dir: Path, tmp_path: Path, method: str) -> None:
    from PIL import Image

    directory = tmp_path / "model"
    copy_model_dir(image_model_dir, directory)
    explainer = registry.create("explainer", "image_attribution", {"method": method, "map_size": 8}, step="explain")
    loaded = LoadedModel.load(directory)
    state = explainer.fit(loaded, np.empty((0, 0)), None)
    ModelDir(directory).update(explainer=ExplainerRef.of("explainer", "image_attribution", {"method": method, "map_size": 8},
                                                         config=state.config, arrays=[]))
    served = build_app(directory, ServingOptions())
    pixels = shapes(2, seed=4, size=16)[0]
    with TestClient(served.app, raise_server_exceptions=False) as client:
        reply = client.post(f"/v1/models/{loaded.name}:explain",
                            json={"instances": [{"image": {"b64": base64.b64encode(png(p)).decode()}} for p in pixels]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["method"] == "image_attribution" and len(body["explanations"]) == 2
    X, _ = decoded(loaded, pixels)
    import torch

    probabilities = loaded.predict_proba_images(torch.from_numpy(X))
    baseline = loaded.predict_proba_images(torch.zeros_like(torch.from_numpy(X)))
    for i, explanation in enumerate(body["explanations"]):
        k = int(probabilities[i].argmax())
        assert explanation["class"] == loaded.class_names[k] and explanation["map_shape"] == [8, 8]
        attribution = np.asarray(explanation["attribution_map"])
        assert attribution.shape == (8, 8) and np.abs(attribution).sum() > 0
        if method == "integrated_gradients":  # completeness survives summing over channels and pooling
            assert attribution.sum() == pytest.approx(probabilities[i, k] - baseline[i, k], abs=0.05)
        overlay = Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png_b64"])))
        assert overlay.format == "PNG" and overlay.size == (16, 16)


def test_penultimate_embedding_is_the_last_linear_input(model: LoadedModel) -> None:
    import torch

    X, _ = decoded(model, shapes(3, seed=2, size=16)[0])
    probabilities, embedding = EmbeddingProbe(model.network)(X)
    head = model.network.head
    np.testing.assert_allclose(torch.softmax(head(torch.from_numpy(embedding)), 1).detach().numpy(), probabilities, atol=1e-5)


def test_image_drift_flags_noise_and_not_clean_windows(model: LoadedModel) -> None:
    detector = registry.create("drift_detector", "image_drift", {"permutations": 300}, step="test")
    state = detector.fit(drift_reference(model), None)
    probe = EmbeddingProbe(model.network)
    columns = drift_columns(probe.dim, len(model.class_names), IMAGE_STATS)

    def window(pixels: np.ndarray) -> pd.DataFrame:
        X, stats = decoded(model, pixels)
        rows, predicted = drift_rows(probe, X, stats)
        return pd.DataFrame(rows, columns=columns).assign(__prediction__=predicted)

    pixels = shapes(150, seed=33, size=16)[0]
    clean = detector.detect(state, window(pixels))
    assert not clean.dataset_drift and not clean.prediction.drifted
    noisy = np.clip(pixels + np.random.default_rng(0).normal(0, 90, pixels.shape), 0, 255).astype(np.uint8)
    drifted = detector.detect(state, window(noisy))
    assert drifted.dataset_drift and drifted.prediction.drifted
    brightness = {f.feature: f for f in drifted.features}["contrast"]
    assert brightness.drifted  # noise raises the pixel std


def test_an_image_is_explained_by_a_separate_explainer_server(image_model_dir: Path, tmp_path: Path) -> None:
    """KServe's explainer component: `mlplat serve --explainer` beside the predictor. The explainer attributes with
    its own copy of the network and asks the predictor for predictions, sending the images as PNGs, marked so that
    the predictor's drift window never records them."""
    import re

    import httpx
    from PIL import Image
    from serving_server import running_server

    directory = tmp_path / "model"
    copy_model_dir(image_model_dir, directory)
    params = {"method": "occlusion", "map_size": 4}
    loaded = LoadedModel.load(directory)
    state = registry.create("explainer", "image_attribution", params, step="explain").fit(loaded, np.empty((0, 0)), None)
    ModelDir(directory).update(explainer=ExplainerRef.of("explainer", "image_attribution", params, config=state.config, arrays=[]))
    token = tmp_path / "token"
    token.write_text("image-explainer-token")
    # 32x32 images for a 16x16 model: the explainer resizes them as the predictor would, then forwards them losslessly
    body = {"instances": [{"image": {"b64": base64.b64encode(png(p)).decode()}} for p in shapes(3, seed=6, size=32)[0]]}

    def recorded(base: str) -> float:
        return float(re.findall(r'mlplat_monitor_records_total\{model="[\w-]+"\} ([\d.]+)', httpx.get(f"{base}/metrics").text)[0])

    with running_server(directory, "--token-file", str(token)) as predictor:
        direct = httpx.post(f"{predictor}/v1/models/{loaded.name}:predict", json=body, timeout=60).json()
        before = recorded(predictor)
        with running_server(directory, "--explainer", "--predictor-url", predictor, "--token-file", str(token)) as explainer:
            reply = httpx.post(f"{explainer}/v1/models/{loaded.name}:explain", json=body, timeout=120)
            assert reply.status_code == 200, reply.text
            explanations = reply.json()["explanations"]
            assert [e["class"] for e in explanations] == direct["predictions"]
            for explanation in explanations:
                assert explanation["map_shape"] == [4, 4] and np.asarray(explanation["attribution_map"]).shape == (4, 4)
                overlay = Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png_b64"])))
                height, width = loaded.image_preprocessing.size  # the overlay is drawn at the model's input size
                assert overlay.format == "PNG" and overlay.size == (width, height)
            forwarded = httpx.post(f"{explainer}/v1/models/{loaded.name}:predict", json=body, timeout=60)
            assert forwarded.status_code == 200, forwarded.text
            np.testing.assert_allclose(forwarded.json()["probabilities"], direct["probabilities"], atol=1e-5)
            bad = httpx.post(f"{explainer}/v1/models/{loaded.name}:explain", json={"instances": [{"image": {"b64": "!!"}}]})
            assert bad.status_code == 400 and "instances[0]: not valid base64" in bad.json()["error"]
        assert recorded(predictor) == before  # the explainer's forwarded images never reached the drift window
        assert recorded(predictor) >= len(body["instances"])  # while the direct request was recorded
