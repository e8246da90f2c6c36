"""Monitoring inputs against hostile and broken clients (issue 14 item 5 and 10, issue 13 item 7):
bearer tokens, the explainer marker's proof, one label rule with idempotent labels, body limits and
content types, malformed and non-finite CloudEvents, hysteresis that clients cannot hurry, an
unwritable state directory, and a bounded fuzz of feedback and event bodies."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlplat.errors import UsageError
from mlplat.modeldir import ModelDir, copy_model_dir
from mlplat.monitoring.feedback import parse_feedback
from mlplat.monitoring.inputs import InputPolicy
from mlplat.monitoring.monitor import Monitor, MonitorSettings
from mlplat.monitoring.service import create_app
from mlplat.monitoring.window import SOURCE_PARAMETER, explainer_parameters

TOKEN = "hardening-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REQUEST, RESPONSE = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
MLPLAT = str(Path(sys.executable).with_name("mlplat"))


@pytest.fixture()
def model_dir(trained_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    copy_model_dir(trained_model_dir, target)
    return target


def _service(model_dir: Path, policy: InputPolicy = InputPolicy(token=TOKEN), **settings: Any) -> tuple[Monitor, TestClient]:
    monitor = Monitor(model_dir, MonitorSettings(interval_s=3600, **settings))
    return monitor, TestClient(create_app({monitor.name: monitor}, policy))


def _rows(monitor: Monitor, n: int) -> list[list[float]]:
    return monitor.reference()[monitor.feature_names].head(n).to_numpy().tolist()


def _log(client: TestClient, event_id: str, request: Any, response: Any, headers: dict[str, str] = AUTH) -> Any:
    """Send one logged request/response pair as KServe's payload logger does (binary mode)."""
    base = {"ce-id": event_id, "ce-specversion": "1.0", "ce-source": "kserve", "content-type": "application/json", **headers}
    client.post("/", content=json.dumps(request), headers={**base, "ce-type": REQUEST})
    return client.post("/", content=json.dumps(response), headers={**base, "ce-type": RESPONSE})


# ---- 1. authenticated inputs -------------------------------------------------------------------

def test_inputs_need_the_bearer_token(model_dir: Path) -> None:
    monitor, client = _service(model_dir)
    feedback, evaluate = f"/v1/models/{monitor.name}/feedback", f"/v1/models/{monitor.name}/monitor/evaluate"
    body = {"ids": ["a"], "labels": [monitor.classes[0]]}
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}, {"authorization": f"Basic {TOKEN}"}):
        assert client.post(feedback, json=body, headers=headers).status_code == 401
        assert client.post(evaluate, headers=headers).status_code == 401
        assert _log(client, "e", {"instances": _rows(monitor, 1)}, {"predictions": [monitor.classes[0]]},
                    headers).status_code == 401
    assert monitor.window.total == 0 and monitor.window.labels_received == 0
    assert client.post(feedback, json=body, headers=AUTH).json() == {"accepted": 0, "unknown_ids": ["a"]}
    assert client.post(evaluate, headers=AUTH).status_code == 200
    assert client.get(f"/v1/models/{monitor.name}/monitor").status_code == 200  # reading needs no token


def test_without_a_token_inputs_are_closed_unless_opened_explicitly(model_dir: Path) -> None:
    monitor, closed = _service(model_dir, InputPolicy())
    refused = closed.post(f"/v1/models/{monitor.name}/feedback", json={"ids": ["a"], "labels": [monitor.classes[0]]})
    assert refused.status_code == 403 and "--token-file" in refused.json()["error"]
    assert closed.post(f"/v1/models/{monitor.name}/monitor/evaluate").status_code == 403
    assert _log(closed, "e", {"instances": _rows(monitor, 1)}, {"predictions": [monitor.classes[0]]}, {}).status_code == 403
    _, opened = _service(model_dir, InputPolicy(insecure=True))
    assert _log(opened, "e", {"instances": _rows(monitor, 1)}, {"predictions": [monitor.classes[0]]}, {}).json() == {"recorded": 1}


def test_the_model_server_closes_feedback_without_a_token(trained_model_dir: Path) -> None:
    from mlplat.serving.predictor import ServingOptions
    from mlplat.serving.server import build_app

    served = build_app(trained_model_dir, ServingOptions(), monitor=MonitorSettings(interval_s=3600))
    with TestClient(served.app) as client:
        reply = client.post(f"/v1/models/{served.model.name}/feedback", json={"ids": ["a"], "labels": ["x"]})
        assert reply.status_code == 403 and "--token-file" in reply.json()["error"]


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read it"), ("short", "at least 16 characters"),
                                                   ("two tokens here-0123456789", "without spaces")])
def test_a_bad_token_file_is_refused_at_startup(model_dir: Path, tmp_path: Path, content: str | None, message: str) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    for command in ("monitor", "serve"):
        result = subprocess.run([MLPLAT, command, str(model_dir), "--token-file", str(token_file), "--port", "1"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (command, result.stderr)
    with pytest.raises(UsageError, match="exclude each other"):
        InputPolicy.from_options(token_file, insecure=True)


# ---- 2. the explainer marker cannot be spoofed ------------------------------------------------

def test_a_client_copying_the_explainer_marker_is_recorded(model_dir: Path) -> None:
    monitor, client = _service(model_dir)
    rows, answer = _rows(monitor, 2), {"predictions": [monitor.classes[0]] * 2}
    spoofs = [{SOURCE_PARAMETER: "explainer"}, explainer_parameters("another-token-0123456789"),
              {**explainer_parameters(TOKEN), SOURCE_PARAMETER: "client"}]
    for i, parameters in enumerate(spoofs):
        assert _log(client, f"spoof-{i}", {"instances": rows, "parameters": parameters}, answer).json() == {"recorded": 2}
    genuine = _log(client, "explainer", {"instances": rows, "parameters": explainer_parameters(TOKEN)}, answer)
    assert genuine.json() == {"recorded": 0, "skipped": "explainer"} and monitor.window.total == 6


def test_the_predictor_records_a_spoofed_marker(trained_model_dir: Path) -> None:
    from mlplat.serving.predictor import ServingOptions
    from mlplat.serving.server import build_app

    served = build_app(trained_model_dir, ServingOptions(monitoring_token=TOKEN),
                       monitor=MonitorSettings(interval_s=3600, inputs=InputPolicy(token=TOKEN)))
    features = ModelDir(trained_model_dir).read().feature_names
    row = [[0.0] * len(features)]
    url = f"/v1/models/{served.model.name}:predict"
    with TestClient(served.app) as client:
        assert client.post(url, json={"instances": row, "parameters": {SOURCE_PARAMETER: "explainer"}}).status_code == 200
        assert served.model.recorder.total == 1  # the bare marker: a client's, recorded
        assert client.post(url, json={"instances": row, "parameters": explainer_parameters(TOKEN)}).status_code == 200
        assert served.model.recorder.total == 1  # the explainer's, with the proof: answered, not recorded


# ---- 3. one label rule, one label per id -------------------------------------------------------

def test_labels_are_class_names_and_indices_only_in_label_indices(model_dir: Path) -> None:
    ModelDir(model_dir).update(classes=["1", "2"])  # issue 13: digits as class names, a classic trap
    monitor, client = _service(model_dir)
    client.headers.update(AUTH)
    assert _log(client, "e", {"instances": _rows(monitor, 2)}, {"predictions": ["1", "2"], "request_ids": ["r/0", "r/1"]}
                ).json() == {"recorded": 2}
    url = f"/v1/models/{monitor.name}/feedback"
    refused = {
        "labels[0]": [{"ids": ["r/0"], "labels": [2]}, {"ids": ["r/0"], "labels": [True]}, {"ids": ["r/0"], "labels": [1.0]},
                      {"ids": ["r/0"], "labels": ["3"]}, {"request_id": "r", "labels": [None, "1"]}],
        "label_indices[0]": [{"ids": ["r/0"], "label_indices": [1.0]}, {"ids": ["r/0"], "label_indices": [True]},
                             {"ids": ["r/0"], "label_indices": [2]}, {"ids": ["r/0"], "label_indices": ["1"]}],
    }
    for field, bodies in refused.items():
        for body in bodies:
            reply = client.post(url, json=body)
            assert reply.status_code == 422 and reply.json()["error"].startswith(field), (body, reply.text)
    nan = client.post(url, content=b'{"ids": ["r/0"], "label_indices": [NaN]}', headers={"content-type": "application/json"})
    assert nan.status_code == 422 and nan.json()["error"].startswith("label_indices[0]")
    assert monitor.window.labels_received == 0
    # the class named "2" is index 1: by name in labels, or by index in label_indices, never confused
    assert client.post(url, json={"ids": ["r/0"], "labels": ["2"]}).json() == {"accepted": 1, "unknown_ids": []}
    assert client.post(url, json={"ids": ["r/1"], "label_indices": [0]}).json() == {"accepted": 1, "unknown_ids": []}
    assert list(monitor.window.frame()["__label__"]) == [1, 0]


def test_regression_labels_are_finite_numbers() -> None:
    assert parse_feedback({"ids": ["a", "b"], "labels": [1, 2.5]}, None) == (["a", "b"], [1.0, 2.5])
    for bad in (math.nan, math.inf, True, "3", None):
        with pytest.raises(Exception, match=r"^labels\[0\]: .* is not a finite number"):
            parse_feedback({"ids": ["a"], "labels": [bad]}, None)
    with pytest.raises(Exception, match="^label_indices: a regression model"):
        parse_feedback({"ids": ["a"], "label_indices": [0]}, None)


def test_each_id_takes_one_label(model_dir: Path) -> None:
    monitor, client = _service(model_dir)
    client.headers.update(AUTH)
    ids = ["r/0", "r/1", "r/2"]
    _log(client, "e", {"instances": _rows(monitor, 3)}, {"predictions": [monitor.classes[0]] * 3, "request_ids": ids})
    url, (first, second) = f"/v1/models/{monitor.name}/feedback", monitor.classes[:2]
    for _ in range(5):  # a retried delivery: accepted every time, counted once
        assert client.post(url, json={"ids": ids[:2], "labels": [first, second]}).status_code == 200
    assert client.post(url, json={"ids": ["r/2", "r/2"], "labels": [first, first]}).status_code == 200
    assert monitor.window.labels_received == 3
    relabel = client.post(url, json={"ids": ["r/0"], "labels": [second]})
    assert relabel.status_code == 409 and "r/0" in relabel.json()["error"]
    # a conflict anywhere in the call changes nothing, not even the ids before it
    _log(client, "e2", {"instances": _rows(monitor, 1)}, {"predictions": [first], "request_ids": ["fresh"]})
    assert client.post(url, json={"ids": ["fresh", "r/1"], "labels": [first, first]}).status_code == 409
    assert client.post(url, json={"ids": ["fresh", "fresh"], "labels": [first, second]}).status_code == 409
    assert monitor.window.labels_received == 3 and list(monitor.window.frame()["__label__"]) == [0, 1, 0, -1]
    text = client.get("/metrics").text
    assert f'mlplat_monitor_labels_received_total{{model="{monitor.name}"}} 3.0' in text


# ---- 4. body limits, content types, malformed events --------------------------------------------

def test_body_limits_and_content_types_on_every_input_route(model_dir: Path) -> None:
    monitor, client = _service(model_dir, InputPolicy(token=TOKEN, max_body_bytes=2000))
    client.headers.update(AUTH)
    routes = [f"/v1/models/{monitor.name}/feedback", f"/v1/models/{monitor.name}/monitor/evaluate", "/", "/events"]
    big = json.dumps({"ids": ["x" * 100] * 30, "labels": ["a"] * 30}).encode()
    for route in routes:
        assert client.post(route, content=big, headers={"content-type": "application/json"}).status_code == 413, route
        chunked = client.post(route, content=iter([big[:1000], big[1000:]]), headers={"content-type": "application/json"})
        assert chunked.status_code == 413, route  # no Content-Length: cut off while reading
        wrong = client.post(route, content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
        assert wrong.status_code == 415 and "application/json" in wrong.json()["error"], route
    assert monitor.window.total == 0


def test_the_cli_limits_the_sink_to_one_megabyte_by_default() -> None:
    result = subprocess.run([MLPLAT, "monitor", "--help"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert "--max-body-bytes" in result.stdout and "1048576" in result.stdout
    assert InputPolicy().max_body_bytes == 1 << 20


MALFORMED_EVENTS: list[tuple[str, Any, Any]] = [
    ("instances not a list", {"instances": 5}, {"predictions": [0]}),
    ("empty instances", {"instances": []}, {"predictions": []}),
    ("ragged rows", {"instances": [[1.0], [1.0, 2.0]]}, {"predictions": [0, 0]}),
    ("strings", {"instances": [["a"] * 30]}, {"predictions": [0]}),
    ("mixed objects and lists", {"instances": [{"x": 1}, [1.0]]}, {"predictions": [0, 0]}),
    ("predictions not a list", "ROWS1", {"predictions": 3}),
    ("NaN prediction", "ROWS1", {"predictions": [math.nan]}),
    ("huge index", "ROWS1", {"predictions": [1e300]}),
    ("outputs not objects", "ROWS1", {"outputs": [1, 2]}),
    ("bad probabilities", "ROWS1", {"predictions": [["a", "b"]]}),
    ("V2 bad shape", {"inputs": [{"name": "x", "shape": "[1, 30]", "data": [1.0] * 30}]}, {"predictions": [0]}),
    ("V2 data not a list", {"inputs": [{"name": "x", "shape": [1, 30], "data": 3}]}, {"predictions": [0]}),
    ("request_ids not strings", "ROWS1", {"predictions": [0], "request_ids": [7]}),
    ("NaN row", "NAN", {"predictions": [0]}),
    ("infinite row", "INF", {"predictions": [0]}),
    ("float32 overflow", "HUGE", {"predictions": [0]}),
]


@pytest.mark.parametrize(("case", "request_body", "response_body"), MALFORMED_EVENTS, ids=[c[0] for c in MALFORMED_EVENTS])
def test_the_sink_answers_malformed_events_with_400(model_dir: Path, case: str, request_body: Any, response_body: Any) -> None:
    monitor, client = _service(model_dir)
    row = _rows(monitor, 1)[0]
    specials = {"ROWS1": [row], "NAN": [[math.nan, *row[1:]]], "INF": [[*row[:-1], math.inf]], "HUGE": [[1e300, *row[1:]]]}
    if isinstance(request_body, str):
        request_body = {"instances": specials[request_body]}
    reply = _log(client, "e", request_body, response_body)
    assert reply.status_code == 400 and reply.json()["error"], (case, reply.status_code, reply.text)
    assert monitor.window.total == 0


@pytest.mark.parametrize(("body", "headers"), [
    (b"{not json", {"ce-id": "x", "ce-type": REQUEST}),
    (b'{"instances": [[1]], "instances": [[2]]}', {"ce-id": "x", "ce-type": REQUEST}),  # duplicate key
    (b'{"instances": [[1]]}', {"ce-type": REQUEST}),  # no ce-id
    (b'{"instances": [[1]]}', {"ce-id": "x", "ce-type": "com.example.other"}),
    (b'{"instances": [[1]]}', {"ce-id": "x" * 1000, "ce-type": REQUEST}),
    (b"[1, 2]", {"content-type": "application/cloudevents+json"}),
    (b'{"type": 5, "id": "x", "data": {}}', {"content-type": "application/cloudevents+json"}),
    (b'{"type": "' + REQUEST.encode() + b'", "id": "x"}', {"content-type": "application/cloudevents+json"}),
    (b'{"type": "' + REQUEST.encode() + b'", "id": "x", "data": "{oops"}', {"content-type": "application/cloudevents+json"}),
    (b"1" * 5000, {"ce-id": "x", "ce-type": REQUEST}),  # an integer too long for Python to read
])
def test_malformed_cloudevent_envelopes_are_400(model_dir: Path, body: bytes, headers: dict[str, str]) -> None:
    _, client = _service(model_dir)
    reply = client.post("/", content=body, headers={"content-type": "application/json", **headers, **AUTH})
    assert reply.status_code == 400, reply.text


# ---- 5. hysteresis cannot be hurried by clients ------------------------------------------------

def test_client_evaluations_never_advance_the_hysteresis(model_dir: Path) -> None:
    monitor, client = _service(model_dir, consecutive=3, min_new_rows=50)
    client.headers.update(AUTH)
    reference = monitor.reference()
    shift = (1.5 * reference[monitor.feature_names].std().to_numpy()).astype(np.float32)
    url = f"/v1/models/{monitor.name}/monitor/evaluate"
    for i in range(3):  # three drifted windows, each evaluated at once by a client
        rows = reference[monitor.feature_names].sample(200, replace=True, random_state=i).to_numpy(np.float32) + shift
        monitor.window.record(rows, np.zeros(200, dtype=np.int64), [f"shift{i}"])
        summary = client.post(url).json()
        assert summary["dataset_drift"] and not summary["counted_toward_hysteresis"]
        assert not summary["data_drift_alert"]
    assert monitor.data_flag.streak == 0
    # the background loop's evaluation (advance=True) counts the same windows toward the alert
    monitor.evaluate()
    assert monitor.data_flag.streak == 1 and not monitor.data_flag.active


# ---- 6. monitor state --------------------------------------------------------------------------

def test_an_unwritable_state_dir_is_refused_at_startup(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=r"--state-dir .*a-file/state: the monitor cannot write its state there"):
        Monitor(model_dir, MonitorSettings(state_dir=blocker / "state"))
    for command in (["monitor", str(model_dir), "--state-dir", str(blocker)], ["serve", str(model_dir), "--state-dir",
                                                                                str(blocker / "state")]):
        result = subprocess.run([MLPLAT, *command, "--port", "1", "--insecure-monitoring-inputs"], capture_output=True,
                                text=True, timeout=180)
        assert result.returncode == 2 and "cannot write its state there" in result.stderr, result.stderr


def test_failed_saves_are_counted_and_fail_the_health_check(model_dir: Path, tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    state = tmp_path / "state"
    monitor, client = _service(model_dir, state_dir=state)
    counter = "mlplat_monitor_state_save_failures_total"
    before = REGISTRY.get_sample_value(counter, {"model": monitor.name}) or 0.0
    assert client.get("/healthz").status_code == 200
    shutil.rmtree(state)
    state.write_text("")  # the directory is gone, a file sits where it was
    for _ in range(2):
        with pytest.raises(OSError):
            monitor.persist()
    assert REGISTRY.get_sample_value(counter, {"model": monitor.name}) == before + 2
    health = client.get("/healthz")
    assert health.status_code == 503 and "saving the monitor state" in health.json()["errors"][monitor.name]
    state.unlink()
    monitor.persist()  # the disk is back: the next save clears the failure
    assert monitor.state_error is None and client.get("/healthz").status_code == 200


# ---- 7. fuzz: no 5xx, and no 200 for an invalid body --------------------------------------------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(allow_nan=True),
                        st.text(max_size=8), st.sampled_from(["benign", "malignant", "r/0", "r/1"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
FEEDBACK_BODIES = st.dictionaries(st.sampled_from(["request_id", "ids", "labels", "label_indices", "extra"]),
                                  JSON_VALUES, max_size=4)


def _valid_feedback(body: dict[str, Any], classes: list[str]) -> bool:
    """The documented rule, written out independently of the parser."""
    if set(body) - {"request_id", "ids", "labels", "label_indices"}:
        return False
    if ("request_id" in body) == ("ids" in body) or ("labels" in body) == ("label_indices" in body):
        return False
    field = "labels" if "labels" in body else "label_indices"
    values = body[field]
    if "ids" in body:
        ids = body["ids"]
        if not (isinstance(ids, list) and all(isinstance(i, str) and 0 < len(i) <= 256 for i in ids)):
            return False
        if not isinstance(values, list) or len(values) != len(ids):
            return False
    else:
        if not (isinstance(body["request_id"], str) and 0 < len(body["request_id"]) <= 256):
            return False
        values = values if isinstance(values, list) else [values]
        if not values:
            return False
    if field == "labels":
        return all(isinstance(v, str) and v in classes for v in values)
    return all(type(v) is int and 0 <= v < len(classes) for v in values)


@pytest.fixture()
def fuzz_service(model_dir: Path) -> tuple[Monitor, TestClient]:
    monitor, client = _service(model_dir)
    client.headers.update(AUTH)
    return monitor, client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(FEEDBACK_BODIES, JSON_VALUES))
def test_fuzz_feedback(fuzz_service: tuple[Monitor, TestClient], body: Any) -> None:
    monitor, client = fuzz_service
    if not monitor.window.total:
        _log(client, "seed", {"instances": _rows(monitor, 2)},
             {"predictions": [monitor.classes[0]] * 2, "request_ids": ["r/0", "r/1"]})
    reply = client.post(f"/v1/models/{monitor.name}/feedback", content=json.dumps(body),
                        headers={"content-type": "application/json"})
    assert reply.status_code < 500, reply.text
    valid = isinstance(body, dict) and _valid_feedback(body, monitor.classes)
    if reply.status_code == 200:
        assert valid, (body, reply.text)
    else:
        assert not valid or reply.status_code == 409, (body, reply.status_code, reply.text)  # 409: an id already labeled


def _finite_float32(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float64
        return False
    with np.errstate(over="ignore"):
        return math.isfinite(as_float) and bool(np.isfinite(np.float32(as_float)))


def _prediction_ok(value: Any, classes: list[str]) -> bool:
    """A logged prediction: a class name or index, class probabilities, or an object holding one."""
    if isinstance(value, dict):
        value = value.get("class", value.get("label", value.get("prediction")))
    if isinstance(value, list):
        return len(value) == len(classes) and all(_finite_float32(p) or (type(p) is float and math.isfinite(p))
                                                  for p in value)
    return value in classes if isinstance(value, str) else type(value) is int and 0 <= value < len(classes)


ROW_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.text(max_size=3),
                       st.none(), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instances=st.one_of(JSON_VALUES, st.lists(st.lists(ROW_VALUES, min_size=0, max_size=31), max_size=3)),
       predictions=st.one_of(JSON_VALUES, st.lists(st.sampled_from(["benign", "malignant", 0, 1, 2, -1, 0.5]), max_size=3)))
def test_fuzz_cloudevents(fuzz_service: tuple[Monitor, TestClient], instances: Any, predictions: Any) -> None:
    monitor, client = fuzz_service
    before = monitor.window.total
    reply = _log(client, f"fuzz-{before}-{id(instances)}", {"instances": instances}, {"predictions": predictions})
    assert reply.status_code < 500, reply.text
    width, classes = len(monitor.feature_names), monitor.classes
    valid = (isinstance(instances, list) and bool(instances) and isinstance(predictions, list)
             and len(predictions) == len(instances)
             and all(isinstance(r, list) and len(r) == width and all(_finite_float32(v) for v in r) for r in instances)
             and all(_prediction_ok(p, classes) for p in predictions))
    if reply.status_code == 200:
        assert valid and reply.json()["recorded"] == len(instances), (instances, predictions, reply.text)
    else:
        assert not valid, (instances, predictions, reply.text)
    recorded = monitor.window.frame()[monitor.feature_names].to_numpy()
    assert np.isfinite(recorded).all()


def test_the_events_port_takes_the_payload_logger_without_a_token(model_dir: Path, tmp_path: Path) -> None:
    """KServe's logger sends no Authorization header: `--events-port` serves the sink alone, without a
    token (for a NetworkPolicy to keep to the predictor pods); feedback stays behind the token."""
    import httpx
    from serving_server import free_port

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port, events_port = free_port(), free_port()
    proc = subprocess.Popen([MLPLAT, "monitor", str(model_dir), "--port", str(port), "--events-port", str(events_port),
                             "--token-file", str(token_file), "--interval", "3600"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb"))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        name = ModelDir(model_dir).read().name
        row = Monitor(model_dir).reference()[ModelDir(model_dir).read().feature_names].head(1).to_numpy().tolist()
        headers = {"ce-id": "e", "ce-specversion": "1.0", "ce-source": "kserve", "content-type": "application/json"}
        events = f"http://127.0.0.1:{events_port}/"
        assert httpx.post(events, json={"instances": row}, headers={**headers, "ce-type": REQUEST}).status_code == 200
        logged = httpx.post(events, json={"predictions": [0], "request_ids": ["x"]}, headers={**headers, "ce-type": RESPONSE})
        assert logged.json() == {"recorded": 1}
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(base, json={"instances": row}, headers={**headers, "ce-type": REQUEST}).status_code == 401
        assert httpx.post(f"{events}v1/models/{name}/feedback", json={"ids": ["x"], "label_indices": [0]}).status_code == 404
        assert httpx.post(f"{base}/v1/models/{name}/feedback", json={"ids": ["x"], "label_indices": [0]},
                          headers=AUTH).json() == {"accepted": 1, "unknown_ids": []}
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) is not None  # SIGTERM stops both servers


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_manifests_wire_the_token_secret_and_the_events_port() -> None:
    import yaml
    from conftest import REPO

    rendered = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / "prod")],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.stdout) if d}
    pod = docs[("Deployment", "mlplat-monitor")]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    token_path = args[args.index("--token-file") + 1]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"monitoring-token": "mlplat-monitoring-token"} and token_path.startswith(mounts["monitoring-token"])
    events_port = int(args[args.index("--events-port") + 1])
    isvc = next(d for (kind, _), d in docs.items() if kind == "InferenceService")
    assert isvc["spec"]["predictor"]["logger"]["url"].endswith(f":{events_port}/")
    explainer = isvc["spec"]["explainer"]["containers"][0]
    assert "--token-file" in explainer["args"]  # the explainer proves its marker with the same Secret
    policy = docs[("NetworkPolicy", "mlplat-monitor")]["spec"]
    events_rule = next(r for r in policy["ingress"] if any(p["port"] == events_port for p in r["ports"]))
    assert events_rule["from"] == [{"podSelector": {"matchLabels": {"component": "predictor",
                                                                    "app.kubernetes.io/part-of": "mlplat"}}}]
