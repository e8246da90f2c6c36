"""`mlplat demo`: the whole platform in one command.

Runs a spec in-process (validation, remediation, tuning, training, evaluation, explanation),
serves the published model with `mlplat serve` on 127.0.0.1, asks it for predictions and an
explanation, sends in-distribution and then shifted traffic with delayed labels, and shows the
drift and generalization-gap gauges on /metrics. Every step talks to the real server over HTTP.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from mlplat.cli.common import RUNS_DIR_OPTION, console
from mlplat.errors import MlplatError

DEMO_SPEC = Path("pipelines/demo.yaml")
GAUGES = ("mlplat_drift_share", "mlplat_data_drift_detected", "mlplat_prediction_drift", "mlplat_live_",
          "mlplat_generalization_gap")


def demo(
    spec_path: Path = typer.Argument(DEMO_SPEC, metavar="SPEC", help="Pipeline spec to run and serve"),
    runs_dir: Path = RUNS_DIR_OPTION,
    port: int = typer.Option(0, "--port", help="Port for the model server (0: a free one)"),
) -> None:
    """Run the main job end to end, then serve it: predict, explain, drift metrics."""
    import httpx

    from mlplat.cli.run_cmd import RunnerName, run
    from mlplat.data import Splits
    from mlplat.runs import RunStore

    run(spec_path, runs_dir, RunnerName.in_process, None, None)
    store = RunStore(runs_dir)
    latest = store.get("latest")
    splits = Splits.load(latest.step_dir("ingest"))
    port = port or _free_port()
    console.rule(f"[bold]serving {latest.id} on 127.0.0.1:{port}")
    log_path = latest.dir / "serve.log"
    # feedback and evaluations need the server's bearer token (README: Monitoring)
    token_file = latest.dir / "monitoring-token"
    token_file.touch(mode=0o600)
    token_file.write_text(secrets.token_hex(32))
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlplat", "serve", "latest", "--runs-dir", str(runs_dir),
                                   "--host", "127.0.0.1", "--port", str(port), "--token-file", str(token_file),
                                   "--monitor-interval-s", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"authorization": f"Bearer {token_file.read_text()}"}) as client:
                name = _wait_ready(client, server)
                if splits.info.image_files:
                    from mlplat.cli.demo_images import image_demo

                    image_demo(client, name, splits, latest.dir, _next_evaluation)
                else:
                    top = _predict_and_explain(client, name, splits)
                    _traffic(client, name, splits, top or [str(splits.validation.features.columns[0])])
        finally:
            server.terminate()
            server.wait(timeout=30)
    console.print(f"server log: {log_path}")
    console.print(f"[bold green]demo done[/]: model {latest.model_dir}, reports under {latest.dir / 'steps'}")


def _wait_ready(client: Any, server: subprocess.Popen[bytes], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise MlplatError(f"model server exited with code {server.returncode}")
        try:
            models = client.get("/v1/models").json()["models"]
            if models and client.get(f"/v1/models/{models[0]}").json().get("ready"):
                return str(models[0])
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    raise MlplatError(f"model server not ready after {timeout_s:.0f}s")


def _predict_and_explain(client: Any, name: str, splits: Any) -> list[str] | None:
    """Predict three test rows and explain one; returns the five most influential features."""
    rows = splits.test.features.head(3)
    response = client.post(f"/v1/models/{name}:predict", json={"instances": rows.to_dict(orient="records")})
    response.raise_for_status()
    body = response.json()
    truth = [splits.info.classes[i] for i in splits.test.labels[:3]]
    console.print(f"[bold]predict[/] (3 rows keyed by feature name) → {body['predictions']}  (truth: {truth})")
    console.print(f"  request ids: {body.get('request_ids')}")
    started = time.perf_counter()
    response = client.post(f"/v1/models/{name}:explain", json={"instances": rows.head(1).to_numpy().tolist()})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        console.print(f"[yellow]explain[/] → HTTP {response.status_code}: {response.text[:200]}")
        return None
    explanation = response.json()["explanations"][0]
    if "anchor" in explanation:
        console.print(f"[bold]explain[/] ({elapsed:.0f} ms) anchor: {' AND '.join(explanation['anchor'])} "
                      f"(precision {explanation.get('precision')}, coverage {explanation.get('coverage')})")
        return None
    top = sorted(explanation.get("attributions", {}).items(), key=lambda kv: -abs(kv[1]))[:5]
    console.print(f"[bold]explain[/] ({elapsed:.0f} ms) top attributions: " + ", ".join(f"{k}={v:+.3f}" for k, v in top))
    return [feature for feature, _ in top[:5]] or None


def _traffic(client: Any, name: str, splits: Any, shifted: list[str]) -> None:
    """In-distribution traffic, then three windows with the five most influential features shifted by
    +3 std, each followed by its delayed labels and the server's next background evaluation (a
    client's evaluation never advances the hysteresis); the drift alert needs three drifted windows
    in a row, so it rises on the last one."""
    import numpy as np

    rng = np.random.default_rng(0)
    columns = list(splits.validation.features.columns)
    pool, labels = splits.validation.features.to_numpy(), splits.validation.labels
    shift = np.zeros(len(columns))
    for feature in shifted:
        shift[columns.index(feature)] = 3.0 * float(splits.train.features[feature].std())
    phases = [("in-distribution", 0.0)] + [(f"shifted {shifted} +3 std, window {k}", 1.0) for k in (1, 2, 3)]
    for phase, scale in phases:
        index = rng.integers(0, len(pool), 400)
        rows = pool[index] + scale * shift
        ids: list[str] = []
        for batch in np.array_split(np.arange(len(rows)), 20):
            body = client.post(f"/v1/models/{name}:predict", json={"instances": rows[batch].tolist()}).json()
            ids += body["request_ids"]
        client.post(f"/v1/models/{name}/feedback", json={"ids": ids, "labels": [splits.info.classes[i] for i in labels[index]]})
        summary = _next_evaluation(client, name, time.time())
        console.print(f"[bold]{phase}[/]: 400 requests + labels → drift share {summary.get('drift_share', 0):.2f} "
                      f"(importance-weighted {summary.get('drift_share_weighted') or 0:.2f}), "
                      f"alerts: data drift {summary.get('data_drift_alert')}, prediction drift "
                      f"{summary.get('prediction_drift_alert')}; live accuracy "
                      f"{summary.get('live', {}).get('accuracy', float('nan')):.3f}, gap (CV std units) "
                      f"{summary.get('generalization_gap', {}).get('accuracy', float('nan')):+.2f}")
    metrics = client.get("/metrics").text
    shown = [line for line in metrics.splitlines() if line.startswith(GAUGES)]
    console.print("[bold]/metrics[/] (drift and generalization gauges, what the PrometheusRule alerts on):")
    for line in shown[:20]:
        console.print(f"  {line}", highlight=False)


def _next_evaluation(client: Any, name: str, after: float, timeout_s: float = 120) -> dict[str, Any]:
    """The first background evaluation that started after `after` (the server evaluates every second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary: dict[str, Any] = client.get(f"/v1/models/{name}/monitor").json()
        if summary.get("time", 0) > after:
            return summary
        time.sleep(0.2)
    raise MlplatError(f"the model server did not evaluate its monitor within {timeout_s:.0f}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
