"""The training loop shared by the torch trainers.

Tabular data is moved to the device once and sliced into big batches there: a per-row
DataLoader would dominate the step time for small networks. The hot loop does no host
syncs; running train metrics are accumulated on the device and read once per epoch.

Image files (`ImageSet`) are the exception: they are decoded lazily by a `DataLoader` with
`workers` processes (mlplat.images.loader: pinned memory on CUDA) and batches [B, C, H, W] are
moved to the device as they come; nothing holds the decoded dataset. The training split's
per-image augmentation (`ImageSet.transform`) runs in the workers, its per-batch one
(`ImageAugmentation.batch`: mixup/cutmix, soft targets) on the device.

Under DDP every rank holds the full (small) arrays and draws the same permutation; each
takes a strided share of every batch and scales its loss by the *global* batch size, so
the averaged gradient equals the single-process one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.augmenter import ImageAugmentation
from mlplat.contracts.trainer import ArrayData, ImageSet
from mlplat.errors import SpecError
from torch import nn
from torch.nn import functional as F

from mlplat_plugins.torch_trainers import TrainingConfig
from mlplat_plugins.torch_trainers.objectives import Classification, Objective

CHECKPOINT_WEIGHTS, CHECKPOINT_STATE, LAST = "weights.safetensors", "train_state.pt", "LAST"


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        if "WORLD_SIZE" not in os.environ or not torch.distributed.is_initialized():
            return cls()
        return cls(torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(name: str, dist: Dist = Dist()) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError([("device", f"{name!r} requested but CUDA is not available")])
        if dist.world > 1:
            device = torch.device("cuda", dist.local_rank)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(enabled: bool) -> Iterator[None]:
    """`deterministic: true`: deterministic kernels for the duration of the fit only."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1], previous[2]


def row_weights(data: ArrayData | ImageSet, config: TrainingConfig, n_classes: int) -> np.ndarray | None:
    """Per-row loss weights: the data's own weights times the class weights; None when all equal."""
    weight = None if data.weight is None else np.asarray(data.weight, np.float32)
    if config.class_weight is not None:
        if config.class_weight == "balanced":
            counts = np.bincount(data.y, minlength=n_classes).astype(np.float64)
            per_class = np.where(counts > 0, len(data.y) / (n_classes * np.maximum(counts, 1)), 0.0)
        else:
            if len(config.class_weight) != n_classes:
                raise SpecError([("class_weight", f"expected {n_classes} weights (one per class), got {len(config.class_weight)}")])
            per_class = np.asarray(config.class_weight, np.float64)
        cw = per_class[data.y].astype(np.float32)
        weight = cw if weight is None else weight * cw
    return weight


def logit_offset(labels: np.ndarray, config: TrainingConfig, n_classes: int) -> np.ndarray | None:
    """`logit_adjustment`: tau * log(class prior of the training rows), added to the logits wherever the loop
    scores them (loss, train and validation metrics, early stopping), never to the network. The adjusted
    logits model the imbalanced training distribution, which the validation split shares; the network
    itself then outputs the balanced logits (Menon et al. 2021), and is what is saved and served."""
    if not config.logit_adjustment:
        return None
    counts = np.maximum(np.bincount(labels, minlength=n_classes), 1)  # a class absent from the rows: a finite offset
    return (config.logit_adjustment * np.log(counts / counts.sum())).astype(np.float32)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def predict_logits(network: nn.Module, X: torch.Tensor, batch: int, device: torch.device, amp: str) -> torch.Tensor:
    network.eval()
    with autocast(device, amp):
        return torch.cat([network(X[s : s + batch]).float() for s in range(0, len(X), batch)]) if len(X) else torch.zeros(0)


IMAGE_EVAL_BATCH = 512  # decoded images per evaluation batch (eval_batch_size sizes tabular batches of rows)


def image_loader(data: ImageSet, config: TrainingConfig, *, train: bool = False, seed: int = 0) -> Any:
    """The DataLoader over an image split: shuffled with the split's transform (augmentation) when it trains."""
    from mlplat.images import loader

    if train:
        dataset = _Indexed(data.dataset(data.transform))
        return loader(dataset, batch_size=config.batch_size, shuffle=True, workers=config.workers, seed=seed)
    return loader(data.dataset(), batch_size=min(config.eval_batch_size, IMAGE_EVAL_BATCH), workers=config.workers)


class _Indexed(torch.utils.data.Dataset[Any]):
    """Items with their position, so a batch finds its rows' loss weights."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.dataset[index], index)


def use_channels_last(config: TrainingConfig, device: torch.device) -> bool:
    """`channels_last: auto`: on CUDA only, where convolutions run faster in NHWC (tensor cores)."""
    return config.channels_last == "on" or (config.channels_last == "auto" and device.type == "cuda")


def to_input(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """An image batch on the device, in the network's memory format."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_images(network: nn.Module, batches: Any, device: torch.device, amp: str, channels_last: bool = False) -> torch.Tensor:
    """Eval-mode outputs of every batch of an image DataLoader, in order."""
    network.eval()
    out = []
    with autocast(device, amp):
        for images, _ in batches:
            out.append(network(to_input(images, device, channels_last)).float())
    return torch.cat(out) if out else torch.zeros(0, device=device)


def _outputs(network: nn.Module, data: ArrayData | ImageSet, config: TrainingConfig, device: torch.device) -> torch.Tensor:
    if isinstance(data, ImageSet):
        return predict_images(network, image_loader(data, config), device, config.amp, use_channels_last(config, device))
    X = torch.as_tensor(data.X, dtype=torch.float32).to(device)
    return predict_logits(network, X, config.eval_batch_size, device, config.amp)


def loss_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Unweighted, unsmoothed cross-entropy and accuracy: comparable across configs."""
    if len(y) == 0:
        return float("nan"), float("nan")
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def evaluate(network: nn.Module, data: ArrayData | ImageSet, config: TrainingConfig,
             device: torch.device) -> tuple[torch.Tensor, float, float]:
    """Eval-mode logits of `data`, with their loss and accuracy (`loss_and_accuracy`)."""
    logits = _outputs(network, data, config, device)
    return (logits, *loss_and_accuracy(logits, torch.as_tensor(data.y, dtype=torch.long).to(device)))


def evaluate_scores(network: nn.Module, data: ArrayData | ImageSet, config: TrainingConfig, device: torch.device,
                    objective: Objective) -> tuple[torch.Tensor, dict[str, float]]:
    """Eval-mode outputs of `data` and the objective's scores of them (`Objective.scores`)."""
    out = _outputs(network, data, config, device)
    return out, objective.scores(out, torch.as_tensor(data.y, dtype=objective.target_dtype).to(device))


@dataclass
class LoopState:
    epoch: int = 0  # next epoch to run
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -float("inf")
    best_epoch: int = -1
    stale: int = 0
    stopped: bool = False
    best_weights: dict[str, torch.Tensor] | None = None


@dataclass
class LoopResult:
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    resumed_from: int | None


def fingerprint(config: TrainingConfig, architecture: dict[str, Any], train: ArrayData | ImageSet, val: ArrayData | ImageSet,
                seed: int) -> str:
    """What a checkpoint is only valid for: same config, network, data shapes and seed."""
    def shape_and_sample(data: ArrayData | ImageSet) -> Any:
        if isinstance(data, ImageSet):
            return [len(data.locations), data.locations[:64], data.preprocessing.model_dump()]
        return [list(data.X.shape), float(np.asarray(data.X[:64], np.float64).sum())]

    blob = json.dumps([config.model_dump(mode="json"), architecture, shape_and_sample(train), shape_and_sample(val), seed],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpointer:
    """`epoch-NNNN/` directories (weights as safetensors, the rest via torch.save) and a LAST pointer.

    A new checkpoint is complete on disk before LAST points to it, so a crash while saving
    leaves the previous one usable.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory, self.fingerprint = directory, fingerprint

    def save(self, network: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
             generator: torch.Generator, state: LoopState) -> None:
        from safetensors.torch import save_file

        target = self.directory / f"epoch-{state.epoch:04d}"
        target.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        if state.best_weights is not None:
            tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in state.best_weights.items()})
        save_file(tensors, str(target / CHECKPOINT_WEIGHTS))
        torch.save({
            "fingerprint": self.fingerprint, "epoch": state.epoch, "history": state.history,
            "best_score": state.best_score, "best_epoch": state.best_epoch, "stale": state.stale, "stopped": state.stopped,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
            "scaler": scaler.state_dict(), "generator": generator.get_state(), "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }, target / CHECKPOINT_STATE)
        pointer = self.directory / f".{LAST}.tmp"
        pointer.write_text(target.name)
        pointer.replace(self.directory / LAST)
        for old in self.directory.glob("epoch-*"):
            if old.name != target.name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, network: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
             generator: torch.Generator, device: torch.device, log: Callable[[str], None]) -> LoopState | None:
        from safetensors.torch import load_file

        pointer = self.directory / LAST
        if not pointer.is_file():
            log("resume: no checkpoint found, training from the start")
            return None
        target = self.directory / pointer.read_text().strip()
        saved = torch.load(target / CHECKPOINT_STATE, map_location="cpu", weights_only=True)
        if saved["fingerprint"] != self.fingerprint:
            log(f"resume: checkpoint {target.name} was made with another config or data; training from the start")
            return None
        tensors = load_file(str(target / CHECKPOINT_WEIGHTS), device=str(device))
        network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["cpu_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        log(f"resume: continuing after epoch {saved['epoch']} from {target}")
        return LoopState(saved["epoch"] + 1, saved["history"], saved["best_score"], saved["best_epoch"], saved["stale"],
                         saved["stopped"], best)


def _l1_params(network: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in network.named_parameters() if p.requires_grad and p.dim() > 1]


def _scheduler(config: TrainingConfig, optimizer: torch.optim.Optimizer) -> Any:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)
    if config.scheduler == "plateau":
        mode: Literal["min", "max"] = "min" if config.early_stopping_metric == "val_loss" else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=config.plateau_factor,
                                                          patience=config.plateau_patience, min_lr=config.min_lr)
    return None


@dataclass
class BackboneSchedule:
    """Transfer learning: the backbone's parameters train at `lr * lr_scale` (discriminative learning
    rates) and stay frozen, their batch-norm statistics fixed, for the first `frozen_epochs` epochs."""

    backbone: nn.Module
    lr_scale: float = 1.0
    frozen_epochs: int = 0


def _optimizer(params: list[nn.Parameter], config: TrainingConfig,
               schedule: BackboneSchedule | None) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """AdamW (the head's group first: its lr is the one reported), and the backbone parameters the schedule toggles."""
    if schedule is None:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay), []
    in_backbone = {id(p) for p in schedule.backbone.parameters()}
    backbone = [p for p in params if id(p) in in_backbone]
    groups = [{"params": [p for p in params if id(p) not in in_backbone], "lr": config.lr},
              {"params": backbone, "lr": config.lr * schedule.lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay), backbone


def train_loop(
    network: nn.Module, train: ArrayData | ImageSet, val: ArrayData | ImageSet, config: TrainingConfig, context: StepContext, *,
    device: torch.device, n_classes: int, dist: Dist = Dist(), checkpoints: Checkpointer | None = None,
    frozen: list[nn.Module] | None = None, report_epochs: bool = True, objective: Objective | None = None,
    augmentation: ImageAugmentation | None = None, schedule: BackboneSchedule | None = None,
) -> LoopResult:
    """Train `network` in place (on `device`); on return it holds the best weights when restore is on.
    `objective` (default: classification with the config's label smoothing) sets the loss and the val scores.
    `augmentation.batch` (image files only) mixes training batches; `schedule` freezes and scales the backbone."""
    objective = objective or Classification(config.label_smoothing)
    channels_last = use_channels_last(config, device) and isinstance(train, ImageSet)
    network.to(device)
    if channels_last:
        network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack the keyword
    mix = augmentation.batch if augmentation is not None else None
    images = isinstance(train, ImageSet)
    if images and dist.world > 1:
        raise SpecError([("ddp_processes", "DDP does not take image-file datasets yet; use ddp_processes: 1")])
    yt = torch.as_tensor(train.y, dtype=objective.target_dtype).to(device)
    weights = row_weights(train, config, n_classes) if not objective.regression else train.weight
    wt = None if weights is None else torch.as_tensor(weights, dtype=torch.float32).to(device)
    offset = None if objective.regression else logit_offset(train.y, config, n_classes)
    ot = None if offset is None else torch.as_tensor(offset).to(device)
    yv = torch.as_tensor(val.y, dtype=objective.target_dtype).to(device)
    if isinstance(train, ImageSet) and isinstance(val, ImageSet):
        train_batches, val_batches = image_loader(train, config, train=True, seed=context.seed), image_loader(val, config)
    elif isinstance(train, ArrayData) and isinstance(val, ArrayData):
        Xt = torch.as_tensor(train.X, dtype=torch.float32).to(device)
        Xv = torch.as_tensor(val.X, dtype=torch.float32).to(device)
    else:
        raise TypeError("train and validation must both be ArrayData or both ImageSet")

    # torch.compile of a Module returns an OptimizedModule (a Module); its stubs say only "a callable"
    module = cast(nn.Module, torch.compile(network)) if config.compile else network
    forward = module
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise SpecError([("freeze", "every parameter is frozen; nothing left to train")])
    optimizer, scheduled = _optimizer(params, config, schedule)
    if schedule is not None and schedule.frozen_epochs and len(scheduled) == len(params):
        raise SpecError([("freeze_backbone_epochs", "the network has no trainable parameters outside its backbone")])
    scheduler = _scheduler(config, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    generator = torch.Generator().manual_seed(context.seed)
    l1_params = _l1_params(network) if config.l1 > 0 else []
    state = LoopState()
    resumed_from = None
    if context.resume and checkpoints is not None:
        restored = checkpoints.load(network, optimizer, scheduler, scaler, generator, device, context.log)
        if restored is not None:
            state, resumed_from = restored, restored.epoch - 1

    n, batch, world = len(yt), config.batch_size, dist.world

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, int]]:
        """(inputs, targets, their loss weights, the global batch's weight sum, global batch size) of one epoch."""
        if images:
            # the shuffle is drawn from the loop's generator (checkpointed), so a resumed run sees the same epochs
            train_batches.generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            for xb, yb, positions in train_batches:
                wb = None if wt is None else wt[positions.to(device)]
                xb, yb = to_input(xb, device, channels_last), yb.to(device=device, dtype=objective.target_dtype, non_blocking=True)
                if mix is not None:
                    xb, yb = mix(xb, yb)  # soft targets [B, n_classes]: the cross-entropy takes them as they are
                yield xb, yb, wb, None if wb is None else wb.sum(), len(yb)
            return
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            local = idx[dist.rank :: world] if world > 1 else idx
            yield Xt[local], yt[local], None if wt is None else wt[local], None if wt is None else wt[idx].sum(), len(idx)

    # the running train loss is the plain loss (no smoothing, weights or L1), comparable with val_loss
    plain_loss_differs = (not objective.regression and config.label_smoothing > 0) or wt is not None or bool(l1_params) or world > 1
    while not state.stopped and state.epoch < config.epochs:
        epoch, started, cpu_started = state.epoch, time.perf_counter(), time.process_time()
        network.train()
        for m in frozen or []:
            m.eval()  # frozen layers keep their batch-norm statistics
        if schedule is not None and scheduled:
            thawed = epoch >= schedule.frozen_epochs
            for p in scheduled:
                p.requires_grad_(thawed)
            if not thawed:
                schedule.backbone.eval()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for xb, yb, wb, weight_sum, count in batches():
            with autocast(device, config.amp):
                logits = forward(xb)
            if ot is not None:
                logits = logits.float() + ot
            if wb is None:
                if world == 1:
                    loss = objective.loss(logits.float(), yb)
                else:
                    loss = objective.loss(logits.float(), yb, reduction="sum") * (world / count)
            else:
                per_row = objective.loss(logits.float(), yb, reduction="none")
                assert weight_sum is not None
                loss = (per_row * wb).sum() * (world / weight_sum)
            if l1_params:
                loss = loss + config.l1 * sum(p.abs().sum() for p in l1_params)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if plain_loss_differs:
                loss_sum += objective.plain_loss_sum(logits.detach().float(), yb)
            else:
                loss_sum += loss.detach() * count
            if not objective.regression:
                correct += (logits.detach().argmax(1) == (yb.argmax(1) if yb.dim() > 1 else yb)).sum()
        if world > 1:
            totals = torch.stack([loss_sum, correct.to(loss_sum.dtype)])
            torch.distributed.all_reduce(totals)
            loss_sum, correct = totals[0], totals[1]
        val_logits = (predict_images(module, val_batches, device, config.amp, channels_last) if images
                      else predict_logits(module, Xv, config.eval_batch_size, device, config.amp))
        val_scores = objective.scores(val_logits if ot is None or not len(yv) else val_logits + ot, yv)
        row = {"epoch": epoch, "epochs": config.epochs, "train_loss": float(loss_sum) / n}
        if not objective.regression:
            row["train_accuracy"] = float(correct) / n
        row.update({f"val_{k}": v for k, v in val_scores.items()}, lr=optimizer.param_groups[0]["lr"])
        val_loss = row["val_loss"]

        def stamp() -> None:  # the epoch's time so far; the last stamp, after all per-epoch work, stands (called in this epoch only)
            row.update(seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu_started)  # noqa: B023

        state.history.append(row)
        score = -val_loss if config.early_stopping_metric == "val_loss" else row["val_accuracy"]
        if scheduler is not None:
            scheduler.step(row[config.early_stopping_metric]) if config.scheduler == "plateau" else scheduler.step()
        if score > state.best_score + config.min_delta or state.best_epoch < 0:
            state.best_score, state.best_epoch, state.stale = score, epoch, 0
            if config.restore_best_weights:
                state.best_weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            state.stale += 1
            state.stopped = bool(config.early_stopping_patience and state.stale >= config.early_stopping_patience)
        last = state.stopped or epoch + 1 >= config.epochs
        stamp()  # a checkpoint's history is complete (its last row's time leaves out the saving itself)
        if checkpoints is not None and dist.main and config.checkpoint_every and ((epoch + 1) % config.checkpoint_every == 0 or last):
            checkpoints.save(network, optimizer, scheduler, scaler, generator, state)
        state.epoch += 1
        if report_epochs and dist.main:
            context.on_epoch(epoch, row)
        stamp()
    if config.restore_best_weights and state.best_weights is not None:
        network.load_state_dict(state.best_weights)
    return LoopResult(state.history, state.best_epoch, state.stopped, resumed_from)
