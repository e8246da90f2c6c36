"""`mlplat plugins ...`: what is installed, found through entry points only (no plugin implementation is imported)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from mlplat.cli.common import console

app = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True)


@app.command("list")
def list_plugins() -> None:
    """List every plugin of every stage kind, with its distribution, needs and status (broken ones say why)."""
    from mlplat.registry import discover_all

    table = Table("kind", "name", "distribution", "needs", "status", "summary")
    for kind, (plugins, broken) in discover_all().items():
        for name, found in sorted(plugins.items()):
            table.add_row(kind.value, name, found.distribution, ",".join(sorted(found.spec.needs)) or "-", "ok",
                          found.spec.summary)
        for name, bad in sorted(broken.items()):
            table.add_row(kind.value, name, bad.distribution, "-", f"[red]broken[/]: {bad.error}", "")
    console.print(table)


@app.command("show")
def show_plugin(
    kind: str = typer.Argument(..., help="validator | augmenter | trainer | tuner | explainer | drift_detector"),
    name: str = typer.Argument(..., help="The plugin's name, as `mlplat plugins list` shows it"),
) -> None:
    """Print a plugin's config: every field with its type, default and description."""
    from mlplat.errors import UsageError
    from mlplat.registry import StageKind, lookup

    try:
        stage = StageKind(kind)
    except ValueError:
        raise UsageError(f"KIND: {kind!r} is not a stage kind; choose one of {', '.join(k.value for k in StageKind)}") from None
    found = lookup(stage, name)
    spec = found.spec
    console.print(f"[bold]{stage.value} plugin {spec.name!r}[/] from {found.distribution} ({found.entry_point})", highlight=False)
    if spec.summary:
        console.print(spec.summary, highlight=False)
    console.print(f"needs: {', '.join(sorted(spec.needs)) or '-'}; extra: {spec.extra or '-'}; implementation: {spec.factory}",
                  highlight=False, markup=False)
    console.print(f"tasks: {', '.join(sorted(spec.tasks))}", highlight=False)
    for task in sorted(spec.tasks):  # a tuner's metrics depend on the task (PluginSpec.tune_metrics_for)
        metrics = spec.tune_metrics_for(task)
        if metrics:
            console.print(f"tune metrics ({task}): " + ", ".join(f"{m} ({d})" for m, d in metrics.items()), highlight=False)
    if spec.katib_algorithm:
        console.print(f"katib algorithm: {spec.katib_algorithm}", highlight=False)
    table = Table("field", "type", "default", "description")
    for field, info in spec.config_model.model_fields.items():
        table.add_row(field, _type_name(info.annotation), _default(info), info.description or "")
    console.print(table)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if getattr(annotation, "__args__", None) is None else None
    return text or str(annotation).replace("typing.", "")


def _default(info: Any) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    try:
        return json.dumps(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)
    except TypeError:
        return repr(value)
