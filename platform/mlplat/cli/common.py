"""Shared CLI options and consoles."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

console = Console()
console_err = Console(stderr=True)

RUNS_DIR_OPTION = typer.Option(
    Path(os.environ.get("MLPLAT_RUNS_DIR", "runs")), "--runs-dir", help="Run store directory [env: MLPLAT_RUNS_DIR]"
)

# The monitor's window and hysteresis, one definition for `mlplat monitor` and `mlplat serve` (its in-process monitor)
MONITOR_WINDOW_OPTION = typer.Option(5000, "--window", min=1, help="Monitoring: rows kept in the window")
MONITOR_CONSECUTIVE_OPTION = typer.Option(3, "--consecutive", min=1,
                                          help="Monitoring hysteresis: windows in a row that raise or clear a drift flag")
MONITOR_MIN_NEW_ROWS_OPTION = typer.Option(100, "--min-new-rows", min=0,
                                           help="Monitoring: new rows before a window counts toward hysteresis")
