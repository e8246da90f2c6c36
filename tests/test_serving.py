"""The KServe predictor for real: `mlplat serve` on 127.0.0.1, V1 + V2 (tritonclient too),
explanations, 4xx for bad input, batching, metrics, monitoring feedback, the explainer role."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import REPO, TINY_SPEC
from serving_server import running_server

SERVED_SPEC = {
    **TINY_SPEC,
    "name": "served",
    "steps": {
        **TINY_SPEC["steps"],
        "explain": {"plugin": "kernel_shap", "params": {"importance_rows": 5}},
        "drift": {"plugin": "evidently"},
    },
}
MAX_BODY = 200_000
MAX_ROWS = 50
MONITORING_TOKEN = "serving-test-token-0123456789"  # the server's --token-file: feedback needs it
AUTH = {"authorization": f"Bearer {MONITORING_TOKEN}"}


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    return run_pipeline(resolve(parse_spec(SERVED_SPEC)), REPO, RunStore(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="module")
def model(served_run: Any) -> Any:
    from mlplat.modeldir import LoadedModel

    return LoadedModel.load(served_run.model_dir)


@pytest.fixture(scope="module")
def rows(served_run: Any) -> np.ndarray:
    from mlplat.data import Splits

    splits = Splits.load(served_run.run.step_dir("ingest"))
    return splits.test.features.to_numpy()[:8]


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(MONITORING_TOKEN)
    return path


@pytest.fixture(scope="module")
def server(served_run: Any, token_file: Path) -> Any:
    with running_server(served_run.model_dir, "--max-body-bytes", str(MAX_BODY), "--max-rows", str(MAX_ROWS),
                        "--token-file", str(token_file)) as base:
        yield base


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def predict_url(model: Any) -> str:
    return f"/v1/models/{model.name}:predict"


def test_binds_loopback_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:] if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening


def test_v1_predict_rows_and_named_objects_match_the_model(client: httpx.Client, model: Any, rows: np.ndarray) -> None:
    by_row = client.post(predict_url(model), json={"instances": rows.tolist()}).json()
    named = [dict(zip(model.feature_names, r, strict=True)) for r in rows.tolist()]
    by_name = client.post(predict_url(model), json={"instances": named}).json()
    expected = model.predict_proba(rows.astype(np.float32))
    np.testing.assert_allclose(by_row["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(by_name["probabilities"], expected, atol=1e-5)
    assert by_row["predictions"] == [model.class_names[i] for i in expected.argmax(axis=1)]
    assert len(set(by_row["request_ids"])) == len(rows)


def test_request_ids_take_delayed_labels(client: httpx.Client, model: Any, rows: np.ndarray) -> None:
    body = client.post(predict_url(model), json={"instances": rows[:3].tolist()}, headers={"x-request-id": "req-42"}).json()
    assert body["request_ids"] == ["req-42/0", "req-42/1", "req-42/2"]
    reply = client.post(f"/v1/models/{model.name}/feedback", json={"ids": body["request_ids"] + ["never-seen"],
                                                                   "labels": [model.class_names[0]] * 4}, headers=AUTH)
    assert reply.status_code == 200 and reply.json() == {"accepted": 3, "unknown_ids": ["never-seen"]}


def test_v2_infer_metadata_and_health(client: httpx.Client, model: Any, rows: np.ndarray) -> None:
    meta = client.get(f"/v2/models/{model.name}").json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, len(model.feature_names)]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "predicted_class"}
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{model.name}/ready"):
        assert client.get(path).status_code == 200, path
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
    reply = client.post(f"/v2/models/{model.name}/infer", json={"id": "v2-1", "inputs": [tensor]}).json()
    outputs = {o["name"]: o for o in reply["outputs"]}
    assert reply["id"] == "v2-1" and outputs["probabilities"]["shape"] == [len(rows), len(model.class_names)]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (len(rows), -1)),
                               model.predict_proba(rows.astype(np.float32)), atol=1e-5)
    columns = [{"name": n, "shape": [len(rows)], "datatype": "FP32", "data": rows[:, j].tolist()}
               for j, n in enumerate(model.feature_names)]
    per_feature = client.post(f"/v2/models/{model.name}/infer", json={"inputs": columns}).json()
    assert {o["name"]: o for o in per_feature["outputs"]}["predicted_class"]["data"] == outputs["predicted_class"]["data"]


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_speaks_v2_to_the_server(server: str, model: Any, rows: np.ndarray, binary: bool) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_model_ready(model.name)
        tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
        result = client.infer(model.name, [tensor])
        np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict_proba(rows.astype(np.float32)), atol=1e-5)
        if binary:  # NaN can only arrive as binary tensor data, JSON has no NaN
            bad = rows.astype(np.float32).copy()
            bad[1, 2] = np.nan
            tensor.set_data_from_numpy(bad, binary_data=True)
            with pytest.raises(Exception, match="not finite"):
                client.infer(model.name, [tensor])
    finally:
        client.close()


def test_explain_returns_named_attributions_that_add_up(client: httpx.Client, model: Any, rows: np.ndarray) -> None:
    reply = client.post(f"/v1/models/{model.name}:explain", json={"instances": rows[:2].tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["method"] == "kernel_shap" and len(body["explanations"]) == 2
    probabilities = model.predict_proba(rows[:2].astype(np.float32))
    for explanation, p in zip(body["explanations"], probabilities, strict=True):
        assert list(explanation["attributions"]) == model.feature_names
        assert explanation["class"] == model.class_names[int(p.argmax())]
        # Shapley efficiency: attributions sum to f(x) - E[f(background)] for the explained class
        total = sum(explanation["attributions"].values()) + explanation["base_value"]
        assert total == pytest.approx(float(p.max()), abs=0.02)


ROW = [1.0] * 30


def bad_v1(instances: Any) -> dict[str, Any]:
    return {"json": {"instances": instances}}


def bad_record(drop: tuple[str, ...] = (), **values: Any) -> dict[str, Any]:
    """One V1 instance keyed by feature name: every feature of the model but `drop`, then `values` (built in the test)."""
    return {"record": (drop, values)}


def raw_json(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("short row", bad_v1([[1.0] * 29]), 400, "has 29 values, the model expects 30"),
    ("long row", bad_v1([[1.0] * 31]), 400, "has 31 values"),
    ("ragged rows", bad_v1([ROW, [1.0] * 5]), 400, "instances[1] has 5 values"),
    ("instances is an object", bad_v1({"a": 1}), 400, "'instances' must be a list"),
    ("instances is a number", bad_v1(3), 400, "'instances' must be a list"),
    ("no instances key", {"json": {"rows": [ROW]}}, 400, "missing 'instances'"),
    ("body is a list", {"json": [ROW]}, 400, "must be a JSON object"),
    ("empty batch", bad_v1([]), 400, "empty batch"),
    ("string value", bad_v1([["abc"] + ROW[1:]]), 400, "expected a number, got a string 'abc'"),
    ("numeric string", bad_v1([ROW[:4] + ["1.5"] + ROW[5:]]), 400, "instances[0][4]"),
    ("boolean value", bad_v1([[True] + ROW[1:]]), 400, "got a boolean"),
    ("nested list value", bad_v1([[[1.0]] + ROW[1:]]), 400, "got a list"),
    ("object value", bad_v1([[{"v": 1}] + ROW[1:]]), 400, "got an object"),
    ("instance is a number", bad_v1([5]), 400, "must be a list of 30 numbers or an object"),
    ("instance is a string", bad_v1(["row"]), 400, "must be a list of 30 numbers or an object"),
    ("overflows float32", bad_v1([[1e39] + ROW[1:]]), 400, "not a finite float32"),
    ("NaN literal", raw_json(b'{"instances": [[NaN]]}'), 400, "JSON has no NaN/Infinity (got NaN); send finite numbers"),
    ("Infinity literal", raw_json(b'{"instances": [[1, Infinity]]}'), 400, "JSON has no NaN/Infinity (got Infinity)"),
    ("-Infinity literal", raw_json(b'{"instances": [[1, -Infinity]]}'), 400, "JSON has no NaN/Infinity (got -Infinity)"),
    ("NaN literal to explain", {"path": "explain", **raw_json(b'{"instances": [[NaN]]}')}, 400, "JSON has no NaN/Infinity"),
    ("V2 NaN literal", {"path": "v2", **raw_json(b'{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP32", "data": [NaN'
                                                 + b', 1' * 29 + b']}]}')},
     400, "input-0[0][0] (feature 'mean radius') is not finite: nan"),
    ("NaN as a string", bad_v1([["NaN"] + ROW[1:]]), 400, "expected a number, got a string 'NaN'"),
    ("malformed JSON", raw_json(b'{"instances": [[1,'), 400, "Unrecognized request format: unexpected end of data"),
    ("malformed JSON, NaN in a string", raw_json(b'{"note": "NaN", "instances": [[1,'), 400, "Unrecognized request format: unexpected end"),
    ("V1 unknown feature", bad_record(bogus=1.0), 400, "instances[0]: unknown feature(s) ['bogus']"),
    ("V1 missing feature", bad_record(("mean radius",)), 400, "instances[0]: missing feature(s) ['mean radius']"),
    ("V1 unknown and missing feature", bad_record(("mean radius",), bogus=1.0), 400,
     "instances[0]: unknown feature(s) ['bogus']; missing feature(s) ['mean radius']"),
    ("V1 string in a named feature", bad_record(**{"mean texture": "abc"}), 400,
     "instances[0] feature 'mean texture': expected a number, got a string 'abc'"),
    ("text/plain", {"content": b"1,2,3", "headers": {"content-type": "text/plain"}}, 415, "'text/plain' is not supported"),
    ("form encoded", {"content": b"a=1", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, "send application/json"),
    ("xml", {"content": b"<x/>", "headers": {"content-type": "application/xml"}}, 415, "'application/xml'"),
    ("body over the limit", {"json": {"instances": [[123456.789] * 30] * 700}}, 413, f"exceeds the {MAX_BODY}-byte limit"),
    ("chunked body over the limit", {"chunks": [b" " * 100_000] * 3, "headers": {"content-type": "application/json"}}, 413, "exceeds"),
    ("too many rows", bad_v1([ROW] * (MAX_ROWS + 1)), 400, f"the limit is {MAX_ROWS}"),
    ("unknown model", {"path": "/v1/models/nope:predict", "json": {"instances": [ROW]}}, 404, "nope"),
    ("V2 bytes datatype", {"path": "v2", "json": {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}},
     400, "BYTES is not numeric"),
    ("V2 bool datatype", {"path": "v2", "json": {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "BOOL",
                                                             "data": [True] * 30}]}},
     400, "BOOL is not numeric"),
    ("V2 data vs shape", {"path": "v2", "json": {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP32", "data": ROW}]}},
     400, "does not match shape"),
    ("V2 wrong width", {"path": "v2", "json": {"inputs": [{"name": "input-0", "shape": [1, 29], "datatype": "FP32", "data": ROW[:29]}]}},
     400, "expected [N, 30]"),
    ("V2 no inputs", {"path": "v2", "json": {"inputs": []}}, 400, "no inputs"),
    ("V2 string in FP32 data", {"path": "v2", "json": {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP32",
                                                                   "data": ["x"] + ROW[1:]}]}},
     400, "expected numbers, got a string"),
    ("V2 unknown per-feature inputs", {"path": "v2", "json": {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32",
                                                                          "data": [1.0]}] * 2}},
     400, "unknown ['a']"),
    ("V2 missing inputs field", {"path": "v2", "json": {"outputs": []}}, 422, "inputs"),
    ("V2 versioned text/plain", {"path": "v2 versioned", "content": b"1,2,3", "headers": {"content-type": "text/plain"}},
     415, "'text/plain' is not supported"),
    ("V2 versioned body over the limit", {"path": "v2 versioned", "json": {"inputs": [
        {"name": "input-0", "shape": [700, 30], "datatype": "FP32", "data": [123456.789] * 30 * 700}]}},
     413, f"exceeds the {MAX_BODY}-byte limit"),
    ("explain bad row", {"path": "explain", "json": {"instances": [[1.0] * 3]}}, 400, "has 3 values"),
    ("feedback labels mismatch", {"path": "feedback", "json": {"ids": ["a", "b"], "labels": ["malignant"]}},
     422, "labels must be a list as long as ids"),
    ("feedback unknown class", {"path": "feedback", "json": {"ids": ["a"], "labels": ["purple"]}}, 422, "purple"),
]


def bad_request(model: Any, request_kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, httpx keyword arguments) for a BAD_INPUTS entry."""
    kwargs = dict(request_kwargs)
    path = kwargs.pop("path", predict_url(model))
    path = {"v2": f"/v2/models/{model.name}/infer", "v2 versioned": f"/v2/models/{model.name}/versions/1/infer",
            "explain": f"/v1/models/{model.name}:explain", "feedback": f"/v1/models/{model.name}/feedback"}.get(path, path)
    if path.endswith("/feedback"):
        kwargs["headers"] = {**kwargs.get("headers", {}), **AUTH}
    if "chunks" in kwargs:  # a fresh iterator per request: httpx sends it chunked, and an iterator is spent once
        kwargs["content"] = iter(kwargs.pop("chunks"))
    if "record" in kwargs:
        drop, values = kwargs.pop("record")
        kwargs["json"] = {"instances": [{**{n: 1.0 for n in model.feature_names if n not in drop}, **values}]}
    return path, kwargs


def rejections(client: httpx.Client) -> dict[str, float]:
    """mlplat_rejected_requests_total of the served model, by reason."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'mlplat_rejected_requests_total\{model="served",reason="(\w+)"\} ([\d.]+)', client.get("/metrics").text)}


@pytest.mark.parametrize(("case", "request_kwargs", "status", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_4xx_that_names_the_problem(client: httpx.Client, model: Any, case: str,
                                                     request_kwargs: dict[str, Any], status: int, message: str) -> None:
    path, kwargs = bad_request(model, request_kwargs)
    reply = client.post(path, **kwargs)
    assert reply.status_code == status, (case, reply.text)
    assert message in reply.text, (case, reply.text)
    assert "Traceback" not in reply.text and 'File "' not in reply.text


def test_still_healthy_after_bad_inputs_and_counts_rejections(client: httpx.Client, model: Any, rows: np.ndarray) -> None:
    # self-contained: its own rejections and explanation, whatever ran before
    for case, kwargs, _, _ in BAD_INPUTS:
        if case in ("short row", "long row", "ragged rows", "text/plain", "body over the limit"):
            client.post(predict_url(model), **kwargs)
    client.post(f"/v1/models/{model.name}:explain", json={"instances": rows[:1].tolist()})
    assert client.get("/v2/health/live").status_code == 200
    assert client.post(predict_url(model), json={"instances": rows[:1].tolist()}).status_code == 200
    rejected = rejections(client)
    metrics = client.get("/metrics").text
    assert rejected.get("shape", 0) >= 3 and rejected.get("content_type", 0) >= 1 and rejected.get("too_large", 0) >= 1
    assert re.search(r'mlplat_predictions_total\{class="\w+",model="served"\} [1-9]', metrics)
    assert "request_predict_seconds_bucket" in metrics  # KServe's per-stage latency histograms
    assert re.search(r'mlplat_explanation_duration_seconds_count\{method="kernel_shap",model="served"\} [1-9]', metrics)
    assert re.search(r'mlplat_monitor_window_rows\{model="served"\} [1-9]', metrics)


def test_every_4xx_on_predict_and_explain_is_counted_once(client: httpx.Client, model: Any) -> None:
    # KServe's own refusals (decode errors, FastAPI's 422, unknown models) by status code; ours by their reason
    sent = {"malformed JSON": 400, "V2 missing inputs field": 422, "unknown model": 404, "NaN literal": 400,
            "short row": 400, "explain bad row": 400, "text/plain": 415, "V2 versioned text/plain": 415,
            "feedback unknown class": 422}  # feedback is no predict/explain handler: not a rejection
    before = rejections(client)
    for case, request_kwargs, _, _ in BAD_INPUTS:
        if case in sent:
            path, kwargs = bad_request(model, request_kwargs)
            assert client.post(path, **kwargs).status_code == sent[case], case
    after = rejections(client)
    counted = {reason: after[reason] - before.get(reason, 0) for reason in after if after[reason] != before.get(reason, 0)}
    assert counted == {"malformed": 2, "not_found": 1, "non_finite": 1, "shape": 2, "content_type": 2}


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/models/m:predict", ("m", "predict")),
    ("/v1/models/m:explain", ("m", "explain")),
    ("/v2/models/m/infer", ("m", "predict")),
    ("/v2/models/m/versions/1/infer", ("m", "predict")),
    ("/v2/models/m", ("m", "metadata")),
    ("/v2/models/m/versions/1", ("m", "metadata")),
    ("/v2/models/m/versions/1/ready", ("m", "ready")),
    ("/v1/models/m/feedback", ("m", "feedback")),
    ("/metrics", ("", "other")),
])
def test_request_paths_map_to_their_handler(path: str, expected: tuple[str, str]) -> None:
    from mlplat.monitoring.http_metrics import handler_of

    assert handler_of(path) == expected


def test_concurrent_requests_share_forward_passes(server: str, model: Any, rows: np.ndarray) -> None:
    def batch_counts() -> tuple[float, float]:
        text = httpx.get(f"{server}/metrics").text
        count = float(re.search(r'mlplat_batch_rows_count\{model="served"\} ([\d.e+]+)', text).group(1))
        total = float(re.search(r'mlplat_batch_rows_sum\{model="served"\} ([\d.e+]+)', text).group(1))
        return count, total

    async def burst(n: int) -> list[int]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as c:
            replies = await asyncio.gather(*[c.post(predict_url(model), json={"instances": rows[i % 8:i % 8 + 1].tolist()})
                                             for i in range(n)])
        return [r.status_code for r in replies]

    before = batch_counts()
    assert set(asyncio.run(burst(96))) == {200}
    after = batch_counts()
    passes, merged_rows = after[0] - before[0], after[1] - before[1]
    assert merged_rows == 96 and passes < 96  # some passes served several requests at once


def test_explainer_role_asks_the_predictor_over_http(served_run: Any, server: str, model: Any, rows: np.ndarray,
                                                     token_file: Path) -> None:
    def predicted_rows() -> float:
        text = httpx.get(f"{server}/metrics").text
        return sum(float(v) for v in re.findall(r'mlplat_predictions_total\{class="\w+",model="served"\} ([\d.]+)', text))

    def recorded_rows() -> float:
        return float(re.findall(r'mlplat_monitor_records_total\{model="served"\} ([\d.]+)', httpx.get(f"{server}/metrics").text)[0])

    before, recorded_before = predicted_rows(), recorded_rows()
    with running_server(served_run.model_dir, "--explainer", "--predictor-url", server,  # the same token proves its marker
                        "--predictor-batch-rows", str(MAX_ROWS), "--token-file", str(token_file)) as explainer:
        reply = httpx.post(f"{explainer}/v1/models/{model.name}:explain", json={"instances": rows[:1].tolist()}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert list(reply.json()["explanations"][0]["attributions"]) == model.feature_names
        forwarded = httpx.post(f"{explainer}/v1/models/{model.name}:predict", json={"instances": rows.tolist()}).json()
        np.testing.assert_allclose(forwarded["probabilities"], model.predict_proba(rows.astype(np.float32)), atol=1e-5)
    assert predicted_rows() - before > 100  # KernelShap's coalitions went to the predictor
    assert recorded_rows() == recorded_before  # but, marked as the explainer's, never into its drift window


def test_a_timed_out_explanation_is_stopped_in_its_worker_process(served_run: Any, model: Any, rows: np.ndarray) -> None:
    import psutil
    from serving_server import listening_process

    def workers(server: psutil.Process) -> set[int]:
        return {p.pid for p in server.children() if "from multiprocessing.spawn import spawn_main" in " ".join(p.cmdline())}

    explain_url = f"/v1/models/{model.name}:explain"
    with running_server(served_run.model_dir, "--explain-timeout-s", "0.01", "--no-monitor") as base, \
            httpx.Client(base_url=base, timeout=120) as c:
        server = listening_process(int(base.rsplit(":", 1)[1]))
        slow = c.post(explain_url, json={"instances": np.tile(rows, (5, 1)).tolist()})  # 40 rows: KernelShap > 10 ms
        assert slow.status_code == 504 and "longer than 0.01 s" in slow.json()["error"], slow.text
        assert "it was stopped" in slow.json()["error"]
        restarted = workers(server)
        assert len(restarted) == 1  # the worker that ran it was replaced, not left running beside a new one
        again = c.post(explain_url, json={"instances": np.tile(rows, (5, 1)).tolist()})  # runs in the restarted one
        assert again.status_code == 504, again.text
        assert len(workers(server)) == 1 and not workers(server) & restarted  # which was killed in turn
        assert not any(psutil.pid_exists(pid) for pid in restarted)
        assert c.post(f"/v1/models/{model.name}:predict", json={"instances": rows.tolist()}).status_code == 200


def test_unbatched_model_without_explainer(served_run: Any, tmp_path: Path, rows: np.ndarray) -> None:
    from mlplat.modeldir import LoadedModel, ModelDir

    # the same model, published without an explainer
    manifest = ModelDir(served_run.model_dir).copy_to(tmp_path / "model").update(explainer=None)
    name, model = manifest.name, LoadedModel.load(tmp_path / "model")
    with running_server(tmp_path / "model", "--no-batching", "--no-monitor") as base:
        reply = httpx.post(f"{base}/v1/models/{name}:explain", json={"instances": rows[:1].tolist()})
        assert reply.status_code == 404 and "without an explain step" in reply.json()["error"]
        assert f'mlplat_rejected_requests_total{{model="{name}",reason="no_explainer"}} 1.0' in httpx.get(f"{base}/metrics").text
        assert 'reason="not_found"' not in httpx.get(f"{base}/metrics").text  # counted once, by its own reason
        plain = httpx.post(f"{base}/v1/models/{name}:predict", json={"instances": rows.tolist()}).json()
        np.testing.assert_allclose(plain["probabilities"], model.predict_proba(rows.astype(np.float32)), atol=1e-5)
        assert httpx.post(f"{base}/v1/models/{name}/feedback", json={"ids": [], "labels": []}).status_code == 404
        text = httpx.get(f"{base}/metrics").text  # one forward pass for the one request, all its rows
        assert f'mlplat_batch_rows_count{{model="{name}"}} 1.0' in text
        assert f'mlplat_batch_rows_sum{{model="{name}"}} {float(len(rows))}' in text


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-run"], "no-such-run"),
    (["latest", "--explainer"], "--explainer and --predictor-url go together"),
    (["latest", "--explainer", "--predictor-url", "ftp://x"], "--predictor-url"),
])
def test_cli_errors_exit_2_naming_the_problem(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mlplat", "serve", *args, "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_path_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mlplat", "serve", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a model or run directory" in result.stderr
    json.dumps(result.stderr)
