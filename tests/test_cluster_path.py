"""The cluster path on one machine (issue 15, item 10): what a Kubeflow cluster would do, with real components.

1. compile the spec (`mlplat compile`);
2. run it with kfp.local (`mlplat run --runner kfp-local`): the compiled publish task uploads the model to
   moto's S3 server on 127.0.0.1, the model store the spec names;
3. `mlplat deploy` the store's URI: an InferenceService whose storageUri is the published version, and its
   monitor reading the same URI with the same Secret's credentials;
4. the storage initializer's work (KServe's `kserve_storage.Storage.download` of STORAGE_URI to each pod's
   /mnt/models), then the predictor and the explainer as subprocesses with exactly the arguments the KServe
   v0.20 controller builds (tests/kserve_controller.py) and the kubelet expands;
5. predict on the predictor, explain on the explainer (which asks the predictor);
6. the monitor, started from its Deployment's command line (downloading the model itself), takes the payload
   logger's CloudEvents on its events port and feedback on its token port; a real Prometheus scrapes it and
   evaluates the shipped alert rules, and the drift alert reaches a real Alertmanager's webhook receiver.

Only the monitor's evaluation interval is shortened (`--interval`), as the rules' `for:` are
(test_monitoring_e2e.fast_rules): seconds instead of minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from crd_schemas import documents, problems
from kserve_controller import local_command, storage_initializer
from s3_server import mlplat, moto_bucket
from test_monitoring_e2e import ALERTMANAGER, PROMETHEUS, TOKEN, Webhook, fast_rules, free_port, predict, stop, wait_for

pytestmark = [pytest.mark.cluster_path, pytest.mark.slow]

BUCKET, NAMESPACE = "models", "mlplat"
SPEC: dict[str, Any] = {
    "name": "cluster-path",
    "seed": 5,
    "dataset": {"source": "sklearn:breast_cancer", "validation": 0.2, "test": 0.2},
    "steps": {
        "train": {"plugin": "mlp", "params": {"depth": 1, "width": 16, "epochs": 4, "early_stopping_patience": None,
                                              "checkpoint_every": 0}},
        "explain": {"plugin": "integrated_gradients", "params": {"n_steps": 8, "importance_rows": 10, "background_clusters": 4}},
    },  # no drift step: the monitor's default detector fits on the model's reference rows
    "publish": {"uri": f"s3://{BUCKET}/cluster-path"},
}


@contextmanager
def processes(logs: Path) -> Iterator[tuple[dict[str, subprocess.Popen[bytes]], Any]]:
    """Start named processes (each logging to logs/<name>.log); every one is stopped at the end."""
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        procs[name] = subprocess.Popen(command, env=env, stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)

    try:
        yield procs, start
    finally:
        stop(procs)


def python_m(command: list[str]) -> list[str]:
    """The container's `mlplat ...` as this environment's `python -m mlplat ...`."""
    assert command[0] == "mlplat", command
    return [sys.executable, "-m", "mlplat", *command[1:]]


def test_one_machine_cluster_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert PROMETHEUS and ALERTMANAGER, "apt-get install prometheus prometheus-alertmanager (make sysdeps)"
    monkeypatch.setenv("MLPLAT_MODEL_CACHE", str(tmp_path / "cache"))
    spec_file, logs = tmp_path / "cluster-path.yaml", tmp_path / "logs"
    spec_file.write_text(yaml.safe_dump(SPEC))
    logs.mkdir()
    phases = {"start": time.monotonic()}  # printed at the end: where the test's time goes
    with ExitStack() as stack:
        s3 = stack.enter_context(moto_bucket(BUCKET))
        procs, start = stack.enter_context(processes(logs))

        # 1-2. compile; run with kfp.local, whose publish task uploads to the S3 server
        assert mlplat("compile", str(spec_file), "-o", str(tmp_path / "pipeline.yaml")) == 0
        compiled = next(yaml.safe_load_all((tmp_path / "pipeline.yaml").read_text()))  # the IR; then the platform spec
        assert compiled["root"]["inputDefinitions"]["parameters"]["model_store"]["defaultValue"] == SPEC["publish"]["uri"]
        assert mlplat("run", str(spec_file), "--runner", "kfp-local", "--runs-dir", str(tmp_path / "runs")) == 0
        run_id = (tmp_path / "runs" / "latest").readlink().name
        phases["compiled, kfp.local run"] = time.monotonic()
        version = f"{SPEC['publish']['uri']}/models/{run_id}/"
        assert s3.get_object(Bucket=BUCKET, Key=f"cluster-path/models/{run_id}/model.json")["ContentLength"] > 0

        # 3. deploy the store's URI; every emitted object passes its schema
        out = tmp_path / "deploy"
        assert mlplat("deploy", SPEC["publish"]["uri"], "-o", str(out), "--storage-secret", "s3-creds") == 0
        isvc = yaml.safe_load((out / "inferenceservice.yaml").read_text())
        monitor_docs = list(documents((out / "monitor.yaml").read_text()))
        assert [problems(d) for d in [isvc, *monitor_docs]] == [[]] * (1 + len(monitor_docs))
        name = isvc["metadata"]["name"]
        storage_uris = {c: {e["name"]: e.get("value") for e in isvc["spec"][c]["containers"][0]["env"]}["STORAGE_URI"]
                        for c in ("predictor", "explainer")}
        [monitor] = [d for d in monitor_docs if d["kind"] == "Deployment"]
        [monitor_container] = monitor["spec"]["template"]["spec"]["containers"]
        assert set(storage_uris.values()) == {version} and monitor_container["args"][1] == version

        # 4. storage initializer, then predictor and explainer with the controller's arguments
        ports = {k: free_port() for k in ("predictor", "explainer", "monitor", "events", "prometheus", "alertmanager", "cluster")}
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        for component in ("predictor", "explainer"):
            models = storage_initializer(isvc, component, tmp_path / component / "mnt-models")
            swap = {"0.0.0.0": "127.0.0.1", "8080": str(ports[component]), "/var/run/secrets/mlplat/token": str(token_file),
                    f"{name}-predictor.{NAMESPACE}": f"127.0.0.1:{ports['predictor']}"}
            command = local_command(isvc, component, NAMESPACE, models, swap)
            if component == "explainer":  # the args name the predictor, so the controller adds only these
                assert command[-4:] == ["--model_name", name, "--http_port", str(ports["explainer"])]
                assert command[command.index("--predictor_host") + 1] == f"127.0.0.1:{ports['predictor']}"
            start(component, python_m(command), {**os.environ, "HOME": str(tmp_path)})

        # 6 (set up). the monitor from its Deployment, Prometheus scraping it, Alertmanager with a webhook
        swap = {"0.0.0.0": "127.0.0.1", "8090": str(ports["monitor"]), "8091": str(ports["events"]),
                "/var/lib/mlplat-monitor": str(tmp_path / "monitor-state"), "/var/run/secrets/mlplat/token": str(token_file)}
        env = {**os.environ, **{e["name"]: e["value"] for e in monitor_container["env"] if "value" in e},
               "MLPLAT_MODEL_CACHE": str(tmp_path / "monitor-cache"), "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path)}
        start("monitor", python_m([*monitor_container["command"], *[swap.get(a, a) for a in monitor_container["args"]],
                                   "--interval", "0.5", "--report-interval", "3600"]), env)
        webhook = Webhook()
        stack.callback(webhook.server.server_close)
        stack.callback(webhook.server.shutdown)
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "test", "group_by": ["alertname", "model"], "group_wait": "1s", "group_interval": "1s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}]}))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(tmp_path / "rules.yaml"))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]},
            "scrape_configs": [{"job_name": "mlplat-monitor", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [f"127.0.0.1:{ports['monitor']}"]}]}]}))
        start("prometheus", [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])
        start("alertmanager", [ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
                               f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                               f"--cluster.listen-address=127.0.0.1:{ports['cluster']}"])
        url = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        for component in ("predictor", "explainer"):
            wait_for(f"the {component}", lambda c=component: httpx.get(f"{url[c]}/v2/health/ready").status_code == 200,
                     120, procs)
        wait_for("the monitor", lambda: httpx.get(f"{url['monitor']}/healthz").status_code == 200, 120, procs)
        wait_for("prometheus", lambda: httpx.get(f"{url['prometheus']}/-/ready").status_code == 200, 30, procs)
        wait_for("alertmanager", lambda: httpx.get(f"{url['alertmanager']}/-/ready").status_code == 200, 30, procs)

        # 5. predict and explain, on the model the predictor loaded through KServe's storage code
        from mlplat.modeldir import LoadedModel

        model = LoadedModel.load(tmp_path / "predictor" / "mnt-models")
        reference = model.reference()
        X = reference[model.feature_names].to_numpy(np.float32)
        client = stack.enter_context(httpx.Client(timeout=60, headers={"authorization": f"Bearer {TOKEN}"}))
        explained = client.post(f"{url['explainer']}/v1/models/{model.name}:explain", json={"instances": X[:2].tolist()})
        assert explained.status_code == 200, explained.text
        body = explained.json()
        assert body["method"] == "integrated_gradients" and len(body["explanations"]) == 2
        assert all(list(e["attributions"]) == model.feature_names for e in body["explanations"])
        phases["serving up, explained"] = time.monotonic()

        # 6. the payload logger's CloudEvents (to the events port, as the InferenceService's logger.url says) and
        #    feedback; shifted traffic raises the drift alert, which reaches the webhook through Alertmanager
        assert isvc["spec"]["predictor"]["logger"]["url"] == f"http://{name}-monitor:8091/"
        urls = {"serve": url["predictor"], "monitor": url["events"]}
        rng = np.random.default_rng(0)
        shift = (1.5 * reference[model.feature_names].std().to_numpy()).astype(np.float32)
        predicted, ids = predict(client, urls, model.name, X[rng.integers(0, len(X), 100)])
        for batch in range(1, 6):
            names, batch_ids = predict(client, urls, model.name, X[rng.integers(0, len(X), 100)] + shift)
            predicted, ids = predicted + names, ids + batch_ids
            wait_for(f"evaluation of batch {batch}", lambda b=batch: client.get(
                f"{url['monitor']}/v1/models/{model.name}/monitor").json().get("rows") == 100 * (b + 1), 60, procs)
        feedback = client.post(f"{url['monitor']}/v1/models/{model.name}/feedback", json={"ids": ids, "labels": predicted})
        assert feedback.status_code == 200 and feedback.json()["accepted"] == len(ids), feedback.text
        alerts = wait_for("MlplatDataDrift at the webhook", lambda: webhook.firing("MlplatDataDrift"), 90, procs)
        assert alerts[0]["labels"]["model"] == model.name

        def labels_in_prometheus() -> float | None:
            query = f'mlplat_monitor_labels_received_total{{model="{model.name}"}}'
            result = httpx.get(f"{url['prometheus']}/api/v1/query", params={"query": query}).json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert wait_for("the labels in Prometheus", lambda: labels_in_prometheus() == len(ids), 30, procs)
        phases["drift alert at the webhook"] = time.monotonic()
    marks = list(phases.items())
    print("cluster path:", ", ".join(f"{name} +{t - marks[i][1]:.1f}s" for i, (name, t) in enumerate(marks[1:])))
