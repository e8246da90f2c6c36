"""What the KServe controller and the kubelet make of an emitted InferenceService's containers, so tests run
exactly that command line here.

KServe v0.20 (pkg/apis/serving/v1beta1): a custom predictor's container runs as written
(predictor_custom.go); a custom explainer's args get `--model_name <isvc>` and `--predictor_host
<predictor service>.<namespace>` unless they have them, then always `--http_port 8080`, and `--workers N`
with a containerConcurrency (explainer_custom.go). The storage initializer downloads `STORAGE_URI` with
kserve-storage to /mnt/models. The kubelet expands `$(VAR)` in args from the container's env.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

HTTP_PORT = "8080"  # constants.InferenceServiceDefaultHttpPort
MODEL_MOUNT = "/mnt/models"


def controller_args(isvc: dict[str, Any], component: str, namespace: str) -> list[str]:
    """The container args of `component` ("predictor" or "explainer") after the controller's reconcile."""
    container = isvc["spec"][component]["containers"][0]
    args = list(container.get("args", []))
    if component == "explainer":
        name = isvc["metadata"]["name"]
        if "--model_name" not in args:
            args += ["--model_name", name]
        if "--predictor_host" not in args:
            args += ["--predictor_host", f"{name}-predictor.{namespace}"]
        args += ["--http_port", HTTP_PORT]
        concurrency = isvc["spec"][component].get("containerConcurrency")
        if "--workers" not in args and concurrency is not None:
            args += ["--workers", str(concurrency)]
    return args


def kubelet_expand(args: list[str], env: dict[str, str]) -> list[str]:
    """`$(VAR)` references replaced from the container's env, as the kubelet does (unknown ones stay)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def storage_initializer(isvc: dict[str, Any], component: str, target: Path) -> Path:
    """Download the component's STORAGE_URI with KServe's own storage code, as the storage initializer does."""
    from kserve_storage import Storage

    env = {e["name"]: e.get("value") for e in isvc["spec"][component]["containers"][0]["env"]}
    target.mkdir(parents=True, exist_ok=True)
    Storage.download(env["STORAGE_URI"], str(target))
    return target


def local_command(isvc: dict[str, Any], component: str, namespace: str, models: Path, swap: dict[str, str]) -> list[str]:
    """The component's command line for this machine: the controller's args, expanded, with /mnt/models at `models`
    and the addresses in `swap` (e.g. 0.0.0.0 -> 127.0.0.1, a Service host -> a loopback port)."""
    container = isvc["spec"][component]["containers"][0]
    env = {"POD_NAMESPACE": namespace, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    args = kubelet_expand(controller_args(isvc, component, namespace), env)
    return [*container["command"], *[swap.get(a, str(models) if a == MODEL_MOUNT else a) for a in args]]
