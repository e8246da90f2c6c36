"""One generic KFP lightweight component per stage kind.

Parameters: the resolved spec (JSON), the plugin name and the plugin params (JSON). The
artifacts are typed (Dataset, Model, Metrics, ClassificationMetrics, HTML, Markdown) so the
Kubeflow UI renders them. Each body imports `mlplat.kfp.runtime`, which launches
`python -m mlplat.kfp.step` and fills the artifacts. Lightweight (not container)
components, because kfp.local's SubprocessRunner runs only those; the image already has
mlplat and kfp, so nothing is pip-installed at run time.
"""

# no `from __future__ import annotations`: KFP reads the real annotation objects

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

DEFAULT_IMAGE = "ghcr.io/mlplat/mlplat:0.1.0"  # replaced per task by the spec's (or the step's) image
component = dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)


@component
def ingest(spec: str, data_root: str, data: Output[Dataset], data_fingerprint: str = ""):
    from mlplat.kfp import runtime

    runtime.ingest(spec, data_root, data, data_fingerprint)


@component
def validate(spec: str, plugin: str, params: str, data: Input[Dataset], result: Output[Artifact], report: Output[HTML],
             summary: Output[Markdown]) -> bool:
    from mlplat.kfp import runtime

    return runtime.validate(spec, plugin, params, data, result, report, summary)


@component
def augment(spec: str, plugin: str, params: str, data: Input[Dataset], augmented: Output[Dataset], summary: Output[Markdown],
            findings: Input[Artifact] = None):
    from mlplat.kfp import runtime

    runtime.augment(spec, plugin, params, data, findings, augmented, summary)


@component
def tune(spec: str, plugin: str, params: str, data: Input[Dataset], best: Output[Artifact], metrics: Output[Metrics],
         report: Output[HTML]):
    from mlplat.kfp import runtime

    runtime.tune(spec, plugin, params, data, best, metrics, report)


@component
def train(spec: str, plugin: str, params: str, data: Input[Dataset], workdir: Output[Artifact], model: Output[Model],
          metrics: Output[Metrics], report: Output[HTML], best: Input[Artifact] = None, findings: Input[Artifact] = None):
    from mlplat.kfp import runtime

    runtime.train(spec, plugin, params, data, best, findings, workdir, model, metrics, report)


@component
def evaluate(spec: str, plugin: str, params: str, data: Input[Dataset], model: Input[Model], workdir: Output[Artifact],
             evaluated: Output[Model], metrics: Output[Metrics], classification: Output[ClassificationMetrics],
             summary: Output[Markdown]) -> bool:
    from mlplat.kfp import runtime

    return runtime.evaluate(spec, plugin, params, data, model, workdir, evaluated, metrics, classification, summary)


@component
def explain(spec: str, plugin: str, params: str, data: Input[Dataset], model: Input[Model], workdir: Output[Artifact],
            explained: Output[Model], report: Output[HTML]):
    from mlplat.kfp import runtime

    runtime.explain(spec, plugin, params, data, model, workdir, explained, report)


@component
def drift(spec: str, plugin: str, params: str, model: Input[Model], workdir: Output[Artifact], model_out: Output[Model],
          report: Output[HTML]):
    from mlplat.kfp import runtime

    runtime.drift(spec, plugin, params, model, workdir, model_out, report)


@component
def publish(model: Input[Model], runs_dir: str, run_id: str, published: Output[Model]):
    from mlplat.kfp import runtime

    runtime.publish(model, published, runs_dir, run_id)


@component
def gate(gate: str, result: Input[Artifact]):
    """Fails the run when the validation or evaluation gate did not pass. A task of its own, after the step that
    decided: KFP uploads a task's artifacts only when it succeeds, so the step's report stays in the UI."""
    from mlplat.kfp import runtime

    runtime.gate(gate, result)
