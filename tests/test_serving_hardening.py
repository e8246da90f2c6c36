"""Serving against hostile clients (issue 14): admin routes off by default, readiness that follows
the model, bounded metrics labels, strict V2 decoding, bounded ids and request sizes, cheap rejections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlplat.modeldir import LoadedModel
from mlplat.serving.predictor import ServingOptions
from mlplat.serving.server import ServingApp, build_app


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> LoadedModel:
    return LoadedModel.load(trained_model_dir)


@pytest.fixture(scope="module")
def served(trained_model_dir: Path) -> Iterator[ServingApp]:
    yield build_app(trained_model_dir, ServingOptions(max_request_rows=50))


@pytest.fixture(scope="module")
def client(served: ServingApp) -> Iterator[TestClient]:
    with TestClient(served.app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def row(model: LoadedModel) -> list[float]:
    return np.random.default_rng(0).normal(size=len(model.feature_names)).tolist()


# ---- 1. admin routes and readiness -----------------------------------------------------------------

def test_repository_routes_are_off_by_default(client: TestClient, model: LoadedModel, row: list[float]) -> None:
    for verb in ("unload", "load"):
        reply = client.post(f"/v2/repository/models/{model.name}/{verb}")
        assert reply.status_code == 404, (verb, reply.text)
    assert client.post("/v2/repository/index").status_code == 404
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post(f"/v1/models/{model.name}:predict", json={"instances": [row]}).status_code == 200


def test_with_admin_unload_makes_the_server_not_ready_and_load_restores_it(trained_model_dir: Path, model: LoadedModel,
                                                                             row: list[float]) -> None:
    served = build_app(trained_model_dir, ServingOptions(), enable_model_admin=True)
    with TestClient(served.app, raise_server_exceptions=False) as c:
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get(f"/v2/models/{model.name}/ready").status_code == 200
        assert c.post(f"/v2/repository/models/{model.name}/unload").status_code == 200
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get(f"/v2/models/{model.name}/ready").status_code == 503
        assert c.post(f"/v1/models/{model.name}:predict", json={"instances": [row]}).status_code == 503  # not ready
        assert c.post(f"/v2/repository/models/{model.name}/load").status_code == 200
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.post(f"/v1/models/{model.name}:predict", json={"instances": [row]}).status_code == 200
        assert c.post("/v2/repository/models/other/load").status_code == 503


def test_a_stopped_model_is_not_ready(trained_model_dir: Path) -> None:
    served = build_app(trained_model_dir, ServingOptions())
    with TestClient(served.app, raise_server_exceptions=False) as c:
        assert c.get("/v2/health/ready").status_code == 200
        served.model.stop()
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get(f"/v2/models/{served.model.name}/ready").status_code == 503


# ---- 2. metrics cardinality --------------------------------------------------------------------------

def series(metrics: str) -> set[str]:
    """The labelled series of a Prometheus text page, without their values."""
    return {line.rsplit(" ", 1)[0] for line in metrics.splitlines() if not line.startswith("#")}


def test_made_up_model_names_do_not_grow_metrics(client: TestClient, model: LoadedModel, row: list[float]) -> None:
    import secrets

    def scrape() -> str:
        return client.get("/metrics").text

    for path in ("/v1/models/warmup:predict", "/v2/models/warmup/infer", "/v1/models/warmup:explain",
                 "/v2/models/warmup/ready", "/v1/models/warmup:bogus"):  # every label combination once
        client.post(path, json={"instances": [row]})
        client.get(path)
    scrape()  # the scrape's own series
    before = scrape()
    templates = ("/v1/models/{}:predict", "/v2/models/{}/infer", "/v1/models/{}:explain", "/v2/models/{}/ready",
                 "/v1/models/m:{}", "/v2/models/{}/versions/{}/infer")
    for i in range(10_000):
        name = secrets.token_hex(8)
        path = templates[i % len(templates)].format(name, name)
        reply = client.get(path) if "ready" in path else client.post(path, json={"instances": [row]})
        assert reply.status_code < 500, (path, reply.text)
    after = scrape()
    print(f"/metrics: {len(before)} bytes before, {len(after)} bytes after 10,000 random model names")
    assert series(after) - series(before) == set()
    assert len(after) <= len(before) * 1.05  # counter values grow a few digits; no new series
    assert 'model="_unknown"' in after and name not in after


# ---- 5. cheap rejections -----------------------------------------------------------------------------

def test_a_rejection_logs_one_rate_limited_line_without_traceback(client: TestClient, model: LoadedModel,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import time

    from mlplat.serving.guard import REJECTION_LOG
    from prometheus_client import REGISTRY

    suppressed = REGISTRY.get_sample_value("mlplat_rejection_log_suppressed_total") or 0.0
    bad = [("/v1/models/nope:predict", {"instances": [[1.0]]}), (f"/v1/models/{model.name}:predict", {"instances": [[1.0]]}),
           (f"/v2/models/{model.name}/infer", {"outputs": []})]
    caplog.set_level("INFO")
    started = time.monotonic()
    for i in range(300):
        path, body = bad[i % len(bad)]
        assert 400 <= client.post(path, json=body).status_code < 500
    elapsed = time.monotonic() - started
    lines = [r for r in caplog.records if r.name == "mlplat.serving.rejected"]
    print(f"300 bad requests in {elapsed:.2f} s: {len(lines)} rejection log lines")
    assert 1 <= len(lines) <= REJECTION_LOG.per_second * (elapsed + 1)
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
    dropped = (REGISTRY.get_sample_value("mlplat_rejection_log_suppressed_total") or 0.0) - suppressed
    assert dropped + len(lines) == 300


# ---- 4. request ids ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_id", ["x" * 129, "a b", "../etc", "id\u00e9", "a/b"])
def test_request_ids_are_bounded_in_length_and_charset(client: TestClient, model: LoadedModel, row: list[float],
                                                      bad_id: str) -> None:
    v1 = client.post(f"/v1/models/{model.name}:predict", json={"instances": [row] * 3},
                     headers={"x-request-id": bad_id.encode()})
    assert v1.status_code == 400 and "header x-request-id: a request id is 1-128 characters" in v1.json()["error"]
    v2 = client.post(f"/v2/models/{model.name}/infer", json={"id": bad_id, "inputs": [
        {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}]})
    assert v2.status_code == 400 and "id: a request id is 1-128 characters" in v2.json()["error"]


def test_a_plain_request_id_is_kept(client: TestClient, model: LoadedModel, row: list[float]) -> None:
    good = "req-1.a:B_" + "x" * 118
    v1 = client.post(f"/v1/models/{model.name}:predict", json={"instances": [row] * 2}, headers={"x-request-id": good})
    assert v1.status_code == 200 and v1.json()["request_ids"] == [f"{good}/0", f"{good}/1"]
    v2 = client.post(f"/v2/models/{model.name}/infer", json={"id": good, "inputs": [
        {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}]})
    assert v2.status_code == 200 and v2.json()["id"] == good


# ---- 3. strict V2 decoding ---------------------------------------------------------------------------

def binary_body(tensors: list[dict], payload: bytes, header_length: str | None = None) -> dict:
    """httpx kwargs for a V2 binary request: JSON header + raw bytes."""
    import json

    header = json.dumps({"inputs": tensors}).encode()
    return {"content": header + payload, "headers": {"inference-header-content-length": header_length or str(len(header)),
                                                     "content-type": "application/octet-stream"}}


def fp32_tensor(width: int, rows: int = 1, datatype: str = "FP32", size: int | None = None) -> dict:
    item = {"FP32": 4, "FP64": 8, "BYTES": 4}[datatype]
    return {"name": "input-0", "shape": [rows, width], "datatype": datatype,
            "parameters": {"binary_data_size": rows * width * item if size is None else size}}


def json_v2(datatype: str, data: list) -> dict:
    return {"json": {"inputs": [{"name": "input-0", "shape": [1, len(data)], "datatype": datatype, "data": data}]}}


W = 30  # the breast-cancer model's features
STRICT_V2_CASES = [
    ("binary short", lambda: binary_body([fp32_tensor(W)], b"\0" * (4 * W - 4)), "missing bytes"),
    ("binary trailing bytes", lambda: binary_body([fp32_tensor(W)], b"\0" * (4 * W + 3)), "trailing bytes"),
    ("binary size not the shape's", lambda: binary_body([fp32_tensor(W, size=8)], b"\0" * 8), "binary_data_size 8"),
    ("FP64 bytes declared FP32", lambda: binary_body([fp32_tensor(W)], b"\0" * (8 * W)), "trailing bytes"),
    # FP64 bytes declared FP32 as twice the width: the bytes fit, the width does not
    ("FP64 bytes declared FP32 [1, 2W]", lambda: binary_body([fp32_tensor(2 * W)], np.ones(W).tobytes()),
     "has shape [1, 60], expected [N, 30]"),
    ("BOOL for numeric features", lambda: json_v2("BOOL", [True] * W), "datatype BOOL is not numeric"),
    ("lowercase fp32", lambda: json_v2("fp32", [1.0] * W), "datatype fp32 is not numeric"),
    ("BYTES for numeric features", lambda: json_v2("BYTES", ["1"] * W), "BYTES"),
    ("header length not a number", lambda: binary_body([fp32_tensor(W)], b"\0" * 4 * W, "12x"), "Inference-Header-Content-Length '12x'"),
    ("header length past the body", lambda: binary_body([fp32_tensor(W)], b"", "99999"), "Inference-Header-Content-Length '99999'"),
    ("header length cuts the JSON", lambda: binary_body([fp32_tensor(W)], b"\0" * 4 * W, "10"), "are not a JSON header"),
    # binary BYTES (encoded images) are well-formed here, and this tabular model takes no BYTES tensor of that shape
    ("BYTES with binary data", lambda: binary_body([fp32_tensor(W, datatype="BYTES")], b"\0" * 4 * W),
     "datatype BYTES is not numeric"),
    ("binary BYTES lengths past the data", lambda: binary_body([fp32_tensor(W, datatype="BYTES")], b"\xff" * 4 * W),
     "more than the binary data holds"),
    ("binary header without inputs", lambda: {"content": b'{"x": 1}', "headers": {
        "inference-header-content-length": "8", "content-type": "application/octet-stream"}}, "needs an 'inputs' list"),
    ("INT64 0.7", lambda: json_v2("INT64", [0.7] + [1] * (W - 1)), "INT64 value 0.7 at [0] is not an integer"),
    ("UINT8 300", lambda: json_v2("UINT8", [300] + [1] * (W - 1)), "UINT8 value 300 at [0] is outside [0, 255]"),
    ("INT8 -1000", lambda: json_v2("INT8", [-1000] + [1] * (W - 1)), "INT8 value -1000 at [0] is outside [-128, 127]"),
    ("INT64 2**64", lambda: json_v2("INT64", [2 ** 64] + [1] * (W - 1)), "is outside [-9223372036854775808"),
    ("UINT64 2**64", lambda: json_v2("UINT64", [2 ** 64] + [1] * (W - 1)), "is outside [0, 18446744073709551615]"),
    ("duplicate key", lambda: {"content": b'{"inputs": [], "inputs": [{"name": "input-0", "shape": [1, 30], '
                                          b'"datatype": "FP32", "data": [' + b"1," * 29 + b'1]}]}',
                               "headers": {"content-type": "application/json"}}, "duplicate JSON key 'inputs'"),
    ("shape of negative size", lambda: {"json": {"inputs": [{"name": "input-0", "shape": [-1, 30], "datatype": "FP32",
                                                          "data": [1.0] * 30}]}}, "must be non-negative integers"),
    ("rows x features over the limit", lambda: binary_body([fp32_tensor(W, rows=10_000)], b""), "the limit per request is 1500"),
]


@pytest.mark.parametrize(("case", "make", "message"), STRICT_V2_CASES, ids=[c[0] for c in STRICT_V2_CASES])
def test_malformed_v2_bodies_are_400_naming_the_problem(client: TestClient, model: LoadedModel, case: str,
                                                       make: object, message: str) -> None:
    reply = client.post(f"/v2/models/{model.name}/infer", **make())  # type: ignore[operator]
    assert reply.status_code == 400, (case, reply.text)
    assert message in reply.json()["error"], (case, reply.text)


def test_a_duplicate_key_in_a_v1_body_is_400(client: TestClient, model: LoadedModel) -> None:
    body = b'{"instances": [[' + b"1," * 29 + b'1]], "instances": [[' + b"2," * 29 + b'2]]}'
    reply = client.post(f"/v1/models/{model.name}:predict", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "duplicate JSON key 'instances'" in reply.json()["error"]


def test_valid_binary_and_integer_bodies_still_predict(client: TestClient, model: LoadedModel, row: list[float]) -> None:
    rows = np.asarray([row, row], dtype=np.float32)
    binary = client.post(f"/v2/models/{model.name}/infer", **binary_body([fp32_tensor(W, rows=2)], rows.tobytes()))
    assert binary.status_code == 200, binary.text
    probabilities = np.asarray(binary.json()["outputs"][0]["data"]).reshape(2, -1)
    np.testing.assert_allclose(probabilities, model.predict_proba(rows), atol=1e-5)
    integers = client.post(f"/v2/models/{model.name}/infer", **json_v2("INT64", [3] * (W - 1) + [4.0]))
    assert integers.status_code == 200, integers.text


# ---- 7. the KServe controller's arguments --------------------------------------------------------------

def test_explainer_starts_with_exactly_the_controller_arguments_and_waits_for_its_predictor(
        trained_model_dir: Path, model: LoadedModel, row: list[float]) -> None:
    """KServe v0.20 appends `--model_name NAME --predictor_host HOST.NAMESPACE --http_port 8080` to a custom
    explainer's args (explainer_custom.go); here the predictor starts only after the explainer."""
    import subprocess
    import sys
    import tempfile
    import time

    import httpx
    from serving_server import free_port

    predictor_port, explainer_port = free_port(), free_port()
    log = tempfile.TemporaryFile()
    explainer = subprocess.Popen([sys.executable, "-m", "mlplat", "serve", str(trained_model_dir), "--no-monitor",
                                  "--model_name", "my-isvc", "--predictor_host", f"127.0.0.1:{predictor_port}",
                                  "--http_port", str(explainer_port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        assert explainer.poll() is None, "the explainer exited while its predictor was down"
        with pytest.raises(httpx.HTTPError):  # not listening, so not ready, while it waits
            httpx.get(f"http://127.0.0.1:{explainer_port}/v2/health/ready", timeout=1)
        predictor = subprocess.Popen([sys.executable, "-m", "mlplat", "serve", str(trained_model_dir), "--no-monitor",
                                      "--http_port", str(predictor_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{explainer_port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            for name in (model.name, "my-isvc"):
                reply = httpx.post(f"{base}/v1/models/{name}:predict", json={"instances": [row]}, timeout=30)
                assert reply.status_code == 200, reply.text
        finally:
            predictor.terminate()
            predictor.wait(timeout=30)
        log.seek(0)
        output = log.read().decode()
        assert "not ready: unreachable" in output and "Traceback" not in output
    finally:
        explainer.terminate()
        explainer.wait(timeout=30)
        log.close()


# ---- 6. explain ---------------------------------------------------------------------------------------

def test_explain_has_a_row_limit_and_a_busy_explainer_answers_503_at_once(trained_model_dir: Path, model: LoadedModel,
                                                                          row: list[float]) -> None:
    import threading
    import time

    from mlplat.serving.explain_worker import ExplainWorker
    from spinning_explainer import SPIN, spinning_explainer

    served = build_app(trained_model_dir, ServingOptions(max_explain_rows=3, explain_timeout_s=20))
    served.model.explain_worker = ExplainWorker(spinning_explainer, model.name)
    url = f"/v1/models/{model.name}:explain"
    with TestClient(served.app) as c:
        over = c.post(url, json={"instances": [row] * 4})
        assert over.status_code == 400 and "the limit per explain request is 3" in over.json()["error"]
        answers: list[int] = []
        first = threading.Thread(target=lambda: answers.append(
            c.post(url, json={"instances": [[SPIN + 3, *row[1:]]]}).status_code))
        first.start()
        time.sleep(1.0)  # the first explanation is running (or its worker loading)
        started = time.monotonic()
        busy = c.post(url, json={"instances": [row]})
        assert busy.status_code == 503 and "busy with another explanation" in busy.json()["error"]
        assert time.monotonic() - started < 2  # at once, not after the first one's timeout
        first.join(60)
        assert answers == [200]
