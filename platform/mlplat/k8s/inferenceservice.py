"""A KServe `InferenceService` for a published model: the predictor and a custom explainer.

Built from the kserve SDK's `V1beta1*` models and the kubernetes client's `V1*` models, so
every field is checked against the InferenceService schema. Both components run the mlplat
image: the predictor `mlplat serve /mnt/models`, the explainer `mlplat serve --predictor_host
<name>-predictor.<namespace>` (KServe's predictor Service, the host the controller would append
itself), in Standard mode (plain Deployments; `RawDeployment` is its deprecated name since
KServe 0.16). The
model directory comes from `STORAGE_URI` on the `kserve-container`: KServe's storage initializer
puts it at /mnt/models (a `pvc://` URI is mounted read-only in place).

Every container meets Pod Security "restricted" with a read-only root filesystem (an
emptyDir at /tmp takes what Python libraries cache), has requests and limits, readiness and
liveness probes, and the pods carry Prometheus scrape annotations; a PodMonitor covers
Prometheus Operator installs, which ignore annotations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplat.k8s.security import UID  # the one user every emitted pod runs as

API_VERSION, KIND = "serving.kserve.io/v1beta1", "InferenceService"
CONTAINER = "kserve-container"  # the name KServe looks for STORAGE_URI and the model mount on
PORT, MODEL_MOUNT, DEFAULT_STORAGE_URI = 8080, "/mnt/models", "pvc://mlplat-models"
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$")  # DNS-1035; KServe adds -predictor-… suffixes
FILES = ("inferenceservice.yaml", "podmonitor.yaml", "monitor.yaml", "kustomization.yaml")  # `mlplat deploy`'s
# the monitoring base's Service, same namespace: its events port, which needs no token (KServe's logger sends none)
MONITOR_URL = "http://mlplat-monitor:8091/"
# the monitoring base's token Secret: the explainer proves its marker with it, so the monitor skips its rows
TOKEN_SECRET, TOKEN_DIR = "mlplat-monitoring-token", "/var/run/secrets/mlplat"
BASE_DIR = "manifests/base/serving"
DEMO_NAME = "breast-cancer"  # the checked-in base serves pipelines/breast_cancer.yaml's model
DEFAULT_IMAGE = "ghcr.io/mlplat/mlplat:0.1.0"  # the spec's default image
# SIGTERM (mlplat.serving.shutdown): readiness off and DRAIN_S more seconds of serving, so the endpoints controller
# drops the pod first (no preStop hook), then at most SHUTDOWN_TIMEOUT_S for requests in flight, an explanation
# (EXPLAIN_TIMEOUT_S at most) included; the kubelet's SIGKILL comes only after the grace period, which covers both
DRAIN_S, EXPLAIN_TIMEOUT_S, SHUTDOWN_TIMEOUT_S = 5, 30, 35
GRACE_PERIOD_S = DRAIN_S + SHUTDOWN_TIMEOUT_S + 10


@dataclass(frozen=True)
class Deployment:
    name: str
    image: str = DEFAULT_IMAGE
    storage_uri: str = DEFAULT_STORAGE_URI
    # its own monitor (mlplat.k8s.monitor) reading storage_uri; without, the logger posts to the monitoring base's
    monitor: bool = False
    storage_secret: str | None = None  # the monitor's S3 credentials: KServe's S3 Secret (mlplat.k8s.storage)
    service_account: str | None = None  # the predictor's and explainer's: KServe finds the storage Secret through it

    def __post_init__(self) -> None:
        from mlplat.errors import UsageError

        if not NAME_RE.match(self.name):
            raise UsageError(f"--name: {self.name!r} is not a DNS-1035 label of at most 45 characters "
                             "(lowercase letters, digits, '-', starting with a letter)")
        if not self.image or any(c.isspace() for c in self.image):
            raise UsageError(f"--image: {self.image!r} is not an image reference")
        if not re.match(r"^[a-z0-9+.-]+://\S+$", self.storage_uri):
            raise UsageError(f"--storage-uri: {self.storage_uri!r} is not a URI like pvc://claim/path or s3://bucket/path")


def isvc_name(model_name: str) -> str:
    """A model's name as an InferenceService name (DNS-1035)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")[:45].rstrip("-")
    return name if name[:1].isalpha() else f"m-{name}"[:45].rstrip("-")


def scrape_annotations() -> dict[str, str]:
    return {"serving.kserve.io/enable-prometheus-scraping": "true", "prometheus.io/scrape": "true",
            "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}


def _container(d: Deployment, args: list[str], resources: tuple[dict[str, str], dict[str, str]],
               token: bool = False) -> Any:
    from kubernetes import client as k

    def probe(path: str, **timing: int) -> Any:
        return k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port=PORT), **timing)

    env = {"STORAGE_URI": d.storage_uri, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp", "NUMBA_CACHE_DIR": "/tmp",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return k.V1Container(
        name=CONTAINER, image=d.image, command=["mlplat"],
        args=["serve", MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(PORT), *args, "--drain-s", str(DRAIN_S),
              "--explain-timeout-s", str(EXPLAIN_TIMEOUT_S), "--shutdown-timeout-s", str(SHUTDOWN_TIMEOUT_S),
              *(["--token-file", f"{TOKEN_DIR}/token"] if token else [])],
        env=[k.V1EnvVar(name=n, value=v) for n, v in env.items()]
        + [k.V1EnvVar(name="POD_NAMESPACE", value_from=k.V1EnvVarSource(
            field_ref=k.V1ObjectFieldSelector(field_path="metadata.namespace")))],
        ports=[k.V1ContainerPort(name="http1", container_port=PORT, protocol="TCP")],
        resources=k.V1ResourceRequirements(requests=resources[0], limits=resources[1]),
        # not /v1/models/<name>: KServe registers the model under model.json's name, which the InferenceService
        # name (`--name`, or isvc_name's DNS-1035 form) need not be; ready once every model it serves is loaded
        readiness_probe=probe("/v2/health/ready", period_seconds=5, failure_threshold=3),
        liveness_probe=probe("/v2/health/live", initial_delay_seconds=60, period_seconds=15, failure_threshold=4),
        security_context=k.V1SecurityContext(
            run_as_non_root=True, run_as_user=UID, allow_privilege_escalation=False, read_only_root_filesystem=True,
            capabilities=k.V1Capabilities(drop=["ALL"]), seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
        volume_mounts=[k.V1VolumeMount(name="tmp", mount_path="/tmp")]
        + ([k.V1VolumeMount(name="monitoring-token", mount_path=TOKEN_DIR, read_only=True)] if token else []),
    )


def _pod_fields(token: bool = False) -> dict[str, Any]:
    from kubernetes import client as k

    secret = k.V1Volume(name="monitoring-token", secret=k.V1SecretVolumeSource(secret_name=TOKEN_SECRET))
    return {
        "annotations": scrape_annotations(),
        "security_context": k.V1PodSecurityContext(run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
                                                   seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
        "volumes": [k.V1Volume(name="tmp", empty_dir=k.V1EmptyDirVolumeSource(size_limit="1Gi"))] + ([secret] if token else []),
        "automount_service_account_token": False,
        "termination_grace_period_seconds": GRACE_PERIOD_S,
    }


def build_inference_service(d: Deployment) -> Any:
    """The InferenceService (a kserve V1beta1InferenceService) serving `d`'s model."""
    from kserve import V1beta1ExplainerSpec, V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1LoggerSpec, V1beta1PredictorSpec
    from kubernetes import client as k

    from mlplat.k8s.monitor import events_url

    labels = {"app.kubernetes.io/name": d.name, "app.kubernetes.io/part-of": "mlplat", "mlplat.io/model": d.name}
    # $(POD_NAMESPACE) is expanded by the kubelet, so the URL follows whatever namespace an overlay sets
    predictor_host = f"{d.name}-predictor.$(POD_NAMESPACE)"  # what the controller would append: Service.namespace
    # every replica's requests and responses go to one `mlplat monitor` (the model's own, mlplat.k8s.monitor, or the
    # monitoring base's), which keeps a single drift window over all replicas and takes the labels; so no
    # per-replica window here
    predictor = V1beta1PredictorSpec(
        min_replicas=1, max_replicas=3, labels=labels, **_pod_fields(),
        service_account_name=d.service_account,
        logger=V1beta1LoggerSpec(mode="all", url=events_url(d.name) if d.monitor else MONITOR_URL),
        containers=[_container(d, ["--no-monitor"], ({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"}))])
    explainer = V1beta1ExplainerSpec(
        min_replicas=1, max_replicas=2, labels=labels, **_pod_fields(token=True), service_account_name=d.service_account,
        # --predictor_host, not --predictor-url: the controller appends its own --predictor_host unless the args have one
        # (explainer_custom.go), and mlplat serve refuses two names for the predictor
        containers=[_container(d, ["--predictor_host", predictor_host],
                               ({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "4Gi"}), token=True)])
    return V1beta1InferenceService(
        api_version=API_VERSION, kind=KIND,
        # Standard (formerly RawDeployment): plain Deployments, so the restricted pod security context and the /tmp emptyDir need
        # no Knative feature flags, and no queue-proxy sidecar runs outside that security context
        metadata=k.V1ObjectMeta(name=d.name, labels=labels,
                                annotations={"serving.kserve.io/deploymentMode": "Standard", **scrape_annotations()}),
        spec=V1beta1InferenceServiceSpec(predictor=predictor, explainer=explainer))


def pod_monitor(name: str) -> dict[str, Any]:
    """Prometheus Operator scrape config for the service's predictor and explainer pods."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": f"{name}-serving", "labels": {"app.kubernetes.io/part-of": "mlplat", "release": "prometheus"}},
        "spec": {"selector": {"matchLabels": {"serving.kserve.io/inferenceservice": name}},
                 "podMetricsEndpoints": [{"port": "http1", "path": "/metrics", "interval": "30s"}]},
    }


def to_dict(model: Any) -> dict[str, Any]:
    """A kserve/kubernetes model as its API JSON (camelCase keys, no nulls)."""
    from kserve import ApiClient

    return ApiClient().sanitize_for_serialization(model)


def from_dict(data: Any, klass: Any = "V1beta1InferenceService") -> Any:
    """API JSON back into kserve `V1beta1*` / kubernetes `V1*` models (the SDK's own deserializer
    only looks for types in kserve.models, not the kubernetes ones it nests)."""
    import kserve.models
    from kubernetes import client as k

    if data is None:
        return None
    if isinstance(klass, str):
        if klass.startswith("list["):
            return [from_dict(item, klass[5:-1]) for item in data]
        if klass.startswith("dict("):
            value_type = klass[5:-1].split(", ", 1)[1]
            return {key: from_dict(value, value_type) for key, value in data.items()}
        if klass in {"str", "int", "float", "bool", "object", "datetime"}:
            return data
        klass = getattr(kserve.models, klass, None) or getattr(k, klass)
    unknown = set(data) - set(klass.attribute_map.values())
    if unknown:
        raise ValueError(f"{klass.__name__}: unknown fields {sorted(unknown)}")
    return klass(**{attr: from_dict(data[key], klass.openapi_types[attr])
                    for attr, key in klass.attribute_map.items() if key in data})


def render(d: Deployment) -> dict[str, str]:
    """File name → YAML text of the deployable kustomize directory."""
    from mlplat.k8s import goyaml

    dump = lambda obj: goyaml.dump(obj, width=120)  # noqa: E731
    files = {"inferenceservice.yaml": dump(to_dict(build_inference_service(d))), "podmonitor.yaml": dump(pod_monitor(d.name))}
    if d.monitor:
        from mlplat.k8s import monitor

        files["monitor.yaml"] = goyaml.dump_all(monitor.manifests(d.name, d.image, d.storage_uri, d.storage_secret), width=120)
    listed = "".join(f"  - {name}\n" for name in files)
    return {**files, "kustomization.yaml": "# Generated by `mlplat deploy`; do not edit.\n"
                                           f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{listed}"}


def write(d: Deployment, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(d).items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


def write_base(directory: Path = Path(BASE_DIR)) -> list[Path]:
    """The checked-in kustomize base: the demo model's InferenceService, serving the latest version in the
    model store the base TrainJob publishes to (pvc://mlplat-models/<spec name>: a store root, which
    `mlplat serve` resolves through its `latest` pointer)."""
    return write(Deployment(DEMO_NAME, storage_uri=f"{DEFAULT_STORAGE_URI}/{DEMO_NAME}"), directory)


if __name__ == "__main__":  # regenerate the checked-in base: python -m mlplat.k8s.inferenceservice (from the repo root)
    for path in write_base():
        print(f"wrote {path}")
