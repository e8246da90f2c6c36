"""What a KFP component does around its step: launch `python -m mlplat.kfp.step`, then turn
the step's files into the artifacts the Kubeflow UI shows (Metrics, ClassificationMetrics,
HTML, Markdown) and the gate outcome that the `gate` task turns into a failed run.

This runs inside the component's container (or kfp.local's subprocess). Artifacts are the
`kfp.dsl` objects the executor hands the component; only their `.path` and logging
methods are used here.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlplat.reports import html_page, markdown_table


def launch(kind: str, spec: str, out: Any, plugin: str = "", params: str = "", **paths: Any) -> Path:
    """Run the step in its own `python -m mlplat.kfp.step` process; returns the working directory."""
    work = Path(out.path)
    command = [sys.executable, "-m", "mlplat.kfp.step", kind, "--spec", spec, "--plugin", plugin, "--params", params,
               "--out", str(work)]
    for name, value in paths.items():
        path = getattr(value, "path", value)
        if path:
            command += [f"--{name.replace('_', '-')}", str(path)]
    finished = subprocess.run(command, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"step {kind} failed with exit code {finished.returncode} (command: python -m mlplat.kfp.step {kind})")
    return work


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def html_report(artifact: Any, work: Path, title: str) -> None:
    """The step's report.html as an HTML artifact (a short page if the plugin wrote none)."""
    source = work / "report.html"
    target = Path(artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copyfile(source, target)
    else:
        target.write_text(html_page(title, [("Report", f"<p>{html.escape(title)}: this plugin wrote no HTML report.</p>")]))


def markdown(artifact: Any, text: str) -> None:
    target = Path(artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def scalars(artifact: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Numbers (not bools) as Metrics scalars; KFP keys must be plain names."""
    for key, value in sorted(values.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            artifact.log_metric(f"{prefix}{key}", float(value))


def classification(artifact: Any, test: dict[str, Any]) -> None:
    """Confusion matrix always; ROC curve when evaluate computed one (binary tasks)."""
    cm = test["confusion_matrix"]
    artifact.log_confusion_matrix([str(c) for c in cm["labels"]], cm["matrix"])
    roc = test.get("roc_curve")
    if roc:
        artifact.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])


def evaluation_summary(result: dict[str, Any]) -> str:
    """The evaluation gate as Markdown for the KFP UI."""
    gate = result["gate"]
    rows = [(k, v) for k, v in result["test"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    lines = ["## Evaluation gate", "", f"Gate: **{'PASSED' if gate['passed'] else 'FAILED'}**", "",
             markdown_table(("test metric", "value"), rows)]
    if gate["failures"]:
        lines += ["", "Failures:", "", *(f"- {f}" for f in gate["failures"])]
    return "\n".join(lines) + "\n"


def augment_summary(work: Path) -> str:
    rows = read_json(work / "augment.json")
    return "## Augmentation\n\n" + markdown_table(("augmenter", "rows", "synthetic"),
                                                  [(r["augmenter"], r["rows"], r["synthetic"]) for r in rows]) + "\n"


def describe_model(artifact: Any) -> None:
    """Metadata the KFP UI lists for a Model artifact: framework, architecture, test metrics."""
    from mlplat.modeldir import ModelDir

    manifest = ModelDir(Path(artifact.path)).read()
    test = manifest.metrics.test or {}
    artifact.metadata.update({"framework": "pytorch", "trainer": manifest.trainer.plugin,
                              "classes": manifest.classes, **{f"test_{k}": v for k, v in test.items()}})


def publish(model: Any, published: Any, runs_dir: str, run_id: str, model_store: str = "", kfp_run_id: str = "") -> None:
    """Copy the model to the published artifact; publish it to the model store (`model_store`, as version
    `run_id`, else the KFP run's id), then with a run store (kfp-local) there, each atomically. The store
    comes first, as in the in-process runner: if its upload fails, the task fails and no `latest` moves."""
    from mlplat.modeldir import copy_model_dir

    copy_model_dir(Path(model.path), Path(published.path))
    describe_model(published)
    if model_store:
        from mlplat.modelstore import ModelStore

        published.metadata["model_store_uri"] = ModelStore(model_store).publish(Path(model.path), run_id or kfp_run_id)
    if runs_dir:
        from mlplat.runs import RunStore

        store = RunStore(Path(runs_dir))
        store.publish(store.get(run_id), Path(model.path))


def gate_result(gate: str, work: Path) -> Any:
    """The outcome of the validation or evaluation gate, read from the deciding step's working directory."""
    from mlplat.plan import GateResult

    if gate == "validation":
        from mlplat.contracts.validator import ValidationReport

        report = ValidationReport.from_dict(read_json(work / "report.json"))
        return GateResult("validation", report.passed, [c.reason for c in report.blocking], str(work / "report.html"))
    if gate == "evaluation":
        decided = read_json(work / "metrics.json")["gate"]
        return GateResult("evaluation", decided["passed"], decided["failures"])
    raise ValueError(f"unknown gate {gate!r}; expected validation or evaluation")


def gate(gate: str, result: Any) -> None:
    """Raise GateFailed (the task exits non-zero, so the run fails) unless the gate passed."""
    gate_result(gate, Path(result.path)).require()


# One function per component: the component body only imports this module and calls it, so
# the compiled YAML stays small and the logic stays here, where it is tested.

def ingest(spec: str, data_root: str, data: Any, data_fingerprint: str = "") -> None:
    # data_fingerprint is an input so that it is part of KFP's cache key; the step checks the data still matches it
    launch("ingest", spec, data, data_root=data_root, data_fingerprint=data_fingerprint)


def validate(spec: str, plugin: str, params: str, data: Any, findings: Any, report: Any, summary: Any) -> bool:
    work = launch("validate", spec, findings, plugin, params, data=data)
    html_report(report, work, "Data validation")
    markdown(summary, (work / "report.md").read_text())
    return bool(read_json(work / "report.json")["passed"])


def augment(spec: str, plugin: str, params: str, data: Any, findings: Any, data_out: Any, summary: Any) -> None:
    work = launch("augment", spec, data_out, plugin, params, data=data, findings=findings)
    markdown(summary, augment_summary(work))


def tune(spec: str, plugin: str, params: str, data: Any, best_params: Any, metrics: Any, report: Any) -> None:
    work = launch("tune", spec, best_params, plugin, params, data=data)
    found = read_json(work / "best_params.json")
    scalars(metrics, {"best_value": found["best_value"], **{f"best_{k}": v for k, v in found["best_params"].items()}})
    html_report(report, work, "Tuning")


def train(spec: str, plugin: str, params: str, data: Any, best_params: Any, findings: Any, workdir: Any, model: Any,
          metrics: Any, report: Any) -> None:
    work = launch("train", spec, workdir, plugin, params, data=data, best_params=best_params, findings=findings, model_out=model)
    scalars(metrics, read_json(work / "metrics.json").get("final", {}))
    html_report(report, work, "Training")
    describe_model(model)


def evaluate(spec: str, plugin: str, params: str, data: Any, model: Any, workdir: Any, model_out: Any, metrics: Any,
             classification_metrics: Any, summary: Any) -> bool:
    work = launch("evaluate", spec, workdir, plugin, params, data=data, model=model, model_out=model_out)
    result = read_json(work / "metrics.json")
    scalars(metrics, result["test"])
    classification(classification_metrics, result["test"])
    markdown(summary, evaluation_summary(result))
    describe_model(model_out)
    return bool(result["gate"]["passed"])


def explain(spec: str, plugin: str, params: str, data: Any, model: Any, workdir: Any, model_out: Any, report: Any) -> None:
    work = launch("explain", spec, workdir, plugin, params, data=data, model=model, model_out=model_out)
    html_report(report, work, "Explanation")
    describe_model(model_out)


def drift(spec: str, plugin: str, params: str, model: Any, workdir: Any, model_out: Any, report: Any) -> None:
    work = launch("drift", spec, workdir, plugin, params, model=model, model_out=model_out)
    html_report(report, work, "Drift reference")
    describe_model(model_out)
