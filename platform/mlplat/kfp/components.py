"""One generic KFP lightweight component per plan node (`mlplat.plan.NODES`), named after it.

Parameters: the resolved spec (JSON), the plugin name and the plugin params (JSON), and the
pipeline parameters a component declares. The compiler wires the plan's artifacts by name: a
component reads each artifact its node reads from the input of that name, and writes each artifact
its node writes to the output of that name, or `NAME_out` when it also reads it (evaluate reads
`model` and writes `model_out`). The artifacts are typed (Dataset, Model, Metrics,
ClassificationMetrics, HTML, Markdown) so the Kubeflow UI renders them. Each body imports `mlplat.kfp.runtime`, which launches
`python -m mlplat.kfp.step` and fills the artifacts. Lightweight (not container)
components, because kfp.local's SubprocessRunner runs only those; the image already has
mlplat and kfp, so nothing is pip-installed at run time.
"""

# no `from __future__ import annotations`: KFP reads the real annotation objects

from typing import Any

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

DEFAULT_IMAGE = "ghcr.io/mlplat/mlplat:0.1.0"  # replaced per task by the spec's (or the step's) image
component = dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)


@component
def ingest(spec: str, data_root: str, data: Output[Dataset], data_fingerprint: str = "") -> None:
    from mlplat.kfp import runtime

    runtime.ingest(spec, data_root, data, data_fingerprint)


@component
def validate(spec: str, plugin: str, params: str, data: Input[Dataset], findings: Output[Artifact], report: Output[HTML],
             summary: Output[Markdown]) -> bool:
    from mlplat.kfp import runtime

    return runtime.validate(spec, plugin, params, data, findings, report, summary)


@component
def augment(spec: str, plugin: str, params: str, data: Input[Dataset], data_out: Output[Dataset], summary: Output[Markdown],
            findings: Input[Artifact] = None) -> None:
    from mlplat.kfp import runtime

    runtime.augment(spec, plugin, params, data, findings, data_out, summary)


@component
def tune(spec: str, plugin: str, params: str, data: Input[Dataset], best_params: Output[Artifact], metrics: Output[Metrics],
         report: Output[HTML]) -> None:
    from mlplat.kfp import runtime

    runtime.tune(spec, plugin, params, data, best_params, metrics, report)


@component
def train(spec: str, plugin: str, params: str, data: Input[Dataset], workdir: Output[Artifact], model: Output[Model],
          metrics: Output[Metrics], report: Output[HTML], best_params: Input[Artifact] = None, findings: Input[Artifact] = None) -> None:
    from mlplat.kfp import runtime

    runtime.train(spec, plugin, params, data, best_params, findings, workdir, model, metrics, report)


@component
def evaluate(spec: str, plugin: str, params: str, data: Input[Dataset], model: Input[Model], workdir: Output[Artifact],
             model_out: Output[Model], metrics: Output[Metrics], classification: Output[ClassificationMetrics],
             summary: Output[Markdown]) -> bool:
    from mlplat.kfp import runtime

    return runtime.evaluate(spec, plugin, params, data, model, workdir, model_out, metrics, classification, summary)


@component
def explain(spec: str, plugin: str, params: str, data: Input[Dataset], model: Input[Model], workdir: Output[Artifact],
            model_out: Output[Model], report: Output[HTML]) -> None:
    from mlplat.kfp import runtime

    runtime.explain(spec, plugin, params, data, model, workdir, model_out, report)


@component
def drift(spec: str, plugin: str, params: str, model: Input[Model], workdir: Output[Artifact], model_out: Output[Model],
          report: Output[HTML]) -> None:
    from mlplat.kfp import runtime

    runtime.drift(spec, plugin, params, model, workdir, model_out, report)


@component
def publish(model: Input[Model], runs_dir: str, run_id: str, published: Output[Model], model_store: str = "",
            kfp_run_id: str = "") -> None:
    from mlplat.kfp import runtime

    runtime.publish(model, published, runs_dir, run_id, model_store, kfp_run_id)


@component
def gate(gate: str, result: Input[Artifact]) -> None:
    """Fails the run when the validation or evaluation gate did not pass. A task of its own, after the step that
    decided: KFP uploads a task's artifacts only when it succeeds, so the step's report stays in the UI."""
    from mlplat.kfp import runtime

    runtime.gate(gate, result)


def for_node(name: str) -> Any:
    """The component of the plan node `name`."""
    return globals()[name]


def output_name(node: Any, artifact: Any) -> str:
    """The output of `node`'s component that carries the plan artifact `artifact` (see the module docstring)."""
    return f"{artifact.name}_out" if any(a.name == artifact.name for a in node.inputs) else artifact.name


def workdir_name(node: Any) -> str:
    """The output holding the step's working directory (its reports and gate decision): `workdir`, or for a
    step whose only files are its artifact (validate: the findings) that artifact's output."""
    return "workdir" if "workdir" in for_node(node.name).component_spec.outputs else output_name(node, node.outputs[0])
