"""The TrainJob's own script, run for real on one node with two CPU ranks (gloo): ingest, validate,
augment, then `torchrun -m mlplat.kfp.step train` with the tuned params. A cluster runs the same
script on every node, with the PET_* variables the torch-distributed runtime sets; here only the
node count differs. The model it trains must be the one the pipeline trains: same training rows,
same (tuned) trainer config, same validation schema. Node 0 then publishes it to the model store
(here moto's S3 server on 127.0.0.1, with the env vars a KServe S3 Secret gives)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, SMALL_DATA_STEPS
from mlplat import steps
from mlplat.data import Splits
from mlplat.k8s import trainjob
from mlplat.modelstore import ModelStore
from mlplat.runner import run_pipeline
from mlplat.runs import RunStore
from mlplat.spec import parse_spec, resolve
from s3_server import moto_bucket

SPEC: dict[str, Any] = {
    "name": "tiny-trainjob",
    "seed": 3,
    "dataset": {"source": "sklearn:breast_cancer", "validation": 0.2, "test": 0.2},
    "steps": {
        **SMALL_DATA_STEPS,
        "train": {"plugin": "mlp", "params": {"depth": 1, "width": 32, "epochs": 2, "early_stopping_patience": None,
                                              "checkpoint_every": 0}},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_trainjob_script_trains_the_pipelines_model_under_torchrun_ddp(tmp_path: Path) -> None:
    spec = resolve(parse_spec(SPEC))
    pipeline = run_pipeline(spec, REPO, RunStore(tmp_path / "runs"))  # in-process; its tune step gives the best params
    best = steps.read_best_params(pipeline.run.dir / "steps" / "tune" / "best_params.json")

    store = "s3://models/tiny-trainjob"
    trainer = trainjob.build_trainjob(spec, nodes=1, best_params=best, model_store=store,
                                      storage_secret="s3-creds").to_dict()["spec"]["trainer"]
    from_secret = {e["name"] for e in trainer["env"] if "valueFrom" in e}
    assert from_secret == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}  # here: moto_bucket sets them
    env = {**{e["name"]: e["value"] for e in trainer["env"] if e["name"] not in from_secret},
           "MLPLAT_OUTPUT": str(tmp_path / "pvc"), "MLPLAT_WORK": str(tmp_path / "node"),  # the PVC and the node's scratch
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           # what the torch-distributed runtime sets on a node; two ranks on this one
           "PET_NNODES": "1", "PET_NPROC_PER_NODE": "2", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1",
           "PET_MASTER_PORT": str(free_port())}
    with moto_bucket("models") as s3:
        done = subprocess.run(trainer["command"], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        latest = ModelStore(store).latest()
        assert latest is not None and latest["version"].startswith("tiny-trainjob-train-")
        uploaded = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models", Prefix="tiny-trainjob/models/")["Contents"])

    model, published = tmp_path / "pvc" / "model", pipeline.model_dir
    files = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file())
    assert uploaded == [f"tiny-trainjob/models/{latest['version']}/{name}" for name in files]  # node 0 published it
    assert (model / "schema.json").read_text() == (published / "schema.json").read_text()
    manifest, expected = (json.loads((d / "model.json").read_text()) for d in (model, published))
    assert manifest["trainer"] == expected["trainer"]  # same plugin, same config, tuned params included
    assert {k: manifest["trainer"]["params"][k] for k in best} == best and best["width"] != SPEC["steps"]["train"]["params"]["width"]
    rows, pipeline_rows = Splits.load(tmp_path / "node" / "augment").train, Splits.load(pipeline.run.dir / "steps" / "augment").train
    assert len(rows) == len(pipeline_rows) and np.array_equal(rows.labels, pipeline_rows.labels)
    assert np.array_equal(rows.features.to_numpy(), pipeline_rows.features.to_numpy())  # noisy rows dropped, SMOTE rows added
    assert int(rows.synthetic.sum()) > 0 and len(rows) != len(Splits.load(tmp_path / "node" / "data").train)

    metrics = json.loads((tmp_path / "pvc" / "train" / "metrics.json").read_text())
    assert metrics["ddp_processes"] == 2  # the trainer really ran as two DDP ranks
    rank1 = tmp_path / "pvc" / "train" / ".rank1"
    assert rank1.is_dir() and not (rank1 / "model.json").exists()  # only rank 0 writes the model
