"""`TorchTrainer`: what the MLP and CNN trainers share around the loop.

fit = (launch DDP workers, or train here) -> measure compute -> write the report.
Training here = seed -> warm start -> optional K-fold CV band -> final model trained on
the training split, early-stopped on the validation split, checkpointed for resume
(`ensemble: out_of_fold`: the served network averages the fold networks' logits and the final one's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from mlplat.contracts import StepContext
from mlplat.contracts.trainer import ArrayData, ImageSet, TrainedModel, TrainingData
from mlplat.data import DatasetInfo
from mlplat.errors import SpecError
from mlplat.manifest import Decision
from torch import nn

from mlplat_plugins.torch_trainers import TrainingConfig, cv, engine, networks, objectives, warmstart
from mlplat_plugins.torch_trainers.compute import ComputeMeter


@dataclass
class Outcome:
    network: nn.Module
    history: list[dict[str, float]]
    metrics: dict[str, float]
    cv: dict[str, Any] | None
    extras: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = None


def _subset(data: ArrayData | ImageSet, index: np.ndarray) -> ArrayData | ImageSet:
    if isinstance(data, ImageSet):
        return replace(data, locations=[data.locations[i] for i in index], y=data.y[index],
                       weight=None if data.weight is None else data.weight[index],
                       synthetic=None if data.synthetic is None else data.synthetic[index])
    return ArrayData(data.X[index], data.y[index], None if data.weight is None else data.weight[index],
                     None if data.synthetic is None else data.synthetic[index])


def network_outputs(info: DatasetInfo) -> int:
    """The network's output width (architecture key `n_classes`): one logit per class, or 1 value for a regression."""
    return 1 if info.regression else info.n_classes


def cv_folds(train: ArrayData | ImageSet, k: int, seed: int, regression: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit positions, held-out positions) per fold: stratified over the real rows only (a regression's
    folds are plain shuffled K-fold). Synthetic rows
    (oversampled, generated) fit in every fold and are never held out: scored as held out, they would
    inflate the CV band that monitoring takes as the expected generalization."""
    synthetic = np.zeros(len(train.y), bool) if train.synthetic is None else np.asarray(train.synthetic, bool)
    real, generated = np.flatnonzero(~synthetic), np.flatnonzero(synthetic)
    folds = cv.kfold(len(real), k, seed) if regression else cv.stratified_folds(train.y[real], k, seed)
    return [(np.concatenate([real[fit], generated]), real[held]) for fit, held in folds]


class TorchTrainer:
    config_class: ClassVar[type[TrainingConfig]] = TrainingConfig

    def __init__(self, config: TrainingConfig) -> None:
        self.config = config
        self._source_dirs: dict[Path | None, Path] = {}  # warm-start source model by runs root

    # --- per-network parts -------------------------------------------------------------
    def architecture(self, info: DatasetInfo) -> dict[str, Any]:
        raise NotImplementedError

    def architecture_of(self, data: TrainingData) -> dict[str, Any]:
        """The architecture for this data (a trainer that needs more than `DatasetInfo` overrides it)."""
        return self.architecture(data.info)

    def build_network(self, architecture: Mapping[str, Any]) -> nn.Module:
        return networks.build_network(architecture)

    def prepare_network(self, network: nn.Module, context: StepContext) -> dict[str, Any]:
        """Initialise a freshly built network before training (e.g. pretrained weights); what to report."""
        return {}

    def schedule(self, network: nn.Module) -> engine.BackboneSchedule | None:
        """Backbone freezing and learning rates for `network` (None: one group, nothing scheduled)."""
        return None

    # --- the contract -------------------------------------------------------------------
    def fit(self, data: TrainingData, context: StepContext) -> TrainedModel:
        architecture = self.architecture_of(data)
        augmentation = data.augmentation
        if augmentation is not None and augmentation.sample is not None and isinstance(data.train, ImageSet):
            # the per-image part runs in the training split's DataLoader workers (ImageSet.transform)
            data = replace(data, train=replace(data.train, transform=augmentation.sample))
        processes = self.config.ddp_processes
        external = engine.Dist.from_env()  # already a rank under an outside torchrun (a Trainer v2 TrainJob)
        device = engine.resolve_device(self.config.device, external)
        meter = ComputeMeter(device, processes if external.world == 1 else 1)
        if processes > 1 and isinstance(data.train, ImageSet):
            raise SpecError([("ddp_processes", "DDP does not take image-file datasets yet; use ddp_processes: 1")])
        if processes > 1 and "LOCAL_RANK" not in os.environ:
            if device.type == "cuda" and processes > torch.cuda.device_count():
                raise SpecError([("ddp_processes", f"{processes} processes need {processes} GPUs; "
                                 f"this node has {torch.cuda.device_count()}")])
            from mlplat_plugins.torch_trainers.ddp import launch

            outcome = launch(self, architecture, data, context)
        else:
            outcome = self.train_here(architecture, data, context, external)
        outcome.extras["compute"] = meter.stop(outcome.extras.pop("peak_device_memory_mb", None))
        if context.reports:  # tuner trials turn human reports off
            from mlplat_plugins.torch_trainers.report import write_training_report

            write_training_report(context.work_dir, f"Training: {data.info.name} ({architecture['type']})",
                                  outcome.metrics, outcome.history, outcome.cv, outcome.extras)
        if isinstance(outcome.network, networks.AveragedLogits):
            architecture = {**architecture, "ensemble": len(outcome.network.members)}
        return TrainedModel(outcome.network, architecture, outcome.history, outcome.metrics, outcome.cv, outcome.extras,
                            outcome.decision)

    def inherited_preprocessing(self, context: StepContext) -> dict[str, Any] | None:
        """A warm start's source-model preprocessing, which the runner reuses (mlplat.steps.inherited_preprocessing)."""
        if not self.config.init_from:
            return None
        return warmstart.source_preprocessing(self._source_model_dir(context), context.info)

    def _source_model_dir(self, context: StepContext) -> Path:
        """The warm start's source model, resolved once: `latest` must name the same run for the
        preprocessing the runner reuses and the weights the fit loads."""
        assert self.config.init_from
        if context.runs_root not in self._source_dirs:
            self._source_dirs[context.runs_root] = warmstart.source_model_dir(self.config.init_from, context.runs_root)
        return self._source_dirs[context.runs_root]

    def train_here(self, architecture: dict[str, Any], data: TrainingData, context: StepContext, dist: engine.Dist) -> Outcome:
        """Train in this process (one DDP rank when `dist.world > 1`)."""
        config, info = self.config, data.info
        device = engine.resolve_device(config.device, dist)
        objective = objectives.for_data(data, config)
        with engine.determinism(config.deterministic):
            warm_state, warm_info = self._warm_start(architecture, info, context)
            prepared: dict[str, Any] = {}

            def make_network(seed: int) -> tuple[nn.Module, list[nn.Module]]:
                engine.seed_everything(seed)
                network = self.build_network(architecture)
                if warm_state is not None:
                    network.load_state_dict(warm_state)
                else:
                    prepared.update(self.prepare_network(network, context))
                frozen = warmstart.freeze(network, config.freeze) if config.freeze else []
                if config.freeze and not frozen:
                    context.log("freeze: the named modules have no parameters")
                return network, warmstart.frozen_modules(network, config.freeze)

            band, decision = None, None
            fold_networks: list[nn.Module] = []
            from_folds = config.decision == "out_of_fold" or config.ensemble == "out_of_fold"
            folds = config.cv_folds or (self._decision_folds(data.train) if from_folds else 0)
            if folds:
                band, out_of_fold, fold_networks = self._cross_validate(make_network, data, context, device, dist, objective, folds)
                if config.decision == "out_of_fold" and not objective.regression:
                    decision = self._choose_decision(out_of_fold, data.train.y, context)
            network, frozen = make_network(context.seed)
            checkpointer = None
            if config.checkpoint_every:
                fp = engine.fingerprint(config, architecture, data.train, data.validation, context.seed)
                checkpointer = engine.Checkpointer(context.work_dir / "checkpoints", fp)
            result = engine.train_loop(network, data.train, data.validation, config, context, device=device,
                                       n_classes=info.n_classes, dist=dist, checkpoints=checkpointer, frozen=frozen,
                                       objective=objective, augmentation=data.augmentation,
                                       schedule=self.schedule(network))
            if config.ensemble == "out_of_fold" and fold_networks and dist.world == 1:  # DDP ranks return one network
                network = networks.AveragedLogits([*fold_networks, network])
                context.log(f"ensemble: the logits of {len(network.members)} networks averaged ({len(fold_networks)} folds + final)")
            metrics, val_pred = self._final_metrics(network, data, device, objective)
        extras: dict[str, Any] = {
            "device": str(device), "amp": config.amp, "compiled": config.compile, "ddp_processes": dist.world,
            "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, "resumed_from_epoch": result.resumed_from,
        }
        if not info.regression:
            k = info.n_classes
            confusion = np.bincount(data.validation.y * k + val_pred, minlength=k * k).reshape(k, k)
            extras["confusion_matrix"] = {"labels": list(info.classes),
                                          "matrix": confusion.tolist()}  # rows: true class, columns: predicted
        if warm_info:
            extras["warm_start"] = warm_info
        extras.update(prepared)
        if device.type == "cuda":
            extras["peak_device_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        metrics.update(best_epoch=float(result.best_epoch), epochs_run=float(len(result.history)))
        network.cpu().eval()
        return Outcome(network, result.history, metrics, band, extras, decision)

    # --- pieces -------------------------------------------------------------------------
    def _warm_start(self, architecture: dict[str, Any], info: DatasetInfo,
                    context: StepContext) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
        if not self.config.init_from:
            return None, {}
        model_dir = self._source_model_dir(context)
        probe = self.build_network(architecture)
        state = warmstart.load_compatible_state(model_dir, info, architecture, probe)
        frozen = warmstart.freeze(probe, self.config.freeze) if self.config.freeze else []
        trainable = sum(p.numel() for p in probe.parameters() if p.requires_grad)
        context.log(f"warm start from {model_dir}; frozen: {self.config.freeze or 'nothing'}")
        return state, {"init_from": self.config.init_from, "model_dir": str(model_dir), "frozen": list(self.config.freeze),
                       "frozen_parameters": frozen, "trainable_parameter_count": trainable}

    @staticmethod
    def _decision_folds(train: ArrayData | ImageSet) -> int:
        """Folds for `decision: out_of_fold` without `cv_folds`: 5, fewer when the smallest class has fewer real rows."""
        real = train.y if train.synthetic is None else train.y[~np.asarray(train.synthetic, bool)]
        counts = np.bincount(real)
        return max(2, min(5, int(counts[counts > 0].min())))

    @staticmethod
    def _choose_decision(out_of_fold: np.ndarray, y: np.ndarray, context: StepContext) -> Decision:
        from mlplat.decision import choose_offsets

        held = ~np.isnan(out_of_fold[:, 0])  # real rows (synthetic ones are never held out)
        decision = choose_offsets(out_of_fold[held], y[held], "out_of_fold")
        context.log(f"decision: {decision.kind} {decision.offsets} (out-of-fold balanced accuracy "
                    f"{decision.argmax_balanced_accuracy:.4f} -> {decision.balanced_accuracy:.4f} on {decision.rows} rows)")
        return decision

    def _cross_validate(self, make_network: Any, data: TrainingData, context: StepContext, device: torch.device,
                        dist: engine.Dist, objective: objectives.Objective,
                        k: int) -> tuple[dict[str, Any], np.ndarray, list[nn.Module]]:
        """The CV band, each training row's held-out fold probabilities (NaN for synthetic rows; a regression: outputs),
        and the trained fold networks."""
        folds = cv_folds(data.train, k, context.seed, objective.regression)
        rows, fold_networks = [], []
        out_of_fold = np.full((len(data.train.y), network_outputs(data.info)), np.nan, np.float32)
        for k, (train_idx, held_idx) in enumerate(folds):
            network, frozen = make_network(context.seed + 1000 + k)
            fold_train, held = _subset(data.train, train_idx), _subset(data.train, held_idx)
            # early stopping watches the step's validation split; the held-out fold stays unseen
            result = engine.train_loop(network, fold_train, data.validation, self.config, context, device=device,
                                       n_classes=data.info.n_classes, dist=dist, frozen=frozen, report_epochs=False,
                                       objective=objective)
            if objective.regression:
                scores = {**cv.score_regression_fold(network, fold_train, "train", self.config, device, objective),
                          **cv.score_regression_fold(network, held, "val", self.config, device, objective)}
            else:
                scores = {**cv.score_fold(network, fold_train, "train", self.config, device, data.info.n_classes),
                          **cv.score_fold(network, held, "val", self.config, device, data.info.n_classes)}
                out_of_fold[held_idx] = torch.softmax(engine.evaluate(network, held, self.config, device)[0].float(), 1).cpu().numpy()
            fold_networks.append(network)
            rows.append({"fold": k, **scores, "best_epoch": result.best_epoch, "n_train": len(train_idx), "n_val": len(held_idx)})
            shown = ("val_rmse", "val_r2", "train_rmse") if objective.regression else ("val_accuracy", "val_f1", "train_accuracy")
            context.log(f"cv fold {k + 1}/{len(folds)}: " + " ".join(f"{m}={scores[m]:.4f}" for m in shown))
        return cv.band(rows, cv.REGRESSION_METRICS if objective.regression else cv.METRICS), out_of_fold, fold_networks

    def _final_metrics(self, network: nn.Module, data: TrainingData, device: torch.device,
                       objective: objectives.Objective) -> tuple[dict[str, float], np.ndarray]:
        if objective.regression:  # gap_m = train - val, as for a classification: rmse/mae gaps < 0 = overfit
            train = engine.evaluate_scores(network, data.train, self.config, device, objective)[1]
            val_out, val = engine.evaluate_scores(network, data.validation, self.config, device, objective)
            metrics = {**{f"train_{k}": v for k, v in train.items()}, **{f"val_{k}": v for k, v in val.items()},
                       **{f"gap_{k}": train[k] - val[k] for k in val}}
            return metrics, val_out[:, 0].cpu().numpy()
        _, train_loss, train_acc = engine.evaluate(network, data.train, self.config, device)
        logits, val_loss, val_acc = engine.evaluate(network, data.validation, self.config, device)
        metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
                   "gap_accuracy": train_acc - val_acc, "gap_loss": train_loss - val_loss}
        return metrics, logits.argmax(1).cpu().numpy()
