"""SIGTERM on the real `mlplat serve` and `mlplat monitor` processes (issue 14): readiness turns false
first, requests in flight finish, new connections are refused, the monitor saves its state, exit 0;
and the manifests give the pods time for all of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlplat.modeldir import LoadedModel
from serving_server import free_port


def start(*args: str) -> tuple[subprocess.Popen[bytes], object]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "mlplat", *args], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, log


def wait_for(url: str, process: subprocess.Popen[bytes], log: object, status: int = 200, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"exited {process.returncode}:\n{log.read().decode()[-3000:]}")  # type: ignore[attr-defined]
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


def read_response(sock: socket.socket, timeout_s: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (it does once a shutdown begins)."""
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_serve_drains_then_finishes_the_request_in_flight_and_exits_0(trained_model_dir: Path, tmp_path: Path) -> None:
    model = LoadedModel.load(trained_model_dir)
    row = np.random.default_rng(0).normal(size=len(model.feature_names)).tolist()
    port, state = free_port(), tmp_path / "state"
    process, log = start("serve", str(trained_model_dir), "--port", str(port), "--drain-s", "2",
                         "--state-dir", str(state), "--insecure-monitoring-inputs")
    base, predict = f"http://127.0.0.1:{port}", f"/v1/models/{model.name}:predict"
    try:
        wait_for(f"{base}/v2/health/ready", process, log)
        assert httpx.post(base + predict, json={"instances": [row] * 3}).status_code == 200  # rows for the window
        # a request in flight when the signal comes: its head and part of its body are in
        body = json.dumps({"instances": [row]}).encode()
        in_flight = socket.create_connection(("127.0.0.1", port))
        in_flight.sendall(f"POST {predict} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])
        time.sleep(0.3)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        wait_for(f"{base}/v2/health/ready", process, log, status=503, timeout_s=1.5)  # not ready first ...
        assert httpx.post(base + predict, json={"instances": [row]}).status_code == 200  # ... while still serving
        while not refused(port):  # after the drain the listener closes
            assert time.monotonic() - signalled < 10, "still accepting connections 10 s after SIGTERM"
            time.sleep(0.1)
        assert time.monotonic() - signalled >= 1.9  # not before the drain is over
        assert process.poll() is None  # it waits for the request in flight
        in_flight.sendall(body[20:])
        answer = read_response(in_flight)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 15
    finally:
        if process.poll() is None:
            process.kill()
        log.seek(0)  # type: ignore[attr-defined]
        output = log.read().decode()  # type: ignore[attr-defined]
        log.close()  # type: ignore[attr-defined]
    assert "Traceback" not in output, output[-3000:]
    saved = {p.name for p in state.rglob("*")}
    assert {"monitor.json", "window.parquet"} <= saved, saved  # the lifespan shutdown saved the window


def test_monitor_with_two_ports_stops_both_saves_its_state_and_exits_0(trained_model_dir: Path, tmp_path: Path) -> None:
    port, events_port, state = free_port(), free_port(), tmp_path / "state"
    process, log = start("monitor", str(trained_model_dir), "--port", str(port), "--events-port", str(events_port),
                         "--state-dir", str(state), "--insecure-monitoring-inputs", "--drain-s", "1")
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process, log)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        wait_for(f"http://127.0.0.1:{port}/healthz", process, log, status=503, timeout_s=1)
        assert process.wait(timeout=30) == 0  # not 143: uvicorn's re-raised SIGTERM once killed it after shutting down
        assert time.monotonic() - signalled < 10
        assert refused(port) and refused(events_port)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()  # type: ignore[attr-defined]
    assert (state / LoadedModel.load(trained_model_dir).name / "monitor.json").is_file()


@pytest.mark.parametrize("component", ["predictor", "explainer"])
def test_pods_get_the_drain_and_the_shutdown_timeout_before_sigkill(component: str) -> None:
    from mlplat.k8s.inferenceservice import Deployment, build_inference_service, to_dict

    spec = to_dict(build_inference_service(Deployment("shutdown-test")))["spec"][component]
    args = spec["containers"][0]["args"]

    def option(name: str) -> float:
        return float(args[args.index(name) + 1])

    assert option("--drain-s") > 0  # readiness off before the listener closes: no preStop hook needed
    assert option("--shutdown-timeout-s") > option("--explain-timeout-s")  # an explanation in flight can finish
    assert spec["terminationGracePeriodSeconds"] > option("--drain-s") + option("--shutdown-timeout-s")
    assert "lifecycle" not in spec["containers"][0]


def test_monitor_manifest_gives_the_drain_and_shutdown_time() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[1]
    docs = [d for d in yaml.safe_load_all((repo / "manifests/base/monitoring/monitor.yaml").read_text()) if d]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    drain, timeout = float(args[args.index("--drain-s") + 1]), float(args[args.index("--shutdown-timeout-s") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain + timeout
