"""`mlplat deploy`: the InferenceService is well-formed (kserve SDK models, kubectl kustomize),
every container is Pod Security "restricted" with probes, resources and scrape annotations,
the checked-in base is fresh, and bad input exits 2 naming the problem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat.errors import UsageError
from mlplat.k8s import inferenceservice as deploy

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE_DIRS = [REPO / deploy.BASE_DIR, REPO / "manifests/overlays/dev", REPO / "manifests/overlays/prod"]


def mlplat(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], capture_output=True, text=True, cwd=cwd)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed (make test installs it)")
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def components(isvc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: isvc["spec"][k] for k in ("predictor", "explainer")}


@pytest.fixture(scope="module")
def deployed(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mlplat deploy RUN` output for the session's trained run, by run id from its run store."""
    out = tmp_path_factory.mktemp("deploy") / "isvc"
    done = mlplat("deploy", trained_run.run.id, "--runs-dir", str(trained_run.run.dir.parent), "-o", str(out),
                  "--image", "registry.example.com/mlplat:1.2", "--storage-uri", "s3://models/tiny", cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def isvc(deployed: Path) -> dict[str, Any]:
    return yaml.safe_load((deployed / "inferenceservice.yaml").read_text())


@pytest.fixture(scope="module")
def renamed_isvc(trained_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`mlplat deploy RUN --name ...`: an InferenceService whose name is not its model's name."""
    out = tmp_path_factory.mktemp("deploy") / "renamed"
    done = mlplat("deploy", trained_run.run.id, "--runs-dir", str(trained_run.run.dir.parent), "-o", str(out),
                  "--name", "tumour-screening", cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load((out / "inferenceservice.yaml").read_text())


def test_deploy_writes_an_inference_service_named_after_the_model(deployed: Path, isvc: dict[str, Any],
                                                                   trained_model_dir: Path) -> None:
    assert sorted(p.name for p in deployed.iterdir()) == sorted(deploy.FILES)
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["metadata"]["name"] == deploy.isvc_name(yaml.safe_load((trained_model_dir / "model.json").read_text())["name"])
    for component in components(isvc).values():
        container, = component["containers"]
        assert container["name"] == "kserve-container" and container["image"] == "registry.example.com/mlplat:1.2"
        assert container["command"] == ["mlplat"] and container["args"][:2] == ["serve", "/mnt/models"]
        assert {"name": "STORAGE_URI", "value": "s3://models/tiny"} in container["env"]


def test_round_trips_through_the_sdk_models(isvc: dict[str, Any]) -> None:
    from kserve import V1beta1ExplainerSpec, V1beta1InferenceService, V1beta1PredictorSpec
    from kubernetes.client import V1Container, V1SecurityContext

    model = deploy.from_dict(isvc)
    assert isinstance(model, V1beta1InferenceService)
    assert isinstance(model.spec.predictor, V1beta1PredictorSpec) and isinstance(model.spec.explainer, V1beta1ExplainerSpec)
    container = model.spec.explainer.containers[0]
    assert isinstance(container, V1Container) and isinstance(container.security_context, V1SecurityContext)
    assert deploy.to_dict(model) == isvc
    with pytest.raises(ValueError, match="minReplica"):  # a misspelt field is caught, not dropped
        deploy.from_dict({**isvc, "spec": {**isvc["spec"], "predictor": {**isvc["spec"]["predictor"], "minReplica": 1}}})


def test_every_container_is_pod_security_restricted(isvc: dict[str, Any]) -> None:
    for name, component in components(isvc).items():
        pod = component["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp_volumes = [v["name"] for v in component["volumes"] if "emptyDir" in v]
        for container in component["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert {"name": tmp_volumes[0], "mountPath": "/tmp"} in container["volumeMounts"], name


def test_probes_resources_and_scrape_annotations(isvc: dict[str, Any]) -> None:
    name = isvc["metadata"]["name"]
    for kind, component in components(isvc).items():
        container = component["containers"][0]
        # name-free: KServe serves the model under model.json's name, not the InferenceService's
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": deploy.PORT}, kind
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": deploy.PORT}, kind
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, kind
        for notes in (component["annotations"], isvc["metadata"]["annotations"]):
            assert notes["serving.kserve.io/enable-prometheus-scraping"] == "true", kind
            assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics", kind
            assert notes["prometheus.io/port"] == str(deploy.PORT), kind
    predictor_args = isvc["spec"]["predictor"]["containers"][0]["args"]
    assert "--explainer" not in predictor_args and "--host" in predictor_args
    explainer_args = isvc["spec"]["explainer"]["containers"][0]["args"]
    # KServe's predictor Service, in the pod's own namespace (expanded by the kubelet from the env var)
    assert explainer_args[explainer_args.index("--predictor_host") + 1] == f"{name}-predictor.$(POD_NAMESPACE)"
    assert "--predictor-url" not in explainer_args  # the controller's --predictor_host would then be a second name
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} \
        in isvc["spec"]["explainer"]["containers"][0]["env"]


def test_output_renders_with_kubectl_kustomize(deployed: Path, isvc: dict[str, Any]) -> None:
    docs = {d["kind"]: d for d in kustomize(deployed)}
    # the InferenceService, its PodMonitor and its monitor (Deployment, Service, state claim, ServiceMonitor, NetworkPolicy)
    assert sorted(docs) == ["Deployment", "InferenceService", "NetworkPolicy", "PersistentVolumeClaim", "PodMonitor",
                            "Service", "ServiceMonitor"]
    assert docs["InferenceService"] == isvc
    assert docs["PodMonitor"]["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}


def test_checked_in_base_is_fresh(tmp_path: Path) -> None:
    for fresh in deploy.write_base(tmp_path):
        assert (REPO / deploy.BASE_DIR / fresh.name).read_text() == fresh.read_text(), \
            f"{deploy.BASE_DIR}/{fresh.name} is stale; regenerate with `python -m mlplat.k8s.inferenceservice` from the repo root"


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda p: p.name)
def test_base_and_overlays_render_the_inference_service(directory: Path) -> None:
    services = [d for d in kustomize(directory) if d["kind"] == "InferenceService"]
    assert [s["metadata"]["name"] for s in services] == [deploy.DEMO_NAME]
    isvc = services[0]
    test_every_container_is_pod_security_restricted(isvc)
    test_probes_resources_and_scrape_annotations(isvc)
    if directory.name == "prod":
        assert isvc["metadata"]["namespace"] == "mlplat" and isvc["spec"]["predictor"]["minReplicas"] >= 2
    if directory.name == "dev":
        assert isvc["metadata"]["namespace"] == "mlplat-dev" and isvc["spec"]["predictor"]["maxReplicas"] == 1


def test_bad_input_exits_2_naming_the_problem(trained_run, tmp_path: Path) -> None:
    runs = str(trained_run.run.dir.parent)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    cases = [
        (["no-such-run", "--runs-dir", runs], "run not found: no-such-run"),
        ([str(not_a_model)], "not a model or run directory"),
        ([trained_run.run.id, "--runs-dir", runs, "--name", "Bad_Name"], "--name: 'Bad_Name'"),
        ([trained_run.run.id, "--runs-dir", runs, "--storage-uri", "/local/path"], "--storage-uri: '/local/path'"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        done = mlplat("deploy", *args, "-o", str(out), cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in " ".join(done.stderr.split()), (args, done.stderr)
        assert "Traceback" not in done.stderr and not out.exists(), args


def test_names_become_dns_labels() -> None:
    assert deploy.isvc_name("Breast_Cancer v2") == "breast-cancer-v2"
    assert deploy.isvc_name("7models") == "m-7models"
    assert len(deploy.isvc_name("x" * 80)) == 45
    with pytest.raises(UsageError, match="--name"):
        deploy.Deployment("-bad")


def test_rendered_predictor_command_serves_its_probe_and_scrape_paths(renamed_isvc: dict[str, Any],
                                                                      trained_model_dir: Path, tmp_path: Path) -> None:
    """The predictor container's own command line, run here (model dir for /mnt/models, loopback
    for 0.0.0.0), answers the readiness, liveness and Prometheus paths the manifest points at,
    also when the InferenceService is named otherwise than the model (`--name`)."""
    import socket
    import time
    import urllib.error
    import urllib.request

    isvc = renamed_isvc
    model_name = yaml.safe_load((trained_model_dir / "model.json").read_text())["name"]
    assert isvc["metadata"]["name"] == "tumour-screening" != model_name
    container = isvc["spec"]["predictor"]["containers"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    swap = {deploy.MODEL_MOUNT: str(trained_model_dir), "0.0.0.0": "127.0.0.1", str(deploy.PORT): str(port)}
    args = [swap.get(a, a) for a in container["args"]]
    assert container["command"] == ["mlplat"] and args[0] == "serve"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "mlplat", *args], stdout=log, stderr=subprocess.STDOUT)
    paths = [container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"],
             isvc["metadata"]["annotations"]["prometheus.io/path"]]
    try:
        deadline, status = time.monotonic() + 120, {}
        while time.monotonic() < deadline and len(status) < len(paths):
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            for path in paths:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                        status[path] = r.status
                except urllib.error.HTTPError as exc:  # listening means loaded: an error now is the answer
                    status[path] = exc.code
                except OSError:
                    time.sleep(0.5)
        assert status == {path: 200 for path in paths}, (tmp_path / "server.log").read_text()[-2000:]
    finally:
        server.terminate()
        server.wait(30)
