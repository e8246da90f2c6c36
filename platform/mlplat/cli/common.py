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
