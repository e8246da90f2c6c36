"""The tune step inside a real run: parallel trials of the mlp trainer, best params retrained and
published, and `--resume` continuing the stored study instead of searching again."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from mlplat import modeldir, steps
from mlplat.runner import Progress, run_pipeline
from mlplat.runs import RunStore
from mlplat.spec import parse_spec, resolve

REPO = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = {
    "name": "tiny-tuned",
    "seed": 5,
    "dataset": {"source": "sklearn:breast_cancer"},
    "steps": {
        "tune": {"plugin": "bayesian",
                 "params": {"n_trials": 4, "parallel": 2, "threads_per_trial": 1, "n_startup_trials": 2},
                 "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                                  "width": {"type": "categorical", "choices": [8, 16]}}},
        "train": {"plugin": "mlp", "params": {"epochs": 3, "depth": 1, "early_stopping_patience": None,
                                              "checkpoint_every": 0}},
    },
}


def test_trials_skip_cv_and_checkpoints_and_a_loss_is_minimized(tmp_path: Path) -> None:
    """A trial needs one score: the train step's 3-fold CV (4x the cost) and checkpoints are off in
    trials; the retrain of the best params keeps them. `val_loss` is minimized."""
    data = copy.deepcopy(SPEC)
    data["steps"]["tune"].update(metric="val_loss", plugin="random", params={"n_trials": 3, "pruner": "none"})
    data["steps"]["train"]["params"].update(epochs=2, cv_folds=3, checkpoint_every=1)
    spec = resolve(parse_spec(data))
    assert steps.trial_params(spec, {"lr": 0.01}) == {**spec.steps.train.params, "lr": 0.01, "cv_folds": 0,
                                                      "checkpoint_every": 0}
    assert steps.trainer_params(spec, None)["cv_folds"] == 3
    splits = steps.ingest(spec, REPO, tmp_path / "data")
    checkpoints: list[Path] = []
    objective = steps.tune_objective(spec, splits, tmp_path / "objective")
    value = objective({"lr": 0.01, "width": 8},
                      lambda epoch, v: checkpoints.extend((tmp_path / "objective" / "trials").rglob("LAST")))
    assert 0 < value < 2 and checkpoints == []
    summary = steps.tune(spec, tmp_path / "data", tmp_path / "tune")
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert summary["direction"] == "minimize" and summary["best_value"] == min(t["value"] for t in trials)


class StopAfterTune(Progress):
    """Ctrl-C right after the search: the run is left unfinished, like a killed job."""

    def step_finished(self, step: str, seconds: float) -> None:
        if step == "tune":
            raise KeyboardInterrupt


@pytest.mark.slow
def test_tuned_run_publishes_the_best_params_and_resume_reuses_the_study(tmp_path: Path) -> None:
    spec = resolve(parse_spec(SPEC))
    store = RunStore(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(spec, REPO, store, StopAfterTune())
    (run,) = store.list()
    tune_dir = run.dir / "steps" / "tune"
    trials = json.loads((tune_dir / "trials.json").read_text())
    assert len(trials) == 4 and {t["state"] for t in trials} <= {"complete", "pruned", "fail"}
    assert all({"params", "value", "state", "duration_s", "epochs"} <= set(t) for t in trials)
    for name in ("report.html", "report.md", "optimization_history.png", "param_importances.png",
                 "parallel_coordinate.png", "study.db"):
        assert (tune_dir / name).is_file(), name
    assert not (run.dir / "model").exists()

    result = run_pipeline(spec, REPO, store, run_id=run.id)  # `mlplat run SPEC --resume RUN`
    assert json.loads((tune_dir / "trials.json").read_text()) == trials  # no trial ran again
    best = json.loads((tune_dir / "best_params.json").read_text())
    assert best["best_value"] == max(t["value"] for t in trials if t["state"] == "complete")
    trainer = modeldir.ModelDir(result.model_dir).read().trainer
    assert trainer.params["lr"] == pytest.approx(best["best_params"]["lr"])
    assert trainer.params["width"] == best["best_params"]["width"]
    assert result.metrics["tune"]["trials"] == 4 and store.latest_id() == run.id
