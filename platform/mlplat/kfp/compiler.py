"""Spec → KFP v2 pipeline → IR YAML.

The graph is the plan (`mlplat.plan.build_plan`): one task per node, in the node order, each
reading the artifacts its node reads from the last task that wrote them (see
`mlplat.kfp.components` for how a component names them). Each gate is a task of its own after the
node that decides it: it fails (exit 1, GateFailed's words) when the gate did not pass, so the run
fails and nothing after it runs, while the deciding step succeeded and its report artifact is in
the UI (KFP never uploads a failed task's outputs).
Every step's image, resources, retries, caching and node selector come from
the spec. Pipeline parameters: `data_root` (where relative dataset paths resolve),
`runs_dir` and `run_id` (set by the kfp-local runner so publish lands in the run store), and
`model_store` (default: the spec's `publish.uri`), the model store URI the publish task writes to,
as version `run_id` or else the KFP run's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlplat.errors import SpecError
from mlplat.kfp.step import step_parameters
from mlplat.plan import Node, build_plan
from mlplat.spec import PipelineSpec, Resources, StepOptions, StepSpec

COMPILED_DIR = Path("manifests/base/pipelines/compiled")
StepLike = StepOptions  # a step (StepSpec, EvaluateStepSpec) or the augment chain's merged options


def spec_json(spec: PipelineSpec) -> str:
    return spec.model_dump_json(by_alias=True)


def build_pipeline(spec: PipelineSpec) -> Any:
    """The KFP pipeline (a GraphComponent) for a resolved spec."""
    from kfp import dsl

    from mlplat.kfp import components as c

    payload = spec_json(spec)
    nodes = build_plan(spec).nodes

    def pipeline(data_root: str = "", runs_dir: str = "", run_id: str = "", data_fingerprint: str = "",
                 model_store: str = spec.publish.uri or "") -> None:
        # data_fingerprint (set by the runner that starts the run) is part of ingest's cache key: edited data is re-read
        parameters = {"spec": payload, "data_root": data_root, "runs_dir": runs_dir, "run_id": run_id,
                      "data_fingerprint": data_fingerprint, "model_store": model_store,
                      "kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}  # publish: the model store, and a version per run
        written: dict[str, Any] = {}  # plan artifact name -> the output of the last task that wrote it
        gates: list[Any] = []  # every task created after a gate waits for it
        for node in nodes:
            made = _task(spec, node, c.for_node(node.name), parameters, written, gates)
            written.update({a.name: made.outputs[c.output_name(node, a)] for a in node.outputs})
            if not node.outputs:  # publish exists for its effect outside KFP: never skip it
                made.set_caching_options(False)
            if node.gate:
                name = f"{node.gate}-gate"
                gate = c.gate(gate=node.gate, result=made.outputs[c.workdir_name(node)]).set_display_name(name)
                gates.append(_placed(gate, spec, None, name, gates))

    # KFP reads parameter types from real annotation objects, not this module's postponed strings
    pipeline.__annotations__ = {"data_root": str, "runs_dir": str, "run_id": str, "data_fingerprint": str, "model_store": str}
    return dsl.pipeline(name=spec.name, description=spec.description or f"mlplat pipeline {spec.name}")(pipeline)


def _task(spec: PipelineSpec, node: Node, component: Any, parameters: dict[str, Any], written: dict[str, Any],
          gates: list[Any]) -> Any:
    """The task of one plan node: the pipeline parameters its component declares, its plugin and params (what
    the Kubeflow UI shows is what runs: `step.spec_for_step`), and the artifacts it reads that exist."""
    declared = component.component_spec.inputs
    inputs = {name: value for name, value in parameters.items() if name in declared}
    if node.field:
        inputs["plugin"], inputs["params"] = step_parameters(spec, node.name)
    for artifact in node.inputs:
        if artifact.name in written:
            inputs[artifact.name] = written[artifact.name]
        elif not artifact.optional:
            raise ValueError(f"plan node {node.name} reads {artifact.name}, which no node before it writes")
    configured = node.configured(spec)
    options = chain_options(configured) if isinstance(configured, list) else configured
    return _placed(component(**inputs), spec, options, node.name, gates)


def _placed(task: Any, spec: PipelineSpec, step: StepLike | None, path: str, gates: list[Any]) -> Any:
    """A task after every gate so far, with its step's settings."""
    if gates:
        task.after(*gates)
    configure(task, spec, step, path)
    return task


def chain_options(chain: list[StepSpec]) -> StepOptions:
    """The augment chain runs as one task, so it gets the union of its augmenters' settings: the
    largest CPU, memory and GPU request, the most retries, caching only if every augmenter allows
    it, every node-selector label. An image, accelerator type or node-selector value that two
    augmenters set differently cannot be merged and is refused, naming both."""
    from kubernetes.utils.quantity import parse_quantity

    def agreed(field: str, values: dict[int, Any]) -> Any:
        """The one value the augmenters that set `field` give it (None if none does)."""
        (first, value), *rest = values.items() if values else [(0, None)]
        for i, other in rest:
            if other != value:
                raise SpecError([(f"steps.augment.{i}.{field}", f"{other!r} conflicts with steps.augment.{first}.{field} = "
                                  f"{value!r}; the augment chain runs as one task, so its augmenters must agree")])
        return value

    def largest(field: str) -> str | None:
        sized = []
        for i, step in enumerate(chain):
            if value := getattr(step.resources, field):
                try:
                    sized.append((parse_quantity(value), value))
                except ValueError as exc:
                    raise SpecError([(f"steps.augment.{i}.resources.{field}", str(exc))]) from None
        return max(sized)[1] if sized else None

    keys = sorted({key for step in chain for key in step.node_selector})
    accelerator = agreed("resources.accelerator_type",
                         {i: s.resources.accelerator_type for i, s in enumerate(chain) if s.resources.gpus})
    return StepOptions(
        image=agreed("image", {i: s.image for i, s in enumerate(chain) if s.image}),
        resources=Resources(cpu=largest("cpu"), memory=largest("memory"), gpus=max(s.resources.gpus for s in chain),
                            **({"accelerator_type": accelerator} if accelerator else {})),
        retries=max(s.retries for s in chain),
        caching=all(s.caching for s in chain),
        node_selector={key: agreed(f"node_selector.{key}",
                                   {i: s.node_selector[key] for i, s in enumerate(chain) if key in s.node_selector})
                       for key in keys},
    )


def configure(task: Any, spec: PipelineSpec, step: StepLike | None, path: str) -> None:
    """Image, resources (requests = limits; defaults for what the step leaves out), GPUs, retries, caching, node
    selector and a non-root security context of one task. kfp-kubernetes sets the user; the KFP backend adds the
    rest of Pod Security "restricted" (no privilege escalation, capabilities dropped, RuntimeDefault seccomp)."""
    from kfp import kubernetes

    from mlplat.k8s import shm
    from mlplat.k8s.security import DEFAULT_CPU, DEFAULT_MEMORY, UID

    task.set_container_image(step.image if step and step.image else spec.image)
    kubernetes.set_security_context(task, run_as_user=UID, run_as_group=UID, run_as_non_root=True)
    shm.add_to_task(task, spec)  # image specs: a memory-backed /dev/shm for DataLoader workers
    res, where = (step.resources if step else Resources()), f"steps.{path}"
    try:
        task.set_cpu_request(res.cpu or DEFAULT_CPU).set_cpu_limit(res.cpu or DEFAULT_CPU)
        task.set_memory_request(res.memory or DEFAULT_MEMORY).set_memory_limit(res.memory or DEFAULT_MEMORY)
    except ValueError as exc:
        raise SpecError([(f"{where}.resources", str(exc))]) from None
    if step is None:
        return
    if res.gpus:
        task.set_accelerator_type(res.accelerator_type).set_accelerator_limit(res.gpus)
    if step.retries:
        task.set_retry(step.retries)
    task.set_caching_options(step.caching)
    for key, value in sorted(step.node_selector.items()):
        kubernetes.add_node_selector(task, key, value)


def compile_spec(spec: PipelineSpec, package_path: Path) -> Path:
    """Write the KFP IR YAML for a resolved spec."""
    from kfp import compiler

    package_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=build_pipeline(spec), package_path=str(package_path))
    return package_path


def compiled_name(spec_path: Path) -> str:
    return f"{spec_path.stem}.yaml"


def example_specs(pipelines_dir: Path) -> list[Path]:
    return sorted(pipelines_dir.glob("*.yaml"))


def compile_all(pipelines_dir: Path, out_dir: Path) -> list[Path]:
    """Compile every example spec into out_dir, removing stale files. The compiled IR is no Kubernetes resource and
    KFP reads no ConfigMaps: these files are uploaded (the Kubeflow UI, or `mlplat upload`)."""
    from mlplat.spec import load_spec, resolve

    written = []
    for spec_path in example_specs(pipelines_dir):
        spec = resolve(load_spec(spec_path), str(spec_path))
        written.append(compile_spec(spec, out_dir / compiled_name(spec_path)))
    for stale in set(out_dir.glob("*.yaml")) - set(written):
        stale.unlink()
    return written
