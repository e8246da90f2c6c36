"""`mlplat plugins ...`: what is installed, found through entry points only."""

from __future__ import annotations

import typer
from rich.table import Table

from mlplat.cli.common import console

app = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True)


@app.command("list")
def list_plugins() -> None:
    """List every plugin of every stage kind, with its distribution and needs."""
    from mlplat.registry import discover_all

    table = Table("kind", "name", "distribution", "needs", "summary")
    for kind, plugins in discover_all().items():
        for name, found in sorted(plugins.items()):
            table.add_row(kind.value, name, found.distribution, ",".join(sorted(found.spec.needs)) or "-", found.spec.summary)
    console.print(table)
