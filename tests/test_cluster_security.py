"""Every pod mlplat emits is hardened: Pod Security "restricted", requests and limits, probes on the
long-running ones, bounded emptyDirs, NetworkPolicies around serving and monitoring."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat.k8s import inferenceservice, katib, trainjob
from mlplat.spec import load_spec, resolve

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "manifests" / "base"


def restricted_problems(pod: dict[str, Any], where: str) -> list[str]:
    """What Pod Security "restricted" would refuse in a pod spec (container fields override pod fields)."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for container in pod.get("containers", []):
        c, name = container.get("securityContext", {}), f"{where}: container {container['name']}"
        if not c.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if c.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if c.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop must be [ALL]")
        if c.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile RuntimeDefault")
        if c.get("runAsUser", pod_context.get("runAsUser", 1)) == 0:
            problems.append(f"{name}: runAsUser 0")
    return problems


def resource_problems(container: dict[str, Any], where: str) -> list[str]:
    res = container.get("resources", {})
    return [f"{where}: {kind}.{key}" for kind in ("requests", "limits") for key in ("cpu", "memory")
            if key not in res.get(kind, {})]


def empty_dirs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "emptyDir":
                yield value
            else:
                yield from empty_dirs(value)
    elif isinstance(node, list):
        for item in node:
            yield from empty_dirs(item)


@pytest.fixture(scope="module")
def tuned_spec() -> Any:
    path = REPO / "pipelines" / "breast_cancer_tuned.yaml"
    return resolve(load_spec(path), str(path))


def test_the_katib_trial_pod_is_restricted_and_bounded(tuned_spec: Any) -> None:
    pod = katib.experiment(tuned_spec)["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert restricted_problems(pod, "trial") == []
    assert resource_problems(pod["containers"][0], "trial") == []


def test_the_trainjob_node_is_restricted_and_bounded() -> None:
    spec = resolve(load_spec(REPO / trainjob.DEMO_SPEC))
    job = trainjob.build_trainjob(spec).to_dict()
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = patch["template"]["spec"]["template"]["spec"]
    assert restricted_problems(pod, "trainjob node") == []
    per_node = job["spec"]["trainer"]["resourcesPerNode"]
    assert set(per_node["requests"]) >= {"cpu", "memory"} and per_node["requests"] == per_node["limits"]


def test_the_serving_pods_are_restricted_bounded_and_probed() -> None:
    isvc = inferenceservice.to_dict(inferenceservice.build_inference_service(inferenceservice.Deployment("demo")))
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    for component in ("predictor", "explainer"):
        pod = isvc["spec"][component]
        assert restricted_problems(pod, component) == []
        container = pod["containers"][0]
        assert resource_problems(container, component) == []
        assert "readinessProbe" in container and "livenessProbe" in container, component
    assert all("sizeLimit" in e for e in empty_dirs(isvc))


def test_the_monitor_deployment_is_restricted_bounded_and_probed() -> None:
    docs = [d for d in yaml.safe_load_all((BASE / "monitoring" / "monitor.yaml").read_text()) if d]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_problems(pod, "monitor") == []
    for container in pod["containers"]:
        assert resource_problems(container, "monitor") == []
        assert "readinessProbe" in container and "livenessProbe" in container


@pytest.mark.parametrize("path", sorted((BASE / "pipelines" / "compiled").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_kfp_executor_runs_non_root_with_requests_and_limits(path: Path) -> None:
    """kfp-kubernetes sets the user; the KFP backend adds no-escalation, drop ALL and RuntimeDefault itself."""
    ir, platform = list(yaml.safe_load_all(path.read_text()))
    executors = ir["deploymentSpec"]["executors"]
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(configs) == set(executors)
    for name, executor in executors.items():
        context = configs[name]["securityContext"]
        assert context["runAsNonRoot"] is True and int(context["runAsUser"]) > 0, name
        res = executor["container"]["resources"]
        assert {"resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"} <= set(res), name


def test_a_broken_pod_is_caught_by_the_checks() -> None:
    """The checks above can fail: a bare container breaks every rule."""
    bare = {"containers": [{"name": "x", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}]}
    assert len(restricted_problems(bare, "bare")) == 4
    assert len(resource_problems(bare["containers"][0], "bare")) == 4


def rendered(overlay: str) -> list[dict[str, Any]]:
    text = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / overlay)],
                          capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_rendered_overlays_bound_every_empty_dir_and_fence_the_serving_pods(overlay: str) -> None:
    docs = rendered(overlay)
    assert all("sizeLimit" in e for e in empty_dirs(docs))
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {"mlplat-predictor", "mlplat-explainer", "mlplat-monitor"}
    predictor_from = policies["mlplat-predictor"]["ingress"][0]["from"]
    pods = [f["podSelector"]["matchLabels"] for f in predictor_from if "podSelector" in f]
    assert pods == [{"app.kubernetes.io/part-of": "mlplat", "component": "explainer"}]  # the only pod peer
    monitor_pods = [f["podSelector"]["matchLabels"] for f in policies["mlplat-monitor"]["ingress"][0]["from"] if "podSelector" in f]
    assert monitor_pods == [{"app.kubernetes.io/part-of": "mlplat", "component": "predictor"}]  # the payload logger
    namespaces = {f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in policies.values() for f in p["ingress"][0]["from"] if "namespaceSelector" in f}
    assert namespaces == {"istio-system", "monitoring"}  # the ingress gateway and Prometheus


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_rendered_core_objects_pass_kubernetes_validate(overlay: str) -> None:
    import kubernetes_validate

    core = [d for d in rendered(overlay) if "/" not in d["apiVersion"] or d["apiVersion"].split("/")[0] in
            ("apps", "batch", "networking.k8s.io", "policy")]
    assert {d["kind"] for d in core} >= {"Namespace", "Deployment", "Service", "NetworkPolicy", "PersistentVolumeClaim", "ConfigMap"}
    for doc in core:
        kubernetes_validate.validate(doc, "1.31", strict=True)
