"""A Kubeflow Trainer v2 `TrainJob` that runs the spec's training step as multi-node DDP.

Built from the kubeflow-trainer-api models (pydantic, generated from Trainer's OpenAPI), so
every field is checked against the TrainJob schema. Each node runs the same two commands a
KFP component would: `python -m mlplat.kfp.step ingest` (the split is seeded, so every node
gets the same data without shared input storage), then `torchrun -m mlplat.kfp.step train`
with the spec's trainer plugin and params unchanged. The `torch-distributed` runtime sets
PET_NNODES / PET_NPROC_PER_NODE / PET_NODE_RANK / PET_MASTER_ADDR, which torchrun reads;
the trainer sees LOCAL_RANK and trains in place under DDP. Only global rank 0 writes the
model directory, to a PersistentVolumeClaim mounted on every node.
"""

from __future__ import annotations

from typing import Any

import yaml

from mlplat.kfp.step import step_parameters
from mlplat.spec import PipelineSpec

API_VERSION, KIND = "trainer.kubeflow.org/v1alpha1", "TrainJob"
RUNTIME = "torch-distributed"  # ClusterTrainingRuntime installed with Kubeflow Trainer
NODE = "node"  # the runtime's replicated job and container name
OUTPUT_PVC, OUTPUT_MOUNT = "mlplat-trainjob-output", "/mnt/mlplat"
SCRIPT = """set -e
python -m mlplat.kfp.step ingest --spec "$MLPLAT_SPEC" --out /tmp/mlplat/data
torchrun -m mlplat.kfp.step train --spec "$MLPLAT_SPEC" --plugin "$MLPLAT_PLUGIN" --params "$MLPLAT_PARAMS" \\
  --data /tmp/mlplat/data --out "$MLPLAT_OUTPUT/train" --model-out "$MLPLAT_OUTPUT/model"
"""


def build_trainjob(spec: PipelineSpec, nodes: int = 2, name: str | None = None, output_pvc: str = OUTPUT_PVC,
                   runtime: str = RUNTIME) -> Any:
    """The TrainJob (a kubeflow_trainer_api model) for the spec's train step on `nodes` nodes."""
    from kubeflow_trainer_api import models as m

    from mlplat.kfp.compiler import spec_json

    if nodes < 1:
        raise ValueError(f"nodes must be at least 1; got {nodes}")
    step = spec.steps.train
    res = step.resources
    plugin, params = step_parameters(spec, "train")
    limits = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    if res.gpus:
        limits[res.accelerator_type] = str(res.gpus)
    procs = res.gpus or int(step.params.get("ddp_processes", 1))
    output = f"{OUTPUT_MOUNT}/{spec.name}"
    env = [m.IoK8sApiCoreV1EnvVar(name=k, value=v) for k, v in
           (("MLPLAT_SPEC", spec_json(spec)), ("MLPLAT_PLUGIN", plugin), ("MLPLAT_PARAMS", params), ("MLPLAT_OUTPUT", output))]
    pod = m.TrainerV1alpha1PodSpecPatch(
        node_selector=dict(step.node_selector) or None,
        volumes=[m.IoK8sApiCoreV1Volume(name="output", persistent_volume_claim=m.IoK8sApiCoreV1PersistentVolumeClaimVolumeSource(claim_name=output_pvc))],
        containers=[m.TrainerV1alpha1ContainerPatch(name=NODE, volume_mounts=[m.IoK8sApiCoreV1VolumeMount(name="output", mount_path=OUTPUT_MOUNT)])],
    )
    patch = m.TrainerV1alpha1RuntimePatch(
        manager="mlplat.io/trainjob",
        training_runtime_spec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(template=m.TrainerV1alpha1JobSetTemplatePatch(
            spec=m.TrainerV1alpha1JobSetSpecPatch(replicated_jobs=[m.TrainerV1alpha1ReplicatedJobPatch(
                name=NODE, template=m.TrainerV1alpha1JobTemplatePatch(spec=m.TrainerV1alpha1JobSpecPatch(
                    template=m.TrainerV1alpha1PodTemplatePatch(spec=pod))))]))),
    )
    quantities = {k: m.IoK8sApimachineryPkgApiResourceQuantity(v) for k, v in limits.items()}
    trainer = m.TrainerV1alpha1Trainer(
        image=step.image or spec.image, command=["sh", "-ec", SCRIPT], env=env, num_nodes=nodes, num_proc_per_node=procs,
        resources_per_node=m.IoK8sApiCoreV1ResourceRequirements(limits=quantities, requests=quantities) if limits else None,
    )
    return m.TrainerV1alpha1TrainJob(
        api_version=API_VERSION, kind=KIND,
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name or f"{spec.name}-train", labels={"app.kubernetes.io/part-of": "mlplat", "mlplat.io/pipeline": spec.name}),
        spec=m.TrainerV1alpha1TrainJobSpec(runtime_ref=m.TrainerV1alpha1RuntimeRef(name=runtime), trainer=trainer,
                                           runtime_patches=[patch]),
    )


def to_yaml(job: Any) -> str:
    return yaml.safe_dump(job.to_dict(), sort_keys=False, width=120)


def output_pvc_yaml(name: str = OUTPUT_PVC, size: str = "10Gi") -> str:
    """Shared by every node of the TrainJob (ReadWriteMany); rank 0 writes the model there."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "mlplat"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}},
    }, sort_keys=False)


BASE_DIR = "manifests/base/trainjob"
DEMO_SPEC = "pipelines/breast_cancer.yaml"  # the checked-in TrainJob is the demo pipeline's training step


def write_base(spec: PipelineSpec, directory: Any, nodes: int = 2) -> list[Any]:
    """The kustomize base: the TrainJob, its output PVC and the kustomization listing them."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"pvc.yaml": output_pvc_yaml(), "trainjob.yaml": to_yaml(build_trainjob(spec, nodes)),
             "kustomization.yaml": "# Generated by `mlplat compile --all`; do not edit.\n"
                                   "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                   "resources:\n  - pvc.yaml\n  - trainjob.yaml\n"}
    for name, text in files.items():
        (directory / name).write_text(text)
    return [directory / name for name in files]
