"""`mlplat run` and `mlplat runs ...`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mlplat.cli.common import RUNS_DIR_OPTION, console

runs_app = typer.Typer(help="Inspect runs in the run store.", no_args_is_help=True)


class RunnerName(str, Enum):
    in_process = "in-process"
    kfp_local = "kfp-local"


def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Pipeline spec (YAML)"),
    runs_dir: Path = RUNS_DIR_OPTION,
    runner: RunnerName = typer.Option(RunnerName.in_process, "--runner", help="Where the steps run"),
    resume: str | None = typer.Option(None, "--resume", metavar="RUN",
                               help="Resume an interrupted or failed run from its checkpoints (a finished run is refused)"),
    publish_to: str | None = typer.Option(None, "--publish-to", metavar="URI",
                                   help="Also publish the model to this model store (s3://, gs://, pvc://, path); "
                                        "overrides the spec's publish.uri"),
) -> None:
    """Run a pipeline spec end to end and publish the model if every gate passes."""
    from mlplat.runs import RunStore
    from mlplat.spec import load_spec, resolve

    spec = resolve(load_spec(spec_path), str(spec_path))
    if publish_to:
        spec.publish.uri = publish_to
    store = RunStore(runs_dir)
    if runner is RunnerName.kfp_local:
        from mlplat.errors import UsageError
        from mlplat.kfp.local import run_kfp_local

        if resume:
            raise UsageError("--resume works with --runner in-process only (kfp.local reruns every step)")
        done = run_kfp_local(spec, spec_path.parent, store)
        console.print(f"[bold green]run {done.run.id} succeeded[/] (kfp.local) in {done.seconds:.1f}s")
        console.print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in done.metrics.get("test", {}).items() if isinstance(v, float)))
        console.print(f"model:   {done.model_dir}")
        console.print(f"latest:  {store.root / 'latest'} -> {done.run.id}")
        if spec.publish.uri:
            console.print(f"store:   {done.run.record().get('published_uri')} (latest in {spec.publish.uri})")
        return
    from mlplat.runner import run_pipeline

    with RichProgress() as progress:
        result = run_pipeline(spec, spec_path.parent.resolve(), store, progress, run_id=resume)
    test = result.metrics.get("test", {})
    console.print(f"[bold green]run {result.run.id} succeeded[/] in {sum(result.step_seconds.values()):.1f}s")
    console.print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, float)))
    console.print(f"model:   {result.model_dir}")
    console.print(f"reports: {result.run.dir / 'steps'} (*/report.html, */report.md)")
    console.print(f"latest:  {store.root / 'latest'} -> {result.run.id}")
    if spec.publish.uri:
        console.print(f"store:   {result.run.record().get('published_uri')} (latest in {spec.publish.uri})")


class _ConsoleLogHandler(logging.Handler):
    """Plugins' `context.log` lines, printed above the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        step = record.name.split(".", 2)[-1]  # mlplat.step.<step>
        console.print(f"  [dim]{step}:[/] {record.getMessage()}", highlight=False)


class RichProgress:
    """Rich progress bars for steps and training epochs."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False)
        self._epochs: Any = None
        self._log_handler = _ConsoleLogHandler()

    def __enter__(self) -> RichProgress:
        self._bars.__enter__()
        from mlplat.contracts.context import STEP_LOGGER

        logging.getLogger(STEP_LOGGER).addHandler(self._log_handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        from mlplat.contracts.context import STEP_LOGGER

        logging.getLogger(STEP_LOGGER).removeHandler(self._log_handler)
        self._bars.__exit__(*exc)

    def step_started(self, step: str) -> None:
        self._step = self._bars.add_task(f"[cyan]{step}", total=1, info="")

    def step_finished(self, step: str, seconds: float) -> None:
        self._bars.update(self._step, completed=1, info=f"{seconds:.2f}s")
        if self._epochs is not None:
            self._bars.remove_task(self._epochs)
            self._epochs = None

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        total = int(metrics.get("epochs", 0)) or None
        if self._epochs is None:
            self._epochs = self._bars.add_task("  epochs", total=total, info="")
        shown = {k: v for k, v in metrics.items() if k.startswith(("train_loss", "val_"))}
        self._bars.update(self._epochs, completed=epoch + 1, total=total,
                          info=" ".join(f"{k}={v:.3f}" for k, v in shown.items()))


@runs_app.command("list")
def list_runs(runs_dir: Path = RUNS_DIR_OPTION) -> None:
    """List runs, oldest first; `*` marks the published `latest`; a run whose process is gone shows "interrupted"."""
    from mlplat.runs import RunStore

    store = RunStore(runs_dir)
    latest = store.latest_id()
    table = Table("", "run", "status", "accuracy", "f1", "error")
    for r in store.list():
        record, test = r.record(), r.metrics().get("test", {})
        table.add_row("*" if r.id == latest else "", r.id, r.status(), _fmt(test.get("accuracy")),
                      _fmt(test.get("f1")), (record.get("error") or "")[:80])
    console.print(table)


@runs_app.command("show")
def show_run(run_id: str = typer.Argument(..., metavar="RUN", help="Run id or 'latest'"), runs_dir: Path = RUNS_DIR_OPTION) -> None:
    """Show one run's record, metrics and artifacts."""
    from mlplat.runs import RunStore

    run = RunStore(runs_dir).get(run_id)
    console.print_json(json.dumps({"run": {**run.record(), "status": run.status()}, "metrics": run.metrics(),
                                   "model": str(run.model_dir) if run.model_dir.is_dir() else None}, default=str))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"
