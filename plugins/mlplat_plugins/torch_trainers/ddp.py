"""DDP inside one step: the trainer launches `torchrun --standalone` workers on this node.

The parent writes the job (trainer class, config, dataset info) as JSON and the arrays as
safetensors under `<work_dir>/ddp/`. Rank 0 streams epoch metrics to `epochs.jsonl`, which
the parent relays to `context.on_epoch` (so progress bars and pruning work), and writes
the trained weights and results back. Run as `python -m mlplat_plugins.torch_trainers.ddp JOB_DIR`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, TrainingData
from mlplat.data import DatasetInfo
from mlplat.errors import SpecError

if TYPE_CHECKING:
    from mlplat_plugins.torch_trainers.trainer import Outcome, TorchTrainer

JOB, DATA, EPOCHS = "job.json", "data.safetensors", "epochs.jsonl"
RESULT, WEIGHTS, LOG = "result.json", "result.safetensors", "torchrun.log"


def launch(trainer: TorchTrainer, architecture: dict[str, Any], data: TrainingData, context: StepContext) -> Outcome:
    from mlplat.manifest import Decision
    from safetensors.numpy import save_file

    from mlplat_plugins.torch_trainers.trainer import Outcome

    job_dir = context.work_dir / "ddp"
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in (EPOCHS, RESULT, WEIGHTS):
        (job_dir / stale).unlink(missing_ok=True)
    if not isinstance(data.train, ArrayData) or not isinstance(data.validation, ArrayData):
        raise SpecError([("ddp_processes", "multi-process training takes tabular or pixel-column data, not image files")])
    arrays = {"train_X": data.train.X, "train_y": data.train.y, "val_X": data.validation.X, "val_y": data.validation.y}
    if data.train.weight is not None:
        arrays["train_w"] = data.train.weight
    if data.train.synthetic is not None:
        arrays["train_s"] = data.train.synthetic  # CV holds out real rows only
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(job_dir / DATA))
    cls = type(trainer)
    runs_root = context.runs_root
    (job_dir / JOB).write_text(json.dumps({
        "trainer": f"{cls.__module__}:{cls.__qualname__}", "config": trainer.config.model_dump(mode="json"),
        "info": asdict(data.info), "step": context.step, "work_dir": str(context.work_dir), "seed": context.seed,
        "resume": context.resume, "runs_root": str(runs_root) if runs_root else None,
    }))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--monitor-interval=0.2",
               f"--nproc_per_node={trainer.config.ddp_processes}",
               "-m", "mlplat_plugins.torch_trainers.ddp", str(job_dir)]
    context.log("launching: " + " ".join(command))
    with open(job_dir / LOG, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _relay_epochs(process, job_dir / EPOCHS, context)
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0:
        tail = (job_dir / LOG).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"DDP workers failed (exit {process.returncode}); log {job_dir / LOG}:\n{tail}")
    from safetensors.torch import load_file

    result = json.loads((job_dir / RESULT).read_text())
    network = trainer.build_network(architecture)
    network.load_state_dict(load_file(str(job_dir / WEIGHTS)))
    network.eval()
    decision = Decision.model_validate(result["decision"]) if result.get("decision") else None
    return Outcome(network, result["history"], result["metrics"], result["cv"], result["extras"], decision)


def _relay_epochs(process: subprocess.Popen[bytes], path: Path, context: StepContext) -> None:
    seen = 0
    while True:
        done = process.poll() is not None
        if path.is_file():
            complete = path.read_text().split("\n")[:-1]  # a line without its newline is still being written
            for line in complete[seen:]:
                row = json.loads(line)
                context.on_epoch(int(row["epoch"]), row)
            seen = len(complete)
        if done:
            return
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # our own session: torchrun and its workers only
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker(job_dir: Path) -> None:
    import torch
    import torch.distributed as dist
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    from mlplat_plugins.torch_trainers.engine import Dist

    job = json.loads((job_dir / JOB).read_text())
    module, _, name = job["trainer"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    trainer = cls(cls.config_class.model_validate(job["config"]))
    cuda = trainer.config.device != "cpu" and torch.cuda.is_available()
    backend = trainer.config.ddp_backend if trainer.config.ddp_backend != "auto" else ("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    try:
        rank = dist.get_rank()
        arrays = load_file(str(job_dir / DATA))
        info = DatasetInfo(**job["info"])
        data = TrainingData(ArrayData(arrays["train_X"], arrays["train_y"], arrays.get("train_w"), arrays.get("train_s")),
                            ArrayData(arrays["val_X"], arrays["val_y"]), info)
        epochs_file = job_dir / EPOCHS

        def on_epoch(epoch: int, metrics: Any) -> None:
            with open(epochs_file, "a") as handle:
                handle.write(json.dumps(dict(metrics)) + "\n")

        context = StepContext(step=job["step"], work_dir=Path(job["work_dir"]), info=info, seed=job["seed"],
                              on_epoch=on_epoch, log=lambda m: print(f"[rank {rank}] {m}", flush=True), resume=job["resume"],
                              runs_root=Path(job["runs_root"]) if job.get("runs_root") else None)
        architecture = trainer.architecture(info)
        outcome = trainer.train_here(architecture, data, context, Dist(rank, dist.get_world_size(), local_rank))
        if rank == 0:
            save_file({k: v.contiguous() for k, v in outcome.network.state_dict().items()}, str(job_dir / WEIGHTS))
            tmp = job_dir / f".{RESULT}.tmp"
            tmp.write_text(json.dumps({"history": outcome.history, "metrics": outcome.metrics, "cv": outcome.cv,
                                       "extras": outcome.extras,
                                       "decision": outcome.decision.model_dump() if outcome.decision else None}))
            tmp.replace(job_dir / RESULT)
        dist.barrier()
        print(f"[rank {rank}] done at {time.time():.2f}", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
