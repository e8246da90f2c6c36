"""Every object the project emits, checked as the API server would: custom resources against the vendored
CRDs (KServe v0.20.0, Trainer v2.3.0, Katib v0.19.0, prometheus-operator v0.93.0; tests/fixtures/crds),
closed so an unknown field fails, and core kinds with kubernetes-validate (strict). See tests/crd_schemas.py."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schemas import CRDS, documents, known, problems, read_crd
from mlplat.k8s import inferenceservice, katib, trainjob
from mlplat.spec import load_spec, resolve
from s3_server import mlplat

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "pipelines").glob("*.yaml"))
# checked-in manifests that are Kubernetes objects (the compiled pipelines are KFP IR, uploaded, never applied)
CHECKED_IN = sorted(p for p in (REPO / "manifests" / "base").rglob("*.yaml")
                    if "pipelines" not in p.parts and p.name != "kustomization.yaml" and not p.name.endswith(".rules.yaml"))
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays (make sysdeps)")


def all_problems(docs: list[dict[str, Any]]) -> list[str]:
    unknown = [f"{d.get('apiVersion')} {d.get('kind')}: no schema here" for d in docs if not known(d)]
    return unknown + [p for d in docs if known(d) for p in problems(d)]


def spec_of(path: Path) -> Any:
    return resolve(load_spec(path), str(path))


def tuned_params(spec: Any) -> dict[str, Any] | None:
    """A tune step's result as `mlplat trainjob --best-params` takes it: each searched param at its low end."""
    if spec.steps.tune is None:
        return None
    space = spec.steps.tune.search_space
    return {name: (p.get("choices") or [p.get("low")])[0] for name, p in
            ((n, space[n] if isinstance(space[n], dict) else space[n].model_dump()) for n in space)}


def test_katibs_experiment_crd_leaves_every_check_to_its_webhook() -> None:
    """Katib v0.19.0's CRD preserves unknown fields, so the structural check uses Katib's generated OpenAPI
    definitions instead (crd_schemas._katib_schema); the webhook's rules run in mlplat.k8s.katib."""
    crd = yaml.safe_load((CRDS / "katib-v0.19.0-experiment.yaml").read_text())
    assert (crd["kind"], crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (
        "CustomResourceDefinition", "kubeflow.org", "Experiment")
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    assert version["schema"]["openAPIV3Schema"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert "v1beta1.ExperimentSpec" in json.loads((CRDS / "katib-v0.19.0-swagger.json").read_text())["definitions"]


@pytest.mark.parametrize("name, kind", [
    ("kserve-v0.20.0-inferenceservices.yaml.gz", "InferenceService"), ("trainer-v2.3.0-trainjobs.yaml.gz", "TrainJob"),
    ("prometheus-operator-v0.93.0-podmonitors.yaml", "PodMonitor"),
    ("prometheus-operator-v0.93.0-servicemonitors.yaml", "ServiceMonitor"),
    ("prometheus-operator-v0.93.0-prometheusrules.yaml", "PrometheusRule")])
def test_the_vendored_crds_are_what_the_readme_says(name: str, kind: str) -> None:
    crd = read_crd(name)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
    assert name in (CRDS / "README.md").read_text()


def test_the_checker_catches_unknown_fields_wrong_types_and_bad_trial_templates() -> None:
    """Mutations of real emitted objects: the closed schemas must refuse each one (else the checks prove nothing)."""
    isvc = inferenceservice.to_dict(inferenceservice.build_inference_service(inferenceservice.Deployment("m")))
    [config_map, experiment] = katib.manifests(spec_of(REPO / "pipelines" / "breast_cancer_tuned.yaml"))
    job = trainjob.build_trainjob(spec_of(REPO / "pipelines" / "breast_cancer.yaml")).to_dict()
    assert all_problems([isvc, config_map, experiment, job]) == []

    def broken(doc: dict[str, Any], change: Any) -> list[str]:
        doc = copy.deepcopy(doc)
        change(doc)
        return problems(doc)

    assert "'replicas' was unexpected" in broken(isvc, lambda d: d["spec"]["predictor"].update(replicas=2))[0]
    assert "not of type 'string'" in broken(isvc, lambda d: d["spec"]["predictor"]["containers"][0].update(image=3))[0]
    assert "'labelz' was unexpected" in broken(isvc, lambda d: d["metadata"].update(labelz={}))[0]
    assert "'nodes' was unexpected" in broken(job, lambda d: d["spec"]["trainer"].update(nodes=2))[0]
    assert "not of type 'string'" in broken(experiment, lambda d: d["spec"]["parameters"][0]["feasibleSpace"]
                                            .update(min=1e-06))[0]
    assert "'maxTrials' was unexpected" in broken(experiment, lambda d: d["spec"].update(maxTrials=3))[0]
    assert "trialSpec" in broken(experiment, lambda d: d["spec"]["trialTemplate"]["trialSpec"]["spec"].update(foo=1))[0]
    [deployment] = [d for d in documents((REPO / "manifests/base/monitoring/monitor.yaml").read_text())
                    if d["kind"] == "Deployment"]
    assert "'replica' was unexpected" in broken(deployment, lambda d: d["spec"].update(replica=1))[0]
    monitor = inferenceservice.pod_monitor("m")
    assert "'targetPortt' was unexpected" in broken(monitor, lambda d: d["spec"]["podMetricsEndpoints"][0]
                                                    .update(targetPortt="x"))[0]


@needs_kubectl
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_rendered_overlay_passes_its_schemas(overlay: str) -> None:
    text = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / overlay)],
                          capture_output=True, text=True, check=True).stdout
    docs = list(documents(text))
    assert {d["kind"] for d in docs} >= {"InferenceService", "TrainJob", "Experiment", "PodMonitor", "ServiceMonitor",
                                        "PrometheusRule", "Deployment", "Service", "NetworkPolicy", "PersistentVolumeClaim"}
    assert all_problems(docs) == []


@pytest.mark.parametrize("path", CHECKED_IN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_checked_in_manifest_passes_its_schemas(path: Path) -> None:
    docs = list(documents(path.read_text()))
    assert docs and all_problems(docs) == []


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_the_trainjob_of_every_example_spec_passes_its_crd(path: Path) -> None:
    spec = spec_of(path)
    job = trainjob.build_trainjob(spec, nodes=2, best_params=tuned_params(spec))
    docs = [yaml.safe_load(trainjob.to_yaml(job)), yaml.safe_load(trainjob.output_pvc_yaml())]
    assert all_problems(docs) == []


@pytest.mark.parametrize("path", [p for p in SPECS if "tune:" in p.read_text()], ids=lambda p: p.stem)
def test_the_katib_experiment_of_every_tuned_spec_passes_its_schema(path: Path) -> None:
    texts = katib.to_yaml_docs(katib.manifests(spec_of(path), path.read_text()))
    assert all_problems([yaml.safe_load(t) for t in texts]) == []


@pytest.mark.parametrize("storage_uri", ["pvc://mlplat-models/breast-cancer/models/run1/", "s3://models/store/models/r/"])
def test_the_inferenceservice_generator_passes_its_crd(storage_uri: str) -> None:
    rendered = inferenceservice.render(inferenceservice.Deployment("breast-cancer", storage_uri=storage_uri, monitor=True,
                                                                   storage_secret="s3-creds", service_account="models"))
    docs = [d for name, text in rendered.items() if name != "kustomization.yaml" for d in documents(text)]
    assert {d["kind"] for d in docs} >= {"InferenceService", "PodMonitor", "Deployment", "ServiceMonitor", "NetworkPolicy"}
    assert all_problems(docs) == []


def test_the_cli_outputs_pass_their_schemas(trained_run: Any, tmp_path: Path) -> None:
    """`mlplat deploy`, `mlplat trainjob` and `mlplat tune katib` as a user runs them."""
    out = tmp_path / "deploy"
    assert mlplat("deploy", trained_run.run.id, "--runs-dir", str(trained_run.run.dir.parent), "-o", str(out),
                  "--storage-uri", "s3://models/tiny/models/r1/") == 0
    assert mlplat("trainjob", str(REPO / "pipelines" / "breast_cancer.yaml"), "-o", str(tmp_path / "trainjob.yaml")) == 0
    assert mlplat("tune", "katib", str(REPO / "pipelines" / "breast_cancer_tuned.yaml"), "-o", str(tmp_path / "katib")) == 0
    files = [*out.glob("*.yaml"), tmp_path / "trainjob.yaml", *(tmp_path / "katib").glob("*.yaml")]
    docs = [d for f in files if f.name != "kustomization.yaml" for d in documents(f.read_text())]
    assert {d["kind"] for d in docs} >= {"InferenceService", "PodMonitor", "TrainJob", "Experiment", "ConfigMap", "Deployment",
                                        "Service", "ServiceMonitor", "NetworkPolicy", "PersistentVolumeClaim"}
    assert all_problems(docs) == []
