"""The main job through the real CLI: spec → validate → train → evaluate → publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.slow
def test_demo_spec_runs_end_to_end_from_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "MLPLAT_RUNS_DIR": str(tmp_path / "runs")}
    run = subprocess.run([sys.executable, "-m", "mlplat", "run", str(REPO / "pipelines" / "breast_cancer.yaml")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "succeeded" in run.stdout and "model:" in run.stdout
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink()
    metrics = json.loads((latest / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9 and metrics["evaluation_gate"]["passed"]
    assert (latest / "steps" / "validate" / "report.html").is_file()
    assert (latest / "model" / "weights.safetensors").is_file()
    listed = subprocess.run([sys.executable, "-m", "mlplat", "runs", "list"], capture_output=True, text=True, env=env)
    assert os.readlink(latest) in listed.stdout and "succeeded" in listed.stdout
    shown = subprocess.run([sys.executable, "-m", "mlplat", "runs", "show", "latest"], capture_output=True, text=True, env=env)
    assert json.loads(shown.stdout)["run"]["status"] == "succeeded"
