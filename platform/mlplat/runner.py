"""The in-process runner: the embedded default that runs a spec on this machine.

It calls the step functions in `mlplat.steps` with artifact paths under
`runs/<run-id>/steps/<step>/`, exactly the paths a KFP component would get, records
metrics, and publishes the model atomically only when every gate has passed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlplat import steps
from mlplat.errors import GateFailed, MlplatError
from mlplat.plan import GateResult, build_plan
from mlplat.runs import METRICS_JSON, SPEC_YAML, Run, RunStore, is_disk_full, write_json_atomic
from mlplat.spec import PipelineSpec, to_yaml


class Progress(Protocol):
    """What the runner tells its caller; the CLI implements it with rich, tests subclass it (no-ops by default)."""

    def step_started(self, step: str) -> None:
        return None

    def step_finished(self, step: str, seconds: float) -> None:
        return None

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        return None


class _Silent(Progress):
    """A caller that wants no progress."""


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
    progress = progress or _Silent()
    resume = run_id is not None
    if run_id:
        run = store.get(run_id)
        store.check_resumable(run)  # before anything is written: a refused resume leaves the run as it was
        run.clean_leftovers()
        run.claim()
    else:
        run = store.create(spec.name)
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
        log.enter_context(run.heartbeat())
        log.enter_context(run_log(run))
        state = _RunState(spec, spec_dir, store, run, resume, progress, metrics, data=run.step_dir("ingest"))
        for node in build_plan(spec).nodes:
            timed(node.name, functools.partial(_EXECUTE[node.name], state))
            if node.gate:
                state.gates[node.gate].require()
        assert state.published is not None
    except GateFailed as exc:
        finish(run, metrics, seconds, "failed", str(exc))
        raise
    except BaseException as exc:  # interrupted or crashed: record it, publish nothing
        error = f"{type(exc).__name__}: {exc}"
        finish(run, metrics, seconds, "failed", error)
        if is_disk_full(exc):  # the user's problem, not a bug: one line, no traceback chain
            raise MlplatError(f"run {run.id} failed: {error}") from None
        raise
    finally:
        log.close()
    finish(run, metrics, seconds, "succeeded", None)
    return RunSummary(run, state.published, metrics, seconds)


@dataclass
class _RunState:
    """The artifacts the in-process nodes hand each other (the plan's Artifact names), and what they report."""

    spec: PipelineSpec
    spec_dir: Path
    store: RunStore
    run: Run
    resume: bool
    progress: Progress
    metrics: dict[str, Any]
    data: Path
    findings: Path | None = None
    schema: Path | None = None
    best_params: Path | None = None
    loaded: Any = None  # LoadedModel: loaded once by train; evaluate, explain and drift reuse it
    gates: dict[str, GateResult] = field(default_factory=dict)
    published: Path | None = None

    def out(self, node: str) -> Path:
        return self.run.step_dir(node)


def _ingest(s: _RunState) -> None:
    out = s.out("ingest")
    steps.ingest(s.spec, s.spec_dir, out)
    s.run.update(data=steps.read_fingerprints(out))  # which version of each file this run read


def _validate(s: _RunState) -> None:
    out = s.out("validate")
    report = steps.validate(s.spec, s.data, out)
    s.metrics["validation"] = {"passed": report.passed, "blocking": len(report.blocking), "warnings": len(report.warnings)}
    s.gates["validation"] = GateResult("validation", report.passed, [c.reason for c in report.blocking], str(out / "report.html"))
    s.findings, s.schema = out / steps.FINDINGS_JSON, out / "schema.json"


def _augment(s: _RunState) -> None:
    out = s.out("augment")
    steps.augment(s.spec, s.data, out, s.findings)
    s.data = out


def _tune(s: _RunState) -> None:
    out = s.out("tune")
    s.metrics["tune"] = steps.tune(s.spec, s.data, out, s.resume)
    s.best_params = out / steps.BEST_PARAMS_JSON


def _train(s: _RunState) -> None:
    out = s.out("train")
    s.loaded = steps.train_model(s.spec, s.data, out, s.best_params, s.schema, s.progress.epoch, s.resume, s.store.root)
    s.metrics["train"] = _read_json(out / steps.METRICS_JSON).get("final", {})


def _evaluate(s: _RunState) -> None:
    out = s.out("evaluate")
    evaluation = steps.evaluate(s.spec, s.data, s.loaded.directory, out, loaded=s.loaded)
    s.metrics["test"] = {k: v for k, v in evaluation["test"].items() if isinstance(v, (int, float))}
    s.metrics["evaluation_gate"] = evaluation["gate"]
    s.gates["evaluation"] = GateResult("evaluation", evaluation["gate"]["passed"], evaluation["gate"]["failures"])


def _explain(s: _RunState) -> None:
    out = s.out("explain")
    steps.explain(s.spec, s.data, s.loaded.directory, out, loaded=s.loaded)


def _drift(s: _RunState) -> None:
    out = s.out("drift")
    steps.drift(s.spec, s.loaded.directory, out, loaded=s.loaded)


def _publish(s: _RunState) -> None:
    s.published = publish(s.spec, s.store, s.run, s.loaded.directory)  # atomic; reached only when every gate passed


# One executor per plan node, run in the plan's order; a test checks they match `plan.NODES`.
_EXECUTE: dict[str, Callable[[_RunState], None]] = {
    "ingest": _ingest, "validate": _validate, "augment": _augment, "tune": _tune, "train": _train,
    "evaluate": _evaluate, "explain": _explain, "drift": _drift, "publish": _publish,
}


def publish(spec: PipelineSpec, store: RunStore, run: Run, model: Path) -> Path:
    """Publish to the spec's model store first (`publish.uri`), then to the run store: if the upload
    fails, neither `latest` moves and the run fails."""
    if spec.publish.uri:
        from mlplat.modelstore import ModelStore

        run.update(published_uri=ModelStore(spec.publish.uri).publish(model, run.id))
    return store.publish(run, model)


def finish(run: Run, metrics: dict[str, Any], seconds: dict[str, float], status: str, error: str | None) -> None:
    """Every runner's last act: metrics.json with the step times, then the run's status in run.json.

    A failed run's status is recorded even when metrics.json cannot be written (a full disk), and the
    temporary files its writes left are removed."""
    try:
        write_json_atomic(run.dir / METRICS_JSON, {**metrics, "step_seconds": seconds})
    except OSError as exc:
        if status == "succeeded" or not is_disk_full(exc):
            raise
        logging.getLogger(__name__).warning("run %s: metrics.json not written: %s", run.id, exc)
    if status != "succeeded":
        run.clean_leftovers()
    run.update(status=status, error=error and " ".join(error.split()), finished_at=time.time())


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}
