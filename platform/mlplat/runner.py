"""The in-process runner: the embedded default that runs a spec on this machine.

It calls the step functions in `mlplat.steps` with artifact paths under
`runs/<run-id>/steps/<step>/`, exactly the paths a KFP component would get, records
metrics, and publishes the model atomically only when every gate has passed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplat import steps
from mlplat.errors import GateFailed
from mlplat.plan import GateResult, build_plan
from mlplat.runs import METRICS_JSON, SPEC_YAML, Run, RunStore, write_json_atomic
from mlplat.spec import PipelineSpec, to_yaml


class Progress:
    """What the runner tells its caller; the CLI implements it with rich, tests ignore it."""

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, seconds: float) -> None: ...

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None: ...


RUN_LOG = "run.log"


@contextlib.contextmanager
def run_log(run: Run) -> Iterator[None]:
    """While a run executes, the plugins' `context.log` lines (and mlplat's warnings) go to runs/<id>/run.log."""
    handler = logging.FileHandler(run.dir / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("mlplat")
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


@dataclass
class RunSummary:
    """What every runner returns; `seconds` is the wall time where a runner measures it as a whole (kfp-local)."""

    run: Run
    model_dir: Path
    metrics: dict[str, Any]
    step_seconds: dict[str, float]
    seconds: float | None = None


def plan(spec: PipelineSpec) -> list[str]:
    """The steps a spec runs, in order (from `mlplat.plan`)."""
    return build_plan(spec).names


def run_pipeline(spec: PipelineSpec, spec_dir: Path, store: RunStore, progress: Progress | None = None,
                 run_id: str | None = None) -> RunSummary:
    """Run every step of a resolved spec; publish only if all gates pass."""
    progress = progress or Progress()
    run = store.get(run_id) if run_id else store.create(spec.name)
    resume = run_id is not None
    (run.dir / SPEC_YAML).write_text(to_yaml(spec))
    run.update(spec_name=spec.name, steps=plan(spec), resume_count=run.record().get("resume_count", -1) + 1)
    seconds: dict[str, float] = {}
    metrics: dict[str, Any] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        progress.step_started(name)
        started = time.perf_counter()
        result = fn()
        seconds[name] = time.perf_counter() - started
        progress.step_finished(name, seconds[name])
        run.update(step_seconds=seconds)
        return result

    log = contextlib.ExitStack()
    try:
        log.enter_context(run_log(run))
        data = run.step_dir("ingest")
        timed("ingest", lambda: steps.ingest(spec, spec_dir, data))
        run.update(data=steps.read_fingerprints(data))  # which version of each file this run read
        findings = schema = None
        if spec.steps.validate_:
            out = run.step_dir("validate")
            report = timed("validate", lambda: steps.validate(spec, data, out))
            metrics["validation"] = {"passed": report.passed, "blocking": len(report.blocking), "warnings": len(report.warnings)}
            GateResult("validation", report.passed, [c.reason for c in report.blocking], str(out / "report.html")).require()
            findings, schema = out / steps.FINDINGS_JSON, out / "schema.json"
        if spec.steps.augment:
            out = run.step_dir("augment")
            timed("augment", lambda: steps.augment(spec, data, out, findings))
            data = out
        best = None
        if spec.steps.tune:
            out = run.step_dir("tune")
            metrics["tune"] = timed("tune", lambda: steps.tune(spec, data, out, resume))
            best = out / steps.BEST_PARAMS_JSON
        out = run.step_dir("train")
        # loaded once here; evaluate, explain and drift reuse it (and keep its manifest in step with model.json)
        loaded = timed("train", lambda: steps.train_model(spec, data, out, best, schema, progress.epoch, resume, store.root))
        model = loaded.directory
        metrics["train"] = _read_json(out / steps.METRICS_JSON).get("final", {})
        evaluation = timed("evaluate", lambda: steps.evaluate(spec, data, model, run.step_dir("evaluate"), loaded=loaded))
        metrics["test"] = {k: v for k, v in evaluation["test"].items() if isinstance(v, (int, float))}
        metrics["evaluation_gate"] = evaluation["gate"]
        GateResult("evaluation", evaluation["gate"]["passed"], evaluation["gate"]["failures"]).require()
        if spec.steps.explain:
            timed("explain", lambda: steps.explain(spec, data, model, run.step_dir("explain"), loaded=loaded))
        if spec.steps.monitor:
            timed("monitor", lambda: steps.monitor(spec, model, run.step_dir("monitor"), loaded=loaded))
        published = timed("publish", lambda: publish(spec, store, run, model))
    except GateFailed as exc:
        finish(run, metrics, seconds, "failed", str(exc))
        raise
    except BaseException as exc:  # interrupted or crashed: record it, publish nothing
        finish(run, metrics, seconds, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        log.close()
    finish(run, metrics, seconds, "succeeded", None)
    return RunSummary(run, published, metrics, seconds)


def publish(spec: PipelineSpec, store: RunStore, run: Run, model: Path) -> Path:
    """Publish to the spec's model store first (`publish.uri`), then to the run store: if the upload
    fails, neither `latest` moves and the run fails."""
    if spec.publish.uri:
        from mlplat.modelstore import ModelStore

        run.update(published_uri=ModelStore(spec.publish.uri).publish(model, run.id))
    return store.publish(run, model)


def finish(run: Run, metrics: dict[str, Any], seconds: dict[str, float], status: str, error: str | None) -> None:
    """Every runner's last act: metrics.json with the step times, then the run's status in run.json."""
    write_json_atomic(run.dir / METRICS_JSON, {**metrics, "step_seconds": seconds})
    run.update(status=status, error=error, finished_at=time.time())


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}
