"""Serving an image model: V1 {"image": {"b64": ...}} and V2 BYTES tensors, decoded by mlplat.images with the
model's ImagePreprocessing, batched like tabular rows; every bad image a 400 naming the instance and the reason.
In-process app and the real `mlplat serve` with tritonclient; hypothesis fuzzes the image bytes."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlplat.modeldir import LoadedModel
from mlplat.serving.image_requests import ImageSchema
from mlplat.serving.predictor import ServingOptions
from mlplat.serving.server import ServingApp, build_app
from mlplat.testing.image_model import png, shapes
from serving_server import running_server

MAX_IMAGES = 4


@pytest.fixture(scope="module")
def model(image_model_dir: Path) -> LoadedModel:
    return LoadedModel.load(image_model_dir)


@pytest.fixture(scope="module")
def pictures() -> tuple[list[bytes], np.ndarray]:
    pixels, labels = shapes(6, seed=11, size=16)
    return [png(p) for p in pixels], labels


@pytest.fixture(scope="module")
def served(image_model_dir: Path) -> Iterator[ServingApp]:
    yield build_app(image_model_dir, ServingOptions(max_request_images=MAX_IMAGES))


@pytest.fixture(scope="module")
def client(served: ServingApp) -> Iterator[TestClient]:
    with TestClient(served.app, raise_server_exceptions=False) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def expected(model: LoadedModel, encoded: list[bytes]) -> np.ndarray:
    import torch

    inputs, _ = ImageSchema(model.image_preprocessing, 100).decode_all(encoded, "x")
    return model.predict_proba_images(torch.from_numpy(inputs))


def encoded(mode: str, size: tuple[int, int] = (16, 16), fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


def test_v1_image_b64_predicts_as_the_network_does(client: TestClient, model: LoadedModel, pictures: Any) -> None:
    images, _ = pictures
    reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{"image": {"b64": b64(i)}} for i in images[:3]]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    np.testing.assert_allclose(body["probabilities"], expected(model, images[:3]), atol=1e-5)
    assert body["predictions"] == [model.class_names[k] for k in expected(model, images[:3]).argmax(1)]
    bare = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{"b64": b64(images[0])}]}).json()
    np.testing.assert_allclose(bare["probabilities"], body["probabilities"][:1], atol=1e-6)


def test_a_larger_grayscale_jpeg_is_converted_and_resized(client: TestClient, model: LoadedModel) -> None:
    image = encoded("L", (40, 30), "JPEG")
    reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{"image": {"b64": b64(image)}}]})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["probabilities"], expected(model, [image]), atol=1e-5)


def test_v2_json_bytes_of_base64_and_metadata(client: TestClient, model: LoadedModel, pictures: Any) -> None:
    images, _ = pictures
    meta = client.get(f"/v2/models/{model.name}").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    tensor = {"name": "image", "shape": [2], "datatype": "BYTES", "data": [b64(i) for i in images[:2]]}
    reply = client.post(f"/v2/models/{model.name}/infer", json={"inputs": [tensor]})
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, -1)), expected(model, images[:2]), atol=1e-5)


BIG = encoded("RGB", (3000, 3000))  # 9 Mpx of zeros: a few kB of PNG


@pytest.mark.parametrize(("instance", "reason", "message"), [
    ({"image": {"b64": "not base64!"}}, "image_base64", "instances[1]: not valid base64"),
    ({"image": {"b64": b64(b"\x89PNG\r\n\x1a\n garbage")}}, "image_undecodable", "instances[1]: not a decodable image"),
    ({"image": {"b64": b64(png(shapes(1, 3, 16)[0][0])[:300])}}, "image_truncated", "instances[1]: truncated"),
    ({"image": {"b64": b64(BIG)}}, "image_too_large", "instances[1]: 3000x3000 pixels exceeds the limit of 1000000"),
    ({"image": {"b64": b64(encoded("I;16"))}}, "image_channels", "instances[1]: mode I;16 cannot be converted"),
    ({"image": "abc"}, "shape", "instances[1] must be"),
    ({"image": {"b64": b64(png(shapes(1, 3, 16)[0][0]))}, "label": "ring"}, "shape", "instances[1] must be"),
    ([1, 2, 3], "shape", "instances[1] must be"),
])
def test_bad_images_are_400s_naming_the_instance(image_model_dir: Path, pictures: Any, instance: Any, reason: str,
                                                 message: str) -> None:
    from mlplat.modeldir import ModelDir
    from prometheus_client import REGISTRY

    # a copy of the model whose pixel limit is 1 Mpx, so the bomb stays a small test
    images, _ = pictures
    directory = ModelDir(image_model_dir)
    limit = directory.read().preprocessing.model_copy(update={"max_pixels": 1_000_000})
    small = Path(image_model_dir).parent / "limited"
    if not small.exists():
        from mlplat.modeldir import copy_model_dir

        copy_model_dir(image_model_dir, small)
        ModelDir(small).update(preprocessing=limit)
    served = build_app(small, ServingOptions(max_request_images=MAX_IMAGES))
    with TestClient(served.app, raise_server_exceptions=False) as client:
        before = REGISTRY.get_sample_value("mlplat_rejected_requests_total", {"model": served.model.name, "reason": reason}) or 0
        reply = client.post(f"/v1/models/{served.model.name}:predict",
                            json={"instances": [{"image": {"b64": b64(images[0])}}, instance]})
        after = REGISTRY.get_sample_value("mlplat_rejected_requests_total", {"model": served.model.name, "reason": reason})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]
    assert after == before + 1


def test_line_wrapped_base64_is_accepted(client: TestClient, model: LoadedModel) -> None:
    image = png(shapes(1, seed=8, size=64)[0][0])  # > 57 bytes: base64.encodebytes (like the `base64` CLI) wraps it
    wrapped = base64.encodebytes(image).decode()
    assert "\n" in wrapped.strip()
    reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{"image": {"b64": wrapped}}]})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["probabilities"], expected(model, [image]), atol=1e-5)


def test_too_many_images_and_bad_v2_tensors_are_400s(client: TestClient, model: LoadedModel, pictures: Any) -> None:
    images, _ = pictures
    too_many = client.post(f"/v1/models/{model.name}:predict", json={"instances": [{"b64": b64(images[0])}] * (MAX_IMAGES + 1)})
    assert too_many.status_code == 400 and f"the limit is {MAX_IMAGES}" in too_many.json()["error"]
    numeric = {"name": "image", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}
    reply = client.post(f"/v2/models/{model.name}/infer", json={"inputs": [numeric]})
    assert reply.status_code == 400 and "one BYTES input of encoded images" in reply.json()["error"]
    bad = {"name": "image", "shape": [2], "datatype": "BYTES", "data": [b64(images[0]), b64(b"nope")]}
    reply = client.post(f"/v2/models/{model.name}/infer", json={"inputs": [bad]})
    assert reply.status_code == 400 and "input 'image'[1]: not a decodable image" in reply.json()["error"]


def test_concurrent_image_requests_share_forward_passes(served: ServingApp, client: TestClient, pictures: Any) -> None:
    import asyncio

    images, _ = pictures
    model = served.model

    async def many() -> list[Any]:
        from kserve.protocol.infer_type import InferInput, InferRequest

        requests = []
        for i in range(6):
            tensor = InferInput("image", [1], "BYTES", [b64(images[i % len(images)])])
            requests.append(InferRequest(model.name, [tensor]))
        batches = [await model.preprocess(r) for r in requests]
        return await asyncio.gather(*(model.batcher(b.rows) for b in batches))

    from prometheus_client import REGISTRY

    count = REGISTRY.get_sample_value("mlplat_batch_rows_count", {"model": model.name}) or 0
    results = asyncio.run(many())
    passes = (REGISTRY.get_sample_value("mlplat_batch_rows_count", {"model": model.name}) or 0) - count
    assert len(results) == 6 and all(r.shape == (1, len(model.classes) + model.probe.dim + 2) for r in results)
    # [probabilities | embedding | brightness, contrast]
    assert passes < 6  # six queued requests, fewer forward passes


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PNG = png(np.full((8, 8, 3), 100, np.uint8))


@FUZZ
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda cut, flips: bytes(b ^ 0xFF if i in flips else b for i, b in enumerate(PNG[:cut])),
                                st.integers(0, len(PNG)), st.sets(st.integers(0, len(PNG) - 1), max_size=6))))
def test_fuzzed_image_bytes_never_answer_5xx(client: TestClient, model: LoadedModel, data: bytes) -> None:
    for body in ({"instances": [{"image": {"b64": b64(data)}}]},):
        reply = client.post(f"/v1/models/{model.name}:predict", json=body)
        assert reply.status_code in (200, 400), reply.text
        if reply.status_code == 400:
            assert reply.json()["error"].startswith("instances[0]: ")
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(data)]}
    assert client.post(f"/v2/models/{model.name}/infer", json={"inputs": [tensor]}).status_code in (200, 400)


def test_real_server_with_tritonclient_binary_bytes(image_model_dir: Path, model: LoadedModel, pictures: Any) -> None:
    import tritonclient.http as triton

    images, _ = pictures
    with running_server(image_model_dir, "--max-request-images", "3") as base:
        too_many = httpx.post(f"{base}/v1/models/{model.name}:predict", json={"instances": [{"b64": b64(images[0])}] * 4})
        assert too_many.status_code == 400 and "4 images in one request; the limit is 3" in too_many.json()["error"]
        client = triton.InferenceServerClient(base.removeprefix("http://"))
        try:
            tensor = triton.InferInput("image", [3], "BYTES")
            tensor.set_data_from_numpy(np.array(images[:3], dtype=np.object_), binary_data=True)
            result = client.infer(model.name, [tensor])
            np.testing.assert_allclose(result.as_numpy("probabilities"), expected(model, images[:3]), atol=1e-5)
            tensor.set_data_from_numpy(np.array([images[0], b"\x00garbage", images[1]], dtype=np.object_), binary_data=True)
            with pytest.raises(Exception, match=r"input 'image'\[1\]: not a decodable image"):
                client.infer(model.name, [tensor])
        finally:
            client.close()


def test_the_frozen_probe_answers_as_the_eager_network(model: LoadedModel, pictures: Any) -> None:
    import torch
    from mlplat.embeddings import EmbeddingProbe
    from mlplat.serving.image_requests import FrozenProbe, ImageForward, serving_probe

    shape = (model.image_preprocessing.channels, *model.image_preprocessing.size)
    probe = serving_probe(model.network, shape)
    assert isinstance(probe, FrozenProbe)  # a plain CNN traces
    images, _ = pictures
    X, _ = ImageSchema(model.image_preprocessing, 100).decode_all(images * 7, "x")  # 42 images: one batch size not tried at load
    for got, want in zip(probe(X), EmbeddingProbe(model.network)(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    class Branching(torch.nn.Module):  # data-dependent control flow: a trace would freeze one branch
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(int(np.prod(shape)), 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(1)
            return self.head(flat if bool(flat.mean() > 0) else -flat)

    assert isinstance(serving_probe(Branching().eval(), shape), EmbeddingProbe)  # refused, served eagerly
    outputs = ImageForward(model.network, model.image_preprocessing)(ImageSchema(model.image_preprocessing, 100).v1_images(
        {"instances": [{"b64": b64(i)} for i in images]})[0])
    probabilities, embedding, looks = ImageForward.split(outputs, len(model.class_names))
    _, stats = ImageSchema(model.image_preprocessing, 100).decode_all(images, "x")
    np.testing.assert_allclose(probabilities, expected(model, images), atol=1e-5)
    np.testing.assert_allclose(looks, stats[:, :2], atol=1e-6)


def test_uint8_decode_then_batch_normalization_equals_the_per_image_float_path(model: LoadedModel, pictures: Any) -> None:
    from mlplat import images as image_io
    from PIL import Image

    prep = model.image_preprocessing
    encoded_images = [*pictures[0], encoded("L", (40, 30), "JPEG")]
    X, _ = ImageSchema(prep, 100).decode_all(encoded_images, "x")
    for data, x in zip(encoded_images, X, strict=True):  # the arithmetic training's float path always did
        image = Image.open(io.BytesIO(data)).convert("RGB").resize(tuple(prep.size[::-1]), Image.Resampling.BILINEAR)
        floats = np.asarray(image, dtype=np.float32) / 255.0
        want = ((floats - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)).transpose(2, 0, 1)
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(image_io.decode(data, prep).numpy(), want)
