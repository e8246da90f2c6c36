"""The `mlplat` command line. Command modules import heavy libraries inside their functions,
so `mlplat --help` and `mlplat plugins list` never import torch."""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO

import typer
from rich.markup import escape

from mlplat.cli import (
    datasets_cmd,
    demo_cmd,
    deploy_cmd,
    evaluate_cmd,
    kfp_cmd,
    monitor_cmd,
    plugins_cmd,
    publish_cmd,
    run_cmd,
    serve_cmd,
    tune_cmd,
)
from mlplat.cli.common import console_err
from mlplat.deprecations import RenamedKey
from mlplat.errors import MlplatError, PluginUnavailable
from mlplat.extras import extra_for_module, install_hint, require

app = typer.Typer(
    name="mlplat",
    help="mlplat: plugin-based MLOps for deep learning on Kubeflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(plugins_cmd.app, name="plugins")
app.add_typer(run_cmd.runs_app, name="runs")
app.add_typer(tune_cmd.app, name="tune")
app.add_typer(datasets_cmd.app, name="datasets")
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("publish")(publish_cmd.publish)
app.command("serve")(serve_cmd.serve)
app.command("deploy")(deploy_cmd.deploy)
app.command("monitor")(monitor_cmd.monitor)
app.command("compile")(kfp_cmd.compile_cmd)
app.command("submit")(kfp_cmd.submit_cmd)
app.command("upload")(kfp_cmd.upload_cmd)
app.command("trainjob")(kfp_cmd.trainjob_cmd)


_debug = {"on": False}  # set by the --debug option before any command runs


# The extra each command needs beyond the core, checked before the command imports anything heavy.
COMMAND_EXTRAS: dict[str, str] = {
    "serve": "serve", "deploy": "serve", "monitor": "serve",
    "compile": "kfp", "submit": "kfp", "trainjob": "kfp",
}


@app.callback()
def _options(ctx: typer.Context,
             debug: bool = typer.Option(False, "--debug", help="Show the traceback of errors (default: one line)")) -> None:
    """mlplat: plugin-based MLOps for deep learning on Kubeflow."""
    _debug["on"] = debug
    extra = COMMAND_EXTRAS.get(ctx.invoked_subcommand or "")
    if extra is not None and "--help" not in sys.argv:
        require(extra, f"mlplat {ctx.invoked_subcommand}")


def _missing_library(exc: ModuleNotFoundError) -> MlplatError | None:
    """A missing integration library reported as the extra that installs it (None: not one of ours)."""
    extra = extra_for_module(exc.name or "")
    if extra is None:
        return None
    return PluginUnavailable(f"{exc.name} is not installed: {install_hint(extra)}")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
                  line: str | None = None, _default: Any = warnings.showwarning) -> None:
    """A renamed spec key as one `warning:` line; other warnings as Python shows them."""
    if issubclass(category, RenamedKey):
        console_err.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main() -> None:
    # Python hides DeprecationWarnings outside __main__; a renamed key must reach the spec's author (once each)
    warnings.simplefilter("default", RenamedKey)
    warnings.showwarning = _show_warning
    try:
        try:
            app()
        except ModuleNotFoundError as exc:
            mapped = _missing_library(exc)
            if mapped is None:
                raise
            raise mapped from exc
    except MlplatError as exc:
        if _debug["on"]:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
