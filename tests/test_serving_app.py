"""The serving app built in-process by `build_app`: KServe's routes on a fresh app, mlplat errors
mapped to HTTP statuses by one handler, and nothing global touched. test_serving.py runs the same
bad inputs against the real `mlplat serve` process."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlplat.modeldir import LoadedModel
from mlplat.monitoring.inputs import InputPolicy
from mlplat.monitoring.monitor import MonitorSettings
from mlplat.serving.predictor import ServingOptions
from mlplat.serving.server import ServingApp, build_app
from prometheus_client import REGISTRY
from test_serving import BAD_INPUTS, MAX_BODY, MAX_ROWS, MONITORING_TOKEN, bad_request

QUIET_MONITOR = MonitorSettings(interval_s=3600, inputs=InputPolicy(token=MONITORING_TOKEN))  # no evaluation during a test


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> LoadedModel:
    return LoadedModel.load(trained_model_dir)


@pytest.fixture(scope="module")
def rows(model: LoadedModel) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(4, len(model.feature_names))).astype(np.float32)


@pytest.fixture(scope="module")
def served(trained_model_dir: Path) -> Iterator[ServingApp]:
    yield build_app(trained_model_dir, ServingOptions(max_request_rows=MAX_ROWS), MAX_BODY, QUIET_MONITOR)


@pytest.fixture(scope="module")
def client(served: ServingApp) -> Iterator[TestClient]:
    with TestClient(served.app, raise_server_exceptions=False) as c:  # `with`: runs the app's lifespan
        yield c


def rejected(model: str, reason: str) -> float:
    return REGISTRY.get_sample_value("mlplat_rejected_requests_total", {"model": model, "reason": reason}) or 0.0


def test_build_app_leaves_kserve_globals_and_argv_alone(trained_model_dir: Path) -> None:
    from kserve import model_server

    argv = list(sys.argv)
    global_app = model_server.app
    before = (len(global_app.routes), len(global_app.user_middleware), dict(global_app.exception_handlers))
    first = build_app(trained_model_dir, ServingOptions())
    second = build_app(trained_model_dir, ServingOptions())
    assert sys.argv == argv
    assert (len(global_app.routes), len(global_app.user_middleware), dict(global_app.exception_handlers)) == before
    assert first.app is not second.app and first.model is not second.model
    assert first.repository is not second.repository
    for built in (first, second):
        built.model.stop()


def test_kserve_reads_none_of_the_serve_options() -> None:
    # kserve parses sys.argv when it is imported; `mlplat serve`'s own options must not be read as its flags
    from kserve.model_server import parser
    from mlplat.cli.serve_cmd import serve

    # the KServe controller's own arguments (--model_name, --predictor_host, --http_port, --workers) are accepted
    # by `mlplat serve` on purpose, with KServe's meaning; kserve's parser may read them too
    controller = {"--model_name", "--predictor_host", "--http_port", "--workers"}
    flags = [decl for p in inspect.signature(serve).parameters.values()
             for decl in getattr(p.default, "param_decls", None) or () if decl.startswith("--") and decl not in controller]
    assert len(flags) > 10 and "--port" in flags
    argv = [token for flag in flags for token in (flag, "1")]
    assert vars(parser.parse_known_args(argv)[0]) == vars(parser.parse_known_args([])[0])


def test_predict_in_process_matches_the_model(client: TestClient, model: LoadedModel, rows: np.ndarray) -> None:
    reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": rows.tolist()})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["probabilities"], model.predict_proba(rows), atol=1e-5)
    assert client.get(f"/v2/models/{model.name}/ready").status_code == 200


@pytest.mark.parametrize(("case", "request_kwargs", "status", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_in_process(client: TestClient, model: LoadedModel, case: str, request_kwargs: dict[str, Any],
                              status: int, message: str) -> None:
    path, kwargs = bad_request(model, request_kwargs)
    reply = client.post(path, **kwargs)
    assert reply.status_code == status, (case, reply.text)
    assert message in reply.text, (case, reply.text)
    assert "Traceback" not in reply.text


def test_a_null_is_imputed_with_the_training_value_and_counted(client: TestClient, model: LoadedModel,
                                                               rows: np.ndarray) -> None:
    """The documented policy (README "missing values"): a null is the training fill value, never a 400 or a NaN."""
    feature = model.feature_names[2]
    before = REGISTRY.get_sample_value("mlplat_imputed_values_total", {"model": model.name, "feature": feature}) or 0.0
    row = rows[0].tolist()
    row[2] = None
    v1 = client.post(f"/v1/models/{model.name}:predict", json={"instances": [row]})
    v2 = client.post(f"/v2/models/{model.name}/infer", json={"inputs": [
        {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}]})
    assert v1.status_code == 200 and v2.status_code == 200, v1.text + v2.text
    filled = rows[:1].astype(np.float64).copy()
    filled[0, 2] = model.standardizer.fill[2]
    np.testing.assert_allclose(v1.json()["probabilities"], model.predict_proba(filled), atol=1e-5)
    assert REGISTRY.get_sample_value("mlplat_imputed_values_total", {"model": model.name, "feature": feature}) == before + 2


def test_invalid_input_is_counted_by_its_reason(client: TestClient, model: LoadedModel) -> None:
    shape, malformed = rejected(model.name, "shape"), rejected(model.name, "malformed")
    reply = client.post(f"/v1/models/{model.name}:predict", json={"instances": [[1.0] * 3]})
    assert reply.status_code == 400 and "has 3 values" in reply.json()["error"]
    assert rejected(model.name, "shape") == shape + 1 and rejected(model.name, "malformed") == malformed


def test_explain_without_an_explainer_is_404(client: TestClient, model: LoadedModel, rows: np.ndarray) -> None:
    before = rejected(model.name, "no_explainer")
    reply = client.post(f"/v1/models/{model.name}:explain", json={"instances": rows[:1].tolist()})
    assert reply.status_code == 404 and "without an explain step" in reply.json()["error"]
    assert rejected(model.name, "no_explainer") == before + 1


def test_a_timed_out_explanation_is_stopped_and_the_next_one_runs(trained_model_dir: Path, model: LoadedModel,
                                                                  rows: np.ndarray) -> None:
    import os

    import psutil
    from mlplat.serving.explain_worker import ExplainWorker
    from spinning_explainer import SPIN, spinning_explainer

    served = build_app(trained_model_dir, ServingOptions(explain_timeout_s=1.0))
    served.model.explain_worker = worker = ExplainWorker(spinning_explainer, model.name)
    url = f"/v1/models/{model.name}:explain"
    quick, slow = rows[:1].tolist(), [[SPIN + 120, *rows[0, 1:].tolist()]]  # the slow one would spin 2 minutes
    with TestClient(served.app) as c:
        first = c.post(url, json={"instances": quick})
        assert first.status_code == 200, first.text
        pid = first.json()["explanations"][0]["pid"]
        assert pid != os.getpid() and pid == worker.pid  # explained in the worker process
        reply = c.post(url, json={"instances": slow})
        assert reply.status_code == 504 and "longer than 1 s" in reply.json()["error"], reply.text
        assert "it was stopped" in reply.json()["error"]
        assert not psutil.pid_exists(pid)  # the spinning process is gone: no core kept busy
        assert c.post(f"/v1/models/{model.name}:predict", json={"instances": rows.tolist()}).status_code == 200
        after = c.post(url, json={"instances": quick})  # waits for the restarted worker to load, then explains
        assert after.status_code == 200, after.text
        assert after.json()["explanations"][0]["pid"] not in (pid, os.getpid())
        restarted = after.json()["explanations"][0]["pid"]
    assert worker.pid is None and not psutil.pid_exists(restarted)  # the app's shutdown stopped the worker


def test_unreachable_predictor_is_502(trained_model_dir: Path, model: LoadedModel, rows: np.ndarray) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = build_app(trained_model_dir, ServingOptions(predictor_url=f"http://127.0.0.1:{port}"))
    with TestClient(served.app) as c:
        reply = c.post(f"/v1/models/{model.name}:predict", json={"instances": rows.tolist()})
    assert reply.status_code == 502 and f"predictor at http://127.0.0.1:{port} unreachable" in reply.json()["error"]


def test_two_apps_in_one_process_share_no_state(trained_model_dir: Path, model: LoadedModel, rows: np.ndarray) -> None:
    strict = build_app(trained_model_dir, ServingOptions(max_request_rows=2), monitor=QUIET_MONITOR)
    loose = build_app(trained_model_dir, ServingOptions(max_request_rows=10), monitor=QUIET_MONITOR)
    url = f"/v1/models/{model.name}:predict"
    auth = {"authorization": f"Bearer {MONITORING_TOKEN}"}
    with TestClient(strict.app, headers=auth) as a, TestClient(loose.app, headers=auth) as b:
        assert a.post(url, json={"instances": rows[:3].tolist()}).status_code == 400  # its own row limit
        answered = b.post(url, json={"instances": rows[:3].tolist()})
        assert answered.status_code == 200
        assert a.post(url, json={"instances": rows[:1].tolist()}).status_code == 200
        assert (strict.model.recorder.total, loose.model.recorder.total) == (1, 3)  # each its own window
        feedback = f"/v1/models/{model.name}/feedback"
        ids = answered.json()["request_ids"]
        assert a.post(feedback, json={"ids": ids, "label_indices": [0] * 3}).json() == {"accepted": 0, "unknown_ids": ids}
        assert b.post(feedback, json={"ids": ids, "label_indices": [0] * 3}).json() == {"accepted": 3, "unknown_ids": []}
