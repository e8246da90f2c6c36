"""Image specs on Kubeflow: they compile, and every generated pod (KFP tasks, the TrainJob, Katib trials)
mounts a memory-backed /dev/shm sized by dataset.image.shm_size; tabular specs mount none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from mlplat.k8s import katib, trainjob
from mlplat.kfp import compiler
from mlplat.spec import load_spec, parse_spec, resolve

REPO = Path(__file__).resolve().parents[1]
SHM = {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "3Gi", "volumeName": "dshm"}


def image_spec(**steps: Any) -> Any:
    return resolve(parse_spec({"name": "shapes", "dataset": {"source": "generated:shapes", "image": {"shm_size": "3Gi"}},
                               "steps": {"train": {"plugin": "cnn", "params": {"epochs": 1, "workers": 2}}, **steps}}))


def test_every_kfp_task_of_an_image_spec_mounts_shm(tmp_path: Path) -> None:
    out = compiler.compile_spec(image_spec(validate={"plugin": "images"}), tmp_path / "p.yaml")
    ir, platform = list(yaml.safe_load_all(out.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(ir["deploymentSpec"]["executors"])  # every task, ingest to publish
    assert {"exec-ingest", "exec-validate", "exec-train", "exec-evaluate"} <= set(executors)
    assert all(e["emptyDirMounts"] == [SHM] for e in executors.values())


def test_the_demo_spec_compiles_and_tabular_specs_mount_nothing(tmp_path: Path) -> None:
    demo = resolve(load_spec(REPO / "pipelines" / "images_demo.yaml"))
    _, platform = list(yaml.safe_load_all(compiler.compile_spec(demo, tmp_path / "demo.yaml").read_text()))
    assert platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["emptyDirMounts"][0]["sizeLimit"] == "1Gi"
    tabular = resolve(load_spec(REPO / "pipelines" / "breast_cancer.yaml"))
    text = compiler.compile_spec(tabular, tmp_path / "tab.yaml").read_text()
    assert "emptyDirMounts" not in text and "/dev/shm" not in text
    pod = trainjob.build_trainjob(tabular, nodes=1).to_dict()["spec"]["runtimePatches"][0]
    assert "dshm" not in str(pod)


def test_trainjob_nodes_mount_shm() -> None:
    job = trainjob.build_trainjob(image_spec(), nodes=2).to_dict()
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "3Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_katib_trials_mount_shm() -> None:
    space = {"lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True}}
    spec = image_spec(tune={"plugin": "random", "params": {"n_trials": 2}, "search_space": space})
    experiment = katib.experiment(spec)
    katib.validate_experiment(experiment)
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "3Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
