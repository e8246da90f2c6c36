"""`mlplat run SPEC --runner kfp-local`: the compiled pipeline, run by kfp.local on this machine.

The spec is compiled to IR YAML in the run directory and loaded back through kfp's own
loader, so what runs here is exactly what a cluster would get. kfp.local's
SubprocessRunner(use_venv=False) runs each component in this Python environment; artifacts
land under runs/<id>/kfp/. The publish component publishes into the run store atomically
(RunStore.publish), so `runs/<id>/model` and `latest` look the same as after an in-process
run; with the spec's `publish.uri` it first publishes to that model store (as version <run id>),
exactly what it does on a cluster. A failed gate's task fails, which stops the graph as on a cluster; this runner then
records the run as failed and raises GateFailed with the in-process runner's words
(`GateResult.require()` from the deciding step's files), so `mlplat run` exits 1 either way.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from mlplat.contracts.validator import ValidationReport
from mlplat.errors import GateFailed
from mlplat.plan import build_plan
from mlplat.runner import RunSummary, finish, plan
from mlplat.runs import SPEC_YAML, Run, RunStore
from mlplat.spec import PipelineSpec, to_yaml

KFP_ROOT = "kfp"  # runs/<id>/kfp/: kfp.local's pipeline root for this run
COMPILED = "pipeline.yaml"


class KfpLocalSettingsIgnored(UserWarning):
    """Settings in the spec that only a cluster applies."""


def ignored_settings(spec: PipelineSpec) -> list[str]:
    """Every image, resource, node-selector and retry setting kfp.local will not apply, by field path."""
    found = [f"image={spec.image}"] if spec.image != PipelineSpec.model_fields["image"].default else []
    steps = [(p, s) for p, s in spec.steps.plugin_steps()] + [("evaluate", spec.steps.evaluate)]
    for path, step in steps:
        found += [f"steps.{path}.image={step.image}"] if step.image else []
        res = step.resources
        found += [f"steps.{path}.resources.{k}={v}" for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v]
        found += [f"steps.{path}.resources.gpus={res.gpus}"] if res.gpus else []
        found += [f"steps.{path}.node_selector={step.node_selector}"] if step.node_selector else []
        found += [f"steps.{path}.retries={step.retries}"] if step.retries else []
    return found


def warn_ignored_settings(spec: PipelineSpec) -> list[str]:
    found = ignored_settings(spec)
    if found:
        warnings.warn("kfp.local runs every step as a subprocess in this Python environment: images, resource "
                      "requests/limits, GPUs, node selectors and retries have no effect here (they apply on a cluster): "
                      + ", ".join(found),
                      KfpLocalSettingsIgnored, stacklevel=2)
    return found


def run_kfp_local(spec: PipelineSpec, spec_dir: Path, store: RunStore, run_id: str | None = None) -> RunSummary:
    """Compile, load back and run the pipeline with kfp.local; publish into the run store if both gates pass."""
    from kfp import components, local

    from mlplat.kfp.compiler import compile_spec
    from mlplat.steps import data_fingerprint

    warn_ignored_settings(spec)
    run = store.get(run_id) if run_id else store.create(spec.name)
    (run.dir / SPEC_YAML).write_text(to_yaml(spec))
    run.update(spec_name=spec.name, steps=plan(spec), runner="kfp-local")
    root = run.dir / KFP_ROOT
    pipeline = components.load_component_from_file(str(compile_spec(spec, run.dir / COMPILED)))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # kfp.local warns that the image is not a Python image; the step runs in this environment instead.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
            pipeline(data_root=str(spec_dir.resolve()), runs_dir=str(store.root), run_id=run.id,
                     data_fingerprint=data_fingerprint(spec, spec_dir.resolve()), model_store=spec.publish.uri or "")
    except BaseException as exc:
        found = collect(root)
        failure = gate_failure(spec, found, root) if isinstance(exc, Exception) else None
        if failure is None:
            _finish(run, found, "failed", f"{type(exc).__name__}: {exc}")
            raise
        _finish(run, found, "failed", str(failure))
        raise failure from None
    seconds = time.perf_counter() - started
    found = collect(root)
    failure = gate_failure(spec, found, root)
    if failure or not run.model_dir.is_dir():
        failure = failure or GateFailed("publish", ["the pipeline finished without publishing a model"])
        _finish(run, found, "failed", str(failure))
        raise failure
    if spec.publish.uri:
        from mlplat.modelstore import ModelStore

        run.update(published_uri=ModelStore(spec.publish.uri).version_uri(run.id))
    _finish(run, found, "succeeded", None)
    return RunSummary(run, run.model_dir, found["metrics"], found["step_seconds"], seconds)


def _task_dirs(root: Path, task: str) -> list[Path]:
    return sorted(root.glob(f"*/{task}"))


def _read(root: Path, task: str, *parts: str) -> Any:
    for task_dir in _task_dirs(root, task):
        path = task_dir.joinpath(*parts)
        if path.is_file():
            return json.loads(path.read_text())
    return None


def collect(root: Path) -> dict[str, Any]:
    """Metrics and step times from the run's kfp.local artifacts, shaped like the in-process run's metrics.json."""
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for step_json in sorted(root.glob("*/*/*/step.json")):
        record = json.loads(step_json.read_text())
        seconds[record["kind"]] = record["seconds"]
    report = _validation_report(root)
    if report is not None:
        metrics["validation"] = {"passed": report.passed, "blocking": len(report.blocking), "warnings": len(report.warnings)}
    tuned = _read(root, "tune", "best_params", "best_params.json")
    if tuned is not None:
        metrics["tune"] = tuned
    trained = _read(root, "train", "workdir", "metrics.json")
    if trained is not None:
        metrics["train"] = trained.get("final", {})
    evaluated = _read(root, "evaluate", "workdir", "metrics.json")
    if evaluated is not None:
        metrics["test"] = {k: v for k, v in evaluated["test"].items() if isinstance(v, (int, float))}
        metrics["evaluation_gate"] = evaluated["gate"]
    return {"metrics": metrics, "step_seconds": seconds}


def _validation_report(root: Path) -> ValidationReport | None:
    saved = _read(root, "validate", "findings", "report.json")
    return None if saved is None else ValidationReport.from_dict(saved)


def gate_failure(spec: PipelineSpec, found: dict[str, Any], root: Path) -> GateFailed | None:
    """The GateFailed the in-process runner would raise for this run's outcome (None if every gate that ran passed)."""
    from mlplat.kfp.components import workdir_name
    from mlplat.kfp.runtime import gate_result

    for node in build_plan(spec).nodes:
        if not node.gate:
            continue
        artifact = workdir_name(node)
        work = next((d / artifact for d in _task_dirs(root, node.name) if (d / artifact).is_dir()), None)
        if work is None:
            return None  # the step itself failed (or never ran): not a gate failure
        try:
            gate_result(node.gate, work).require()
        except GateFailed as failed:
            return failed
    return None


def _finish(run: Run, found: dict[str, Any], status: str, error: str | None) -> None:
    finish(run, found["metrics"], found["step_seconds"], status, error)
