"""End to end on loopback with real components: `mlplat serve` (the KServe predictor with monitoring
attached), a real Prometheus scraping its /metrics and evaluating the shipped alert rules, a real
Alertmanager routing to a webhook run by this test.

In-distribution traffic raises nothing; shifted traffic delivers MlplatDataDrift to the webhook;
mostly-wrong labels on the feedback route deliver MlplatGeneralizationGap; every metric the rules
and the dashboard query is on the server's /metrics; a killed (SIGKILL) server delivers
MlplatMonitorAbsent, and restarted it resumes with the same window and labels. Beside it, the
standalone `mlplat monitor` gets every call as the KServe payload logger's CloudEvents (with the
logger's own event ids, not the ids the client got) plus the same feedback, keyed by the ids the
client got, and reaches the same verdicts. Every process is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from mlplat.modeldir import LoadedModel, copy_model_dir

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "manifests" / "base" / "monitoring" / "mlplat-monitoring.rules.yaml"
MLPLAT = Path(sys.executable).with_name("mlplat")
PROMETHEUS, ALERTMANAGER = shutil.which("prometheus"), shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Webhook:
    """Alertmanager's webhook receiver: remembers every alert it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.extend(body["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["labels"]["alertname"] == name and a["status"] == "firing"]


def stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Terminate every process, then kill those still running after 20 s."""
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what: str, check: Callable[[], Any], timeout: float, procs: dict[str, subprocess.Popen[bytes]]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        try:
            value = check()
        except (httpx.HTTPError, KeyError, IndexError):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def ready(url: str, name: str) -> bool:
    return httpx.get(f"{url}/v1/models/{name}").status_code == 200


TOKEN = "e2e-monitoring-token-0123456789"
ABSENT_FOR_S = 10  # MlplatMonitorAbsent: longer than a few missed scrapes of a loaded box, short enough to wait for


def fast_rules(target: Path) -> Path:
    """The shipped rules with `for:` shortened to seconds, so the test sees alerts in seconds."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = f"{ABSENT_FOR_S}s" if rule["alert"] == "MlplatMonitorAbsent" else "2s"
    target.write_text(yaml.safe_dump(rules))
    return target


@pytest.fixture()
def stack(trained_model_dir: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    assert PROMETHEUS and ALERTMANAGER, "apt-get install prometheus prometheus-alertmanager"
    model_dir = tmp_path / "model"
    copy_model_dir(trained_model_dir, model_dir)
    model_name = LoadedModel.load(model_dir).name
    webhook = Webhook()
    ports = {name: free_port() for name in ("serve", "monitor", "prometheus", "alertmanager", "cluster")}
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "test", "group_by": ["alertname", "model"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}],
    }))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(fast_rules(tmp_path / "rules.yaml"))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]},
        "scrape_configs": [{"job_name": "mlplat-serve", "static_configs": [{"targets": [f"127.0.0.1:{ports['serve']}"]}]}],
    }))
    logs = tmp_path / "logs"
    logs.mkdir()
    token_file = tmp_path / "monitoring-token"  # both servers take feedback, events and evaluations only with it
    token_file.write_text(TOKEN)
    commands = {
        # default window settings (5000 rows, 3 consecutive windows of >= 100 new rows, >= 50 labels)
        "serve": [str(MLPLAT), "serve", str(model_dir), "--port", str(ports["serve"]), "--state-dir", str(tmp_path / "state"),
                  "--monitor-interval-s", "0.5", "--token-file", str(token_file)],
        "monitor": [str(MLPLAT), "monitor", str(model_dir), "--port", str(ports["monitor"]), "--interval", "0.5",
                    "--report-interval", "3600", "--token-file", str(token_file)],
        "prometheus": [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
        "alertmanager": [ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
                         f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                         f"--cluster.listen-address=127.0.0.1:{ports['cluster']}"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(*names: str) -> None:
        for name in names:
            procs[name] = subprocess.Popen(commands[name], stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)

    try:
        start("serve", "monitor")
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        wait_for("the model server", lambda: ready(urls["serve"], model_name), 90, procs)
        wait_for("the monitor", lambda: httpx.get(f"{urls['monitor']}/healthz").status_code == 200, 60, procs)
        start("prometheus", "alertmanager")  # after the server: before, its monitor really is absent
        wait_for("prometheus", lambda: httpx.get(f"{urls['prometheus']}/-/ready").status_code == 200, 30, procs)
        wait_for("alertmanager", lambda: httpx.get(f"{urls['alertmanager']}/-/ready").status_code == 200, 30, procs)
        yield {"urls": urls, "procs": procs, "webhook": webhook, "model_dir": model_dir, "logs": logs, "commands": commands}
    finally:
        stop(procs)
        webhook.server.shutdown()
        webhook.server.server_close()
        assert all(proc.poll() is not None for proc in procs.values())


def predict(client: httpx.Client, urls: dict[str, str], name: str, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """One V1 predict call, then what the KServe payload logger sends the monitor for it: a request
    and a response CloudEvent, with the logger's own event id (its Ce-Id, or a fresh uuid), not the
    ids the client got. Returns the predicted class names and the per-row ids the client got."""
    request = {"instances": rows.tolist()}
    response = client.post(f"{urls['serve']}/v1/models/{name}:predict", json=request)  # the server picks the id
    assert response.status_code == 200, response.text
    body = response.json()
    event_id = uuid.uuid4().hex
    assert len(set(body["request_ids"])) == len(body["predictions"]) == len(rows)
    assert not any(event_id in row_id for row_id in body["request_ids"])
    headers = {"ce-id": event_id, "ce-specversion": "1.0", "ce-source": "http://localhost/predictor",
               "ce-inferenceservicename": name, "content-type": "application/json"}
    for kind, data in (("request", request), ("response", body)):
        logged = client.post(urls["monitor"], json=data, headers={**headers, "ce-type": f"org.kubeflow.serving.inference.{kind}"})
        assert logged.status_code == 200, logged.text
    return body["predictions"], body["request_ids"]


def prom_alerts(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/api/v1/alerts").json()["data"]["alerts"]


def test_alerts_reach_the_webhook(stack: dict[str, Any]) -> None:
    from test_monitoring_rules import queried_metrics

    urls, procs, webhook = stack["urls"], stack["procs"], stack["webhook"]
    model = LoadedModel.load(stack["model_dir"])
    reference = model.reference()
    X = reference[model.feature_names].to_numpy(np.float32)
    rng = np.random.default_rng(0)
    client = httpx.Client(timeout=30, headers={"authorization": f"Bearer {TOKEN}"})
    name = model.name

    def scraped(query: str) -> float | None:
        result = httpx.get(f"{urls['prometheus']}/api/v1/query", params={"query": query}).json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    # 1. in-distribution traffic: 300 training-distribution rows in 6 predict calls of 50
    for _ in range(6):
        predict(client, urls, name, X[rng.integers(0, len(X), 50)])
    wait_for("an evaluated window in Prometheus", lambda: scraped(f'mlplat_monitor_window_rows{{model="{name}"}}') == 300
             and scraped(f'mlplat_drift_share{{model="{name}"}}') is not None, 90, procs)
    time.sleep(4)  # several evaluations, scrapes and rule evaluations
    assert scraped(f'mlplat_data_drift_detected{{model="{name}"}}') == 0
    assert prom_alerts(urls["prometheus"]) == [] and webhook.alerts == []

    # 2. shifted traffic: every feature +1.5 std in 6 calls of 100 rows, each its own window
    #    (hysteresis needs 3 in a row); the drift alert must reach the webhook
    shift = (1.5 * reference[model.feature_names].std().to_numpy()).astype(np.float32)
    shifted_ids: list[str] = []
    predicted: list[str] = []
    started = time.monotonic()
    for batch in range(1, 7):
        names, ids = predict(client, urls, name, X[rng.integers(0, len(X), 100)] + shift)
        predicted += names
        shifted_ids += ids
        for url in (urls["serve"], urls["monitor"]):  # evaluated before the next batch, however loaded the box
            wait_for(f"evaluation of batch {batch}", lambda url=url, batch=batch: client.get(f"{url}/v1/models/{name}/monitor")
                     .json().get("rows") == 300 + 100 * batch, 60, procs)
    alerts = wait_for("MlplatDataDrift at the webhook", lambda: webhook.firing("MlplatDataDrift"), 90, procs)
    drift_delay = time.monotonic() - started
    assert alerts[0]["labels"]["model"] == name and alerts[0]["labels"]["severity"] == "warning"
    assert alerts[0]["annotations"]["runbook_url"].endswith("#mlplatdatadrift")
    assert not webhook.firing("MlplatGeneralizationGap")  # no labels yet: no accuracy, no gap

    # 3. labels that are mostly wrong, on the server's feedback route: the generalization-gap alert fires
    classes = model.class_names
    wrong = {c: next(o for o in classes if o != c) for c in classes}
    labels = [c if rng.random() < 0.1 else wrong[c] for c in predicted]
    for url in (urls["serve"], urls["monitor"]):
        response = client.post(f"{url}/v1/models/{name}/feedback", json={"ids": shifted_ids, "labels": labels})
        assert response.status_code == 200 and response.json()["accepted"] == 600, response.text
    gap = wait_for("MlplatGeneralizationGap at the webhook", lambda: webhook.firing("MlplatGeneralizationGap"), 90, procs)
    assert gap[0]["labels"]["model"] == name and gap[0]["labels"]["severity"] == "critical"
    assert scraped(f'mlplat_generalization_gap{{model="{name}",metric="accuracy"}}') < -3
    assert scraped(f'mlplat_monitor_labels_received_total{{model="{name}"}}') == 600
    print(f"drift alert reached the webhook {drift_delay:.1f}s after the shift began")

    # the standalone monitor, fed only by CloudEvents and feedback, reached the same verdicts
    summary = client.post(f"{urls['monitor']}/v1/models/{name}/monitor/evaluate").json()
    assert summary["rows"] == 900 and summary["labeled_rows"] == 600 and summary["data_drift_alert"]
    assert summary["generalization_gap"]["accuracy"] < -3

    # 4. every metric the alert rules and the dashboard query is on the server's own /metrics
    exported = {line.split("{")[0].split(" ")[0] for line in client.get(f"{urls['serve']}/metrics").text.splitlines()
                if line and not line.startswith("#")}
    missing = queried_metrics() - exported
    assert not missing, f"queried but not exported by mlplat serve: {sorted(missing)}"

    # 5. a killed server: its monitor is absent from Prometheus, and the alert says so; restarted, it
    #    lost nothing (window, labels and hysteresis were saved within a second of changing)
    assert not webhook.firing("MlplatMonitorAbsent")
    server = procs.pop("serve")
    server.kill()
    assert server.wait(timeout=30) == -9
    absent = wait_for("MlplatMonitorAbsent at the webhook", lambda: webhook.firing("MlplatMonitorAbsent"),
                      ABSENT_FOR_S + 60, procs)
    assert absent[0]["labels"]["severity"] == "warning"
    procs["serve"] = subprocess.Popen(stack["commands"]["serve"], stdout=(stack["logs"] / "serve2.log").open("wb"),
                                      stderr=subprocess.STDOUT)
    wait_for("the restarted server", lambda: ready(urls["serve"], name), 90, procs)
    # the restarted server's first evaluation also writes the Evidently report: slow on a loaded box
    summary = client.post(f"{urls['serve']}/v1/models/{name}/monitor/evaluate", timeout=180).json()
    assert summary["rows"] == 900 and summary["labeled_rows"] == 600 and summary["data_drift_alert"]
    assert summary["generalization_gap"]["accuracy"] < -3
