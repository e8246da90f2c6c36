"""The TrainJob's command, run for real on one node: `torchrun -m mlplat.kfp.step train` with two
CPU ranks (gloo). A cluster runs the same command on every node; here only the node count differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SPEC
from mlplat.kfp import step
from mlplat.kfp.compiler import spec_json
from mlplat.spec import parse_spec, resolve


@pytest.mark.slow
def test_step_process_trains_under_torchrun_ddp_and_only_rank0_writes_the_model(tmp_path: Path) -> None:
    spec = resolve(parse_spec({**TINY_SPEC, "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 2}}}}))
    payload = spec_json(spec)
    assert step.main(["ingest", "--spec", payload, "--out", str(tmp_path / "data")]) == 0
    plugin, params = step.step_parameters(spec, "train")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mlplat.kfp.step", "train",
         "--spec", payload, "--plugin", plugin, "--params", params, "--data", str(tmp_path / "data"),
         "--out", str(tmp_path / "train"), "--model-out", str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    assert manifest["trainer"]["plugin"] == "mlp"
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["ddp_processes"] == 2  # the trainer really ran as two DDP ranks
    assert (tmp_path / "train" / ".rank1").is_dir() and not (tmp_path / "train" / ".rank1" / "model.json").exists()
