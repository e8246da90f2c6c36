"""Run an Optuna study for the tune step: samplers, pruning, failed trials, parallel workers, resume.

The study lives in `<work_dir>/study.db` (SQLite), so a resumed run continues it: trials
that finished are kept, trials an interruption cut short are re-queued with the same params,
and the sampler seed folds in the trials already stored, so new trials draw new values.
Parallel trials are forked worker processes sharing that storage; each limits its own
torch/BLAS threads so `parallel x threads_per_trial` fits the machine.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from mlplat.contracts import StepContext
from mlplat.contracts.tuner import Objective, TuneResult
from mlplat.errors import MlplatError
from mlplat.search_space import CategoricalParam, FloatParam, IntParam, SearchSpace, decode_choice, encode_choice, parse_search_space
from optuna.trial import TrialState

from mlplat_plugins.optuna_tuners import BayesianConfig, GPConfig, GridConfig, OptunaTunerConfig, RandomConfig

STUDY_DB, STUDY_NAME = "study.db", "tune"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class OptunaTuner:
    """Shared study runner; subclasses only choose the sampler."""

    def __init__(self, config: OptunaTunerConfig) -> None:
        self.config = config

    def sampler(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def budget(self, space: SearchSpace) -> int:
        """Trials the whole search runs (across resumes)."""
        return self.config.n_trials

    def before_search(self, study: optuna.Study, space: SearchSpace, seed: int, n: int) -> None:
        """Called once per run, before the `n` trials still to run start."""

    def pruner(self) -> optuna.pruners.BasePruner:
        c = self.config
        if c.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=c.pruner_startup_trials, n_warmup_steps=c.pruner_warmup_epochs)
        if c.pruner == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, c.pruner_warmup_epochs),
                                                          reduction_factor=c.reduction_factor)
        if c.pruner == "hyperband":  # several successive-halving brackets; the epoch count is learnt from the trials
            return optuna.pruners.HyperbandPruner(min_resource=max(1, c.pruner_warmup_epochs), max_resource="auto",
                                                  reduction_factor=c.reduction_factor)
        return optuna.pruners.NopPruner()

    def tune(self, objective: Objective, search_space: Mapping[str, Any], context: StepContext,
             direction: Literal["maximize", "minimize"] = "maximize") -> TuneResult:
        space = parse_search_space(search_space)
        if not space.params:
            raise MlplatError("steps.tune.search_space is empty: declare at least one param to tune")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        db = context.work_dir / STUDY_DB
        if not context.resume:
            db.unlink(missing_ok=True)  # a fresh run never inherits another search
        seed = context.seed if self.config.seed is None else self.config.seed
        store = storage(db)
        study = optuna.create_study(study_name=STUDY_NAME, storage=store, direction=direction,
                                    pruner=self.pruner(), load_if_exists=True)
        if study.direction.name.lower() != direction:
            raise MlplatError(f"the stored study in {db} was made to {study.direction.name.lower()} its metric, this run "
                              f"would {direction} it (steps.tune.metric changed?): run without --resume to start over")
        run_seed = sampler_seed(seed, len(study.get_trials(deepcopy=False)))
        study.sampler = self.sampler(space, run_seed)
        requeued = requeue_interrupted(study, store)
        remaining = self.budget(space) - sum(1 for t in study.get_trials(deepcopy=False) if counts(t))
        context.log(f"tune: {remaining} trials to run ({requeued} re-queued after an interruption)")
        if remaining > 0:
            self.before_search(study, space, seed, remaining)
            self._run(study, store, db, objective, space, run_seed, remaining)
        study = optuna.load_study(study_name=STUDY_NAME, storage=store)  # sees the workers' trials too
        trials = trial_rows(study, space)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            errors = [r["error"] for r in trials if r.get("error")]
            raise MlplatError(f"tuning finished no trial: {len(trials)} ran"
                              + (f"; first error: {errors[0]}" if errors else " (all pruned)"))
        from mlplat_plugins.optuna_tuners.report import write_report

        write_report(study, trials, context.work_dir, context.step)
        best = study.best_trial
        return TuneResult(best_params=decode_params(space, best.params), best_value=float(study.best_value), trials=trials)

    def _run(self, study: optuna.Study, store: optuna.storages.RDBStorage, db: Path, objective: Objective,
             space: SearchSpace, seed: int, n: int) -> None:
        """Run `n` trials; `seed` is this run's sampler seed, and worker i's sampler gets one derived from it."""
        workers = min(self.config.parallel, n)
        torch = sys.modules.get("torch")
        if workers > 1 and torch is not None and torch.cuda.is_initialized():
            # a forked child cannot use CUDA once the parent has: run the trials here instead
            warnings.warn("CUDA is already initialized in this process; running tune trials one at a time", stacklevel=2)
            workers = 1
        if workers == 1:
            with limited_threads(self.config.threads_per_trial):
                optimize(study, objective, space, n, self.config.timeout_s)
            return
        quotas = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        # fork: the objective is a closure over in-memory data, and trials need no re-import
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=self._worker, args=(db, objective, space, sampler_seed(seed, 0, 1 + i), quota),
                             daemon=False) for i, quota in enumerate(quotas)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join()
        crashed = [p.exitcode for p in procs if p.exitcode != 0]
        if crashed:  # a worker killed mid-trial (OOM, signal) leaves its trial RUNNING: record it as failed
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                mark_failed(store, t, f"worker process exited with code {crashed[0]}")

    def _worker(self, db: Path, objective: Objective, space: SearchSpace, seed: int, n: int) -> None:
        limit_threads(self.config.threads_per_trial)
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage(db), sampler=self.sampler(space, seed),
                                  pruner=self.pruner())
        optimize(study, objective, space, n, self.config.timeout_s)


class GridTuner(OptunaTuner):
    """Every grid point once, as enqueued trials: optuna's GridSampler takes the product of all params,
    so with a conditional param it would run points that differ only in an inactive value."""

    config: GridConfig

    def sampler(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)  # not consulted: every trial's params are enqueued

    def budget(self, space: SearchSpace) -> int:
        return min(self.config.n_trials, len(space.grid_points()))

    def before_search(self, study: optuna.Study, space: SearchSpace, seed: int, n: int) -> None:
        """Queue the grid points the study has not seen, up to `n` queued in all, in an order shuffled
        with the tuner's seed (spread over the space when `n_trials` is smaller than the grid)."""
        points = [{k: encode_choice(v) for k, v in point.items()} for point in space.grid_points()]
        random.Random(seed).shuffle(points)
        trials = study.get_trials(deepcopy=False)
        seen = {point_key(t.params or t.system_attrs.get("fixed_params", {})) for t in trials}
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        for point in [p for p in points if point_key(p) not in seen][: max(0, n - waiting)]:
            study.enqueue_trial(point)


class RandomTuner(OptunaTuner):
    config: RandomConfig

    def sampler(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


class BayesianTuner(OptunaTuner):
    config: BayesianConfig

    def sampler(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            multivariate = self.config.multivariate
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.config.n_startup_trials,
                                              multivariate=multivariate, group=multivariate)


class GPTuner(OptunaTuner):
    config: GPConfig

    def sampler(self, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.config.n_startup_trials,
                                         warn_independent_sampling=False)


def sampler_seed(seed: int, trials_in_study: int, worker: int = 0) -> int:
    """The seed for one run's (or one worker's) sampler: a resumed search or a second worker with the
    plain seed would draw exactly the values already tried."""
    return int(np.random.SeedSequence([seed % 2**63, trials_in_study, worker]).generate_state(1)[0])


def point_key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


def storage(db: Path) -> optuna.storages.RDBStorage:
    # parallel workers write to one SQLite file: wait for its lock instead of failing
    return optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 60}})


def counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count against n_trials; ones an interruption cut short are re-run instead."""
    return trial.state in FINISHED and not trial.user_attrs.get("interrupted")


def requeue_interrupted(study: optuna.Study, store: optuna.storages.RDBStorage) -> int:
    """Trials left RUNNING by a killed search: mark them failed and queue their params again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        mark_failed(store, t, "interrupted; re-queued on resume", interrupted=True)
        study.enqueue_trial(dict(t.params))
    return len(stale)


def mark_failed(store: optuna.storages.RDBStorage, trial: optuna.trial.FrozenTrial, error: str, **attrs: Any) -> None:
    trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(STUDY_NAME), trial.number)
    for key, value in {"error": error, **attrs}.items():
        store.set_trial_user_attr(trial_id, key, value)
    store.set_trial_state_values(trial_id, TrialState.FAIL)


def optimize(study: optuna.Study, objective: Objective, space: SearchSpace, n: int, timeout: float | None) -> None:
    # catch=Exception: a crashing trial is recorded FAIL (with its error) and the search goes on
    study.optimize(lambda trial: run_trial(trial, objective, space), n_trials=n, timeout=timeout,
                   catch=(Exception,), gc_after_trial=False, show_progress_bar=False)


def run_trial(trial: optuna.Trial, objective: Objective, space: SearchSpace) -> float:
    params = space.sample(lambda name, p: suggest(trial, name, p))

    def report(epoch: int, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"validation metric is {value} at epoch {epoch}")
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (value {value:.4g})")

    try:
        value = float(objective(params, report))
        if not math.isfinite(value):
            raise ValueError(f"objective returned {value}")
    except optuna.TrialPruned:
        raise
    except Exception as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return value


def suggest(trial: optuna.Trial, name: str, param: FloatParam | IntParam | CategoricalParam) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    return decode_choice(param, trial.suggest_categorical(name, [encode_choice(c) for c in param.choices]))


def decode_params(space: SearchSpace, stored: Mapping[str, Any]) -> dict[str, Any]:
    params = space.params
    return {k: decode_choice(p, v) if isinstance(p := params.get(k), CategoricalParam) else v for k, v in stored.items()}


def trial_rows(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """The trials table: params, metric, state, duration, epochs run, error."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)):  # not queued ones
        steps = sorted(t.intermediate_values)
        value = t.value if t.state == TrialState.COMPLETE else (t.intermediate_values[steps[-1]] if steps else None)
        rows.append({
            "number": t.number,
            "state": t.state.name.lower(),
            "value": value,
            "params": decode_params(space, t.params),
            "epochs": len(steps),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "error": t.user_attrs.get("error"),
        })
    return rows


def limit_threads(n: int) -> Any:
    """Cap this process's compute threads (torch if loaded, OpenMP/BLAS pools) without importing torch.
    Returns the threadpoolctl limiter, whose `restore_original_limits()` undoes the pool part."""
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(n)


class limited_threads:
    """`limit_threads` for in-process trials, undone afterwards so the final training gets the machine back."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        torch = sys.modules.get("torch")
        self.torch_threads = torch.get_num_threads() if torch is not None else None
        self.env = {v: os.environ.get(v) for v in THREAD_ENV}
        self.limiter = limit_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        self.limiter.restore_original_limits()
        torch = sys.modules.get("torch")
        if torch is not None and self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        for var, value in self.env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
