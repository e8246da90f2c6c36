"""The `mlplat` command line. Command modules import heavy libraries inside their functions,
so `mlplat --help` and `mlplat plugins list` never import torch."""

from __future__ import annotations

import sys

import typer

from mlplat.cli import demo_cmd, deploy_cmd, kfp_cmd, monitor_cmd, plugins_cmd, run_cmd, serve_cmd, tune_cmd
from mlplat.cli.common import console_err
from mlplat.errors import MlplatError

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
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("serve")(serve_cmd.serve)
app.command("deploy")(deploy_cmd.deploy)
app.command("monitor")(monitor_cmd.monitor)
app.command("compile")(kfp_cmd.compile_cmd)
app.command("submit")(kfp_cmd.submit_cmd)
app.command("upload")(kfp_cmd.upload_cmd)
app.command("trainjob")(kfp_cmd.trainjob_cmd)


_debug = {"on": False}  # set by the --debug option before any command runs


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of errors (default: one line)")) -> None:
    """mlplat: plugin-based MLOps for deep learning on Kubeflow."""
    _debug["on"] = debug


def main() -> None:
    try:
        app()
    except MlplatError as exc:
        if _debug["on"]:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
