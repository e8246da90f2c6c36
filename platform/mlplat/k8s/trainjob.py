"""A Kubeflow Trainer v2 `TrainJob` that runs the spec's training step as multi-node DDP.

Built from the kubeflow-trainer-api models (pydantic, generated from Trainer's OpenAPI), so
every field is checked against the TrainJob schema. Each node runs the commands the KFP
components would, up to training: `python -m mlplat.kfp.step ingest`, `validate` (a failed
gate stops the job) and `augment` when the spec has them, then `torchrun -m mlplat.kfp.step
train` with the validation findings and schema. Every step is seeded, so every node gets the
same training rows without shared input storage. A TrainJob trains fixed params, not a
search: for a spec with a tune step the tuned params (`steps/tune/best_params.json` of a run)
are merged into the trainer params, as the pipeline's train step merges them. The
`torch-distributed` runtime sets PET_NNODES / PET_NPROC_PER_NODE / PET_NODE_RANK /
PET_MASTER_ADDR, which torchrun reads; the trainer sees LOCAL_RANK and trains in place under
DDP. Only global rank 0 writes the model directory, to a PersistentVolumeClaim mounted on
every node; node 0 then publishes it to the model store (`mlplat publish`, atomic, `latest` last)
as version `<job>-<UTC time>`: the spec's `publish.uri`, else `pvc://mlplat-models/<spec name>`,
the claim the serving manifests read. S3 credentials come from a Secret (mlplat.k8s.storage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlplat.errors import SpecError, UsageError
from mlplat.k8s import goyaml, security, shm
from mlplat.kfp.step import step_parameters
from mlplat.plan import build_plan
from mlplat.spec import PipelineSpec

API_VERSION, KIND = "trainer.kubeflow.org/v1alpha1", "TrainJob"
RUNTIME = "torch-distributed"  # ClusterTrainingRuntime installed with Kubeflow Trainer
NODE = "node"  # the runtime's replicated job and container name
OUTPUT_PVC, OUTPUT_MOUNT = "mlplat-trainjob-output", "/mnt/mlplat"
WORK_DIR = "/tmp/mlplat"  # each node's own copy of the data steps' outputs
DEFAULT_STORE_CLAIM = "mlplat-models"  # manifests/base/models: the claim serving reads (pvc://mlplat-models)
BEST_PARAMS_HINT = "mlplat trainjob SPEC --best-params runs/<run-id>/steps/tune/best_params.json"


def script(spec: PipelineSpec) -> str:
    """The node's shell script: the data steps the spec has, in pipeline order, then torchrun train."""
    def step(kind: str) -> str:
        return f'python -m mlplat.kfp.step {kind} --spec "$MLPLAT_SPEC"'

    data, findings = '"$MLPLAT_WORK/data"', ""
    lines = ["set -e"]
    for node in build_plan(spec).until("train").nodes[:-1]:  # the data nodes; train runs under torchrun below
        if node.name == "ingest":
            lines.append(f"{step('ingest')} --out {data}")
        elif node.name == "validate":
            lines.append(f'{step("validate")} --data {data} --out "$MLPLAT_WORK/validate" --require-passed')
            findings = ' --findings "$MLPLAT_WORK/validate"'  # label-noise findings for augment, schema.json for the model
        else:
            lines.append(f'{step(node.name)} --data {data}{findings} --out "$MLPLAT_WORK/{node.name}"')
            data = f'"$MLPLAT_WORK/{node.name}"'
    lines.append(f'torchrun -m mlplat.kfp.step train --spec "$MLPLAT_SPEC" --plugin "$MLPLAT_PLUGIN" --params "$MLPLAT_PARAMS" \\\n'
                 f'  --data {data}{findings} --out "$MLPLAT_OUTPUT/train" --model-out "$MLPLAT_OUTPUT/model"')
    # global rank 0 (on node 0) wrote the model; node 0 publishes it once every rank finished
    lines.append('if [ "${PET_NODE_RANK:-0}" = 0 ]; then\n'
                 '  python -m mlplat publish "$MLPLAT_OUTPUT/model" "$MLPLAT_MODEL_STORE" \\\n'
                 '    --version "$MLPLAT_JOB-$(date -u +%Y%m%d-%H%M%S)"\n'
                 'fi')
    return "\n".join(lines) + "\n"


def train_parameters(spec: PipelineSpec, best_params: dict[str, Any] | None) -> tuple[str, str]:
    """(plugin, params JSON) of the train step, with the tuned params merged in for a spec with a tune step."""
    from mlplat import registry
    from mlplat.registry import StageKind

    plugin, params = step_parameters(spec, "train")
    tune = spec.steps.tune
    if tune is None:
        if best_params is not None:
            raise UsageError("--best-params: the spec has no tune step; its train params are what the TrainJob trains")
        return plugin, params
    if best_params is None:
        raise UsageError("steps.tune: a TrainJob trains fixed params, not a search; run the search first "
                         f"(`mlplat run SPEC`) and pass its result: `{BEST_PARAMS_HINT}`")
    unknown = sorted(set(best_params) - set(tune.search_space))
    if unknown:
        raise UsageError(f"--best-params: {', '.join(unknown)} not in steps.tune.search_space "
                         f"({', '.join(sorted(tune.search_space))}); was it tuned with another spec?")
    merged = {**spec.steps.train.params, **best_params}
    try:
        config = registry.spec_of(StageKind.TRAINER, plugin).parse_config(merged, "best_params")
    except SpecError as exc:
        raise SpecError(exc.problems, "--best-params") from None
    return plugin, json.dumps(config.model_dump(mode="json"), sort_keys=True)


def default_store(spec: PipelineSpec) -> str:
    return spec.publish.uri or f"pvc://{DEFAULT_STORE_CLAIM}/{spec.name}"


def build_trainjob(spec: PipelineSpec, nodes: int = 2, name: str | None = None, output_pvc: str = OUTPUT_PVC,
                   runtime: str = RUNTIME, best_params: dict[str, Any] | None = None, model_store: str | None = None,
                   storage_secret: str | None = None) -> Any:
    """The TrainJob (a kubeflow_trainer_api model) for the spec's train step on `nodes` nodes.
    `best_params` (`mlplat.steps.read_best_params`) is required exactly when the spec has a tune step.
    The model is published to `model_store` (default `default_store`), with credentials from `storage_secret`."""
    from kubeflow_trainer_api import models as m

    from mlplat.k8s import storage
    from mlplat.kfp.compiler import spec_json
    from mlplat.modelstore import ModelStore, is_store_uri

    if nodes < 1:
        raise ValueError(f"nodes must be at least 1; got {nodes}")
    step = spec.steps.train
    res = step.resources
    plugin, params = train_parameters(spec, best_params)
    limits = security.resources(res.cpu, res.memory, {res.accelerator_type: str(res.gpus)} if res.gpus else None)["limits"]
    procs = res.gpus or int(step.params.get("ddp_processes", 1))
    output = f"{OUTPUT_MOUNT}/{spec.name}"
    name = name or f"{spec.name}-train"
    store = model_store or default_store(spec)
    if not is_store_uri(store) or store.startswith("file://"):
        raise UsageError(f"--publish-to: {store!r} is no model store a cluster reaches (use s3://, gs:// or pvc://CLAIM/PATH)")
    ModelStore(store)
    env = [m.IoK8sApiCoreV1EnvVar(name=k, value=v) for k, v in
           (("MLPLAT_SPEC", spec_json(spec)), ("MLPLAT_PLUGIN", plugin), ("MLPLAT_PARAMS", params), ("MLPLAT_OUTPUT", output),
            ("MLPLAT_WORK", WORK_DIR), ("MLPLAT_MODEL_STORE", store), ("MLPLAT_JOB", name))]
    env += [m.IoK8sApiCoreV1EnvVar.from_dict(e) for e in storage.credential_env(storage_secret)]
    store_volumes, store_mounts = storage.store_volume(store, read_only=False)
    claim = m.IoK8sApiCoreV1PersistentVolumeClaimVolumeSource(claim_name=output_pvc)
    volumes = [m.IoK8sApiCoreV1Volume(name="output", persistent_volume_claim=claim)]
    volumes += [m.IoK8sApiCoreV1Volume.from_dict(v) for v in store_volumes]
    mounts = [m.IoK8sApiCoreV1VolumeMount(name="output", mount_path=OUTPUT_MOUNT)]
    mounts += [m.IoK8sApiCoreV1VolumeMount.from_dict(v) for v in store_mounts]
    if (dshm := shm.volume(spec)) is not None:  # image specs: DataLoader workers need a memory-backed /dev/shm
        volumes.append(m.IoK8sApiCoreV1Volume.from_dict(dshm))
        mounts.append(m.IoK8sApiCoreV1VolumeMount.from_dict(shm.mount()))
    pod = m.TrainerV1alpha1PodSpecPatch(
        node_selector=dict(step.node_selector) or None,
        security_context=m.IoK8sApiCoreV1PodSecurityContext.from_dict(security.pod_security_context()),
        volumes=volumes,
        containers=[m.TrainerV1alpha1ContainerPatch(
            name=NODE, security_context=m.IoK8sApiCoreV1SecurityContext.from_dict(security.container_security_context()),
            volume_mounts=mounts)],
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
        image=step.image or spec.image, command=["sh", "-ec", script(spec)], env=env, num_nodes=nodes, num_proc_per_node=procs,
        resources_per_node=m.IoK8sApiCoreV1ResourceRequirements(limits=quantities, requests=quantities),
    )
    return m.TrainerV1alpha1TrainJob(
        api_version=API_VERSION, kind=KIND,
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, labels={"app.kubernetes.io/part-of": "mlplat", "mlplat.io/pipeline": spec.name}),
        spec=m.TrainerV1alpha1TrainJobSpec(runtime_ref=m.TrainerV1alpha1RuntimeRef(name=runtime), trainer=trainer,
                                           runtime_patches=[patch]),
    )


def to_yaml(job: Any) -> str:
    return goyaml.dump(job.to_dict(), width=120)


def output_pvc_yaml(name: str = OUTPUT_PVC, size: str = "10Gi") -> str:
    """Shared by every node of the TrainJob (ReadWriteMany); rank 0 writes the model there."""
    return goyaml.dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "mlplat"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}},
    })


BASE_DIR = "manifests/base/trainjob"
# the checked-in TrainJob: the main example's training step (demo.yaml's needs a run's tuned params)
DEMO_SPEC = "pipelines/breast_cancer.yaml"


def write_base(spec: PipelineSpec, directory: Any, nodes: int = 2) -> list[Any]:
    """The kustomize base: the TrainJob, its output PVC and the kustomization listing them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"pvc.yaml": output_pvc_yaml(), "trainjob.yaml": to_yaml(build_trainjob(spec, nodes)),
             "kustomization.yaml": "# Generated by `mlplat compile --all`; do not edit.\n"
                                   "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                   "resources:\n  - pvc.yaml\n  - trainjob.yaml\n"}
    for name, text in files.items():
        (directory / name).write_text(text)
    return [directory / name for name in files]
