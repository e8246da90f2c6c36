"""Fuzzing the predictor's V1 and V2 bodies in-process (hypothesis, bounded): never a 5xx, and never a 200
for a body an independent oracle calls invalid."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlplat.serving.predictor import ServingOptions
from mlplat.serving.server import ServingApp, build_app

WIDTH, MAX_ROWS = 30, 5
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT64": (-(2 ** 63), 2 ** 63 - 1), "UINT64": (0, 2 ** 64 - 1)}
DATATYPES = ["FP32", "FP64", "INT8", "UINT8", "INT64", "UINT64", "FP16", "BYTES", "BOOL", "fp32", ""]

numbers = st.one_of(st.integers(-(2 ** 65), 2 ** 65), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.7, 300, -1000, 2 ** 64, 1e39, 1.0]))
json_values = st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=20)


@pytest.fixture(scope="module")
def served(trained_model_dir: Path) -> Iterator[ServingApp]:
    yield build_app(trained_model_dir, ServingOptions(max_request_rows=MAX_ROWS))


@pytest.fixture(scope="module")
def client(served: ServingApp) -> Iterator[TestClient]:
    with TestClient(served.app, raise_server_exceptions=False) as c:
        yield c


def finite_float32(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) <= 3.4e38


def valid_v1(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        return False
    rows = body["instances"]
    return 1 <= len(rows) <= MAX_ROWS and all(
        isinstance(r, list) and len(r) == WIDTH and all(finite_float32(v) for v in r) for r in rows)


def valid_v2(tensor: dict[str, Any]) -> bool:
    datatype, shape, data = tensor["datatype"], tensor["shape"], tensor["data"]
    if datatype not in ("FP32", "FP64", *RANGES) or len(shape) != 2 or shape[1] != WIDTH:
        return False
    if not 1 <= shape[0] <= MAX_ROWS or len(data) != shape[0] * WIDTH:
        return False
    if datatype in RANGES:
        low, high = RANGES[datatype]
        # integers in range; an integral float (3.0) is an integer too (v2_decoding's contract)
        return all((type(v) is int or (type(v) is float and v.is_integer())) and low <= v <= high for v in data)
    return all(finite_float32(v) for v in data)


@FUZZ
@given(body=st.one_of(json_values, st.fixed_dictionaries({"instances": json_values}),
                      st.fixed_dictionaries({"instances": st.lists(st.lists(numbers, min_size=28, max_size=31),
                                                                     max_size=MAX_ROWS + 1)})))
def test_v1_bodies(client: TestClient, served: ServingApp, body: Any) -> None:
    reply = client.post(f"/v1/models/{served.model.name}:predict", json=body)
    assert reply.status_code < 500, reply.text
    assert (reply.status_code == 200) == valid_v1(body), (body, reply.status_code, reply.text)


@FUZZ
@given(tensor=st.fixed_dictionaries({
    "name": st.just("input-0"), "datatype": st.sampled_from(DATATYPES),
    "shape": st.lists(st.integers(-1, 40), min_size=1, max_size=3) | st.just([1, WIDTH]),
    "data": st.lists(numbers | st.sampled_from([None, "x", True]), min_size=0, max_size=2 * WIDTH + 1)
    | st.lists(st.integers(0, 3), min_size=WIDTH, max_size=WIDTH)}))
def test_v2_bodies(client: TestClient, served: ServingApp, tensor: dict[str, Any]) -> None:
    reply = client.post(f"/v2/models/{served.model.name}/infer", json={"inputs": [tensor]})
    assert reply.status_code < 500, reply.text
    assert (reply.status_code == 200) == valid_v2(tensor), (tensor, reply.status_code, reply.text)


@FUZZ
@given(header=st.binary(max_size=40), payload=st.binary(max_size=200), length=st.one_of(st.integers(-5, 300).map(str),
                                                                                         st.text(max_size=4)))
def test_v2_binary_bodies(client: TestClient, served: ServingApp, header: bytes, payload: bytes, length: str) -> None:
    reply = client.post(f"/v2/models/{served.model.name}/infer", content=header + payload,
                        headers={"inference-header-content-length": length.encode("utf-8", "replace"),
                                 "content-type": "application/octet-stream"})
    assert reply.status_code < 500, reply.text
    assert reply.status_code != 200, reply.text  # random bytes are no valid header
