"""Search-space parsing and validation against the trainer's config: bad spaces fail before any
trial runs, with the param's path in the message."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat.errors import SpecError
from mlplat.search_space import check_against_config, parse_search_space
from mlplat.spec import parse_spec, resolve, tune_direction
from pydantic import BaseModel, Field

REPO = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = {
    "name": "tiny-tuned",
    "dataset": {"source": "sklearn:breast_cancer"},
    "steps": {
        "tune": {"plugin": "random", "params": {"n_trials": 2},
                 "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                                  "dropout": {"type": "float", "low": 0.0, "high": 0.5}}},
        "train": {"plugin": "mlp", "params": {"epochs": 2}},
    },
}


class Toy(BaseModel):
    layers: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    act: str = "relu"


def with_space(**space: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["steps"]["tune"]["search_space"] = space
    return spec


def problems(spec: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        resolve(parse_spec(spec))
    return info.value.problems


def test_a_valid_space_resolves_normalized() -> None:
    resolved = resolve(parse_spec(SPEC))
    space = resolved.steps.tune.search_space
    assert space["lr"] == {"when": {}, "type": "float", "low": 1e-4, "high": 0.1, "log": True, "grid_points": 4}


def test_conditional_params_are_active_only_when_their_condition_holds() -> None:
    space = parse_search_space({
        "layers": {"type": "int", "low": 1, "high": 4},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "when": {"layers": {"gt": 1}}},
        "act": {"type": "categorical", "choices": ["relu", "gelu"], "when": {"dropout": {"ge": 0.1}}},
    })
    check_against_config(space, Toy, {})
    assert space.drop_inactive({"layers": 1, "dropout": 0.3, "act": "gelu"}) == {"layers": 1}
    assert space.drop_inactive({"layers": 2, "dropout": 0.3, "act": "gelu"}) == {"layers": 2, "dropout": 0.3, "act": "gelu"}
    assert space.drop_inactive({"layers": 2, "dropout": 0.0, "act": "gelu"}) == {"layers": 2, "dropout": 0.0}
    values = iter([3, 0.05])
    assert space.sample(lambda name, p: next(values)) == {"layers": 3, "dropout": 0.05}


def test_grid_points_stay_inside_the_bounds() -> None:
    space = parse_search_space({"lr": {"type": "float", "low": 1e-5, "high": 0.3, "log": True, "grid_points": 5},
                                "n": {"type": "int", "low": 2, "high": 20, "step": 2, "grid_points": 3}})
    lr = space.params["lr"].grid()
    assert lr[0] == 1e-5 and lr[-1] == 0.3 and len(lr) == 5 and lr == sorted(lr)
    assert space.params["n"].grid() == [2, 10, 20]


@pytest.mark.parametrize("space, path, message", [
    ({"lrr": {"type": "float", "low": 0.1, "high": 1.0}}, "steps.tune.search_space.lrr", "not a parameter of the trainer config"),
    ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "steps.tune.search_space.lr", "log scale needs low > 0"),
    ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "steps.tune.search_space.lr", "must be below high"),
    ({"lr": {"type": "floaty", "low": 0.1, "high": 1.0}}, "steps.tune.search_space.lr", "type must be one of"),
    ({"lr": {"type": "float", "low": 0.1}}, "steps.tune.search_space.lr.high", "Field required"),
    ({"lr": {"type": "float", "low": 0.1, "high": 1.0, "scale": "log"}}, "steps.tune.search_space.lr.scale", "unknown field"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "steps.tune.search_space.dropout", "value 1.5 is invalid for the trainer"),
    ({"batch_size": {"type": "categorical", "choices": [32, "big"]}}, "steps.tune.search_space.batch_size", "'big' is invalid"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 0.5, "when": {"depth": {"gt": 1}}}},
     "steps.tune.search_space", "must be declared before it"),
])
def test_a_bad_search_space_names_the_param(space: dict[str, Any], path: str, message: str) -> None:
    found = problems(with_space(**space))
    assert any(p.startswith(path) and message in m for p, m in found), found


def test_the_tune_metric_must_be_one_the_trainer_reports() -> None:
    spec = copy.deepcopy(SPEC)
    spec["steps"]["tune"]["metric"] = "val_los"
    assert problems(spec) == [("steps.tune.metric", "'val_los' is not reported by trainer 'mlp' for a classification; "
                                                    "choose one of: "
                                                    "val_accuracy (maximize), val_loss (minimize)")]
    spec["steps"]["tune"]["metric"] = "val_loss"
    assert tune_direction(resolve(parse_spec(spec))) == "minimize"
    assert tune_direction(resolve(parse_spec(SPEC))) == "maximize"  # the default metric, val_accuracy


def test_the_cli_exits_2_with_the_param_path(tmp_path: Path) -> None:
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(with_space(lrr={"type": "float", "low": 0.1, "high": 1.0})))
    done = subprocess.run([sys.executable, "-m", "mlplat", "tune", "katib", str(spec_file)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "steps.tune.search_space.lrr: not a parameter of the trainer config" in done.stderr
    bad_metric = copy.deepcopy(SPEC)
    bad_metric["steps"]["tune"]["metric"] = "accuracy"
    spec_file.write_text(yaml.safe_dump(bad_metric))
    done = subprocess.run([sys.executable, "-m", "mlplat", "tune", "katib", str(spec_file)], capture_output=True, text=True)
    assert done.returncode == 2 and "steps.tune.metric: 'accuracy' is not reported by trainer 'mlp'" in done.stderr
