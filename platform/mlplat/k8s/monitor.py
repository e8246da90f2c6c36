"""The monitor `mlplat deploy` emits beside an InferenceService: it reads the same model the predictor serves.

`mlplat monitor STORAGE_URI` loads the model directory from the InferenceService's `storageUri`
itself: an object store (s3://, gs://) through KServe's storage code (`kserve_storage.Storage`,
what the storage initializer runs for the predictor) into a bounded emptyDir, with the
credentials of the same Secret (mlplat.k8s.storage); a pvc:// claim mounted read-only where
KServe mounts one. The predictor's payload logger posts to its events port (8091, no token, open
only to this model's predictor pods); feedback and evaluations on 8090 need the bearer token in the
Secret `mlplat-monitoring-token`. The window persists on its own claim. Objects: the Deployment, its
Service, the state claim, a ServiceMonitor and a NetworkPolicy, all named `<name>-monitor`.
"""

from __future__ import annotations

from typing import Any

from mlplat.k8s import security, storage

HTTP_PORT, EVENTS_PORT = 8090, 8091
STATE_DIR, CACHE_DIR = "/var/lib/mlplat-monitor", "/tmp/models"
TOKEN_SECRET, TOKEN_DIR = "mlplat-monitoring-token", "/var/run/secrets/mlplat"


def monitor_name(name: str) -> str:
    return f"{name}-monitor"


def events_url(name: str) -> str:
    """The logger URL of the InferenceService `name` (same namespace)."""
    return f"http://{monitor_name(name)}:{EVENTS_PORT}/"


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": monitor_name(name), "app.kubernetes.io/component": "monitor",
            "app.kubernetes.io/part-of": "mlplat", "mlplat.io/model": name}


def deployment(name: str, image: str, storage_uri: str, storage_secret: str | None = None) -> dict[str, Any]:
    volumes, mounts = storage.store_volume(storage_uri, read_only=True)
    env = {"HOME": "/tmp", "MPLCONFIGDIR": "/tmp", "NUMBA_CACHE_DIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "MLPLAT_MODEL_CACHE": CACHE_DIR}  # the download lands in the /tmp emptyDir (read-only root filesystem)
    container = {
        "name": "monitor", "image": image, "command": ["mlplat"],
        "args": ["monitor", storage_uri, "--host", "0.0.0.0", "--port", str(HTTP_PORT), "--events-port", str(EVENTS_PORT),
                 "--state-dir", STATE_DIR, "--token-file", f"{TOKEN_DIR}/token"],
        "env": [{"name": k, "value": v} for k, v in env.items()] + storage.credential_env(storage_secret),
        "ports": [{"name": "http", "containerPort": HTTP_PORT}, {"name": "events", "containerPort": EVENTS_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        # the first start downloads the model: give it time before liveness counts
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 60, "periodSeconds": 30,
                          "failureThreshold": 5},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "securityContext": {**security.container_security_context(), "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "monitoring-token", "mountPath": TOKEN_DIR, "readOnly": True}, *mounts],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": monitor_name(name), "labels": labels(name)},
        "spec": {
            "replicas": 1, "strategy": {"type": "Recreate"},  # one writer of the persisted window
            "selector": {"matchLabels": {"app.kubernetes.io/name": monitor_name(name)}},
            "template": {"metadata": {"labels": labels(name)}, "spec": {
                "securityContext": security.pod_security_context(), "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": f"{monitor_name(name)}-state"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},  # holds the downloaded model too
                            {"name": "monitoring-token", "secret": {"secretName": TOKEN_SECRET}}, *volumes]}},
        },
    }


def manifests(name: str, image: str, storage_uri: str, storage_secret: str | None = None) -> list[dict[str, Any]]:
    """Every object of the model's monitor (see the module docstring)."""
    own = {"app.kubernetes.io/name": monitor_name(name)}
    predictor = {"app.kubernetes.io/part-of": "mlplat", "component": "predictor",
                 "serving.kserve.io/inferenceservice": name}
    return [
        deployment(name, image, storage_uri, storage_secret),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": monitor_name(name), "labels": labels(name)},
         "spec": {"selector": own, "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                                             {"name": "events", "port": EVENTS_PORT, "targetPort": "events"}]}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"{monitor_name(name)}-state", "labels": labels(name)},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": monitor_name(name), "labels": {**labels(name), "release": "prometheus"}},
         "spec": {"selector": {"matchLabels": own}, "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": monitor_name(name), "labels": labels(name)},
         "spec": {"podSelector": {"matchLabels": own}, "policyTypes": ["Ingress"], "ingress": [
             {"from": [{"podSelector": {"matchLabels": predictor}},
                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}},
                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
              "ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
             {"from": [{"podSelector": {"matchLabels": predictor}}], "ports": [{"protocol": "TCP", "port": EVENTS_PORT}]}]}},
    ]
