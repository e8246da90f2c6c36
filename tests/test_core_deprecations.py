"""Renamed keys keep working with a DeprecationWarning; giving old and new name together is exit 2 at the old one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC
from mlplat.deprecations import RenamedKey
from mlplat.errors import SpecError
from mlplat.plan import build_plan
from mlplat.spec import parse_spec, resolve
from test_core_spec import mlplat, write_spec

OLD_DRIFT = {**TINY_SPEC, "steps": {**TINY_SPEC["steps"], "monitor": {"plugin": "evidently", "params": {"min_window": 50}}}}
TRAIN = TINY_SPEC["steps"]["train"]


def with_train_params(**params: str) -> dict:
    return {**TINY_SPEC, "steps": {**TINY_SPEC["steps"], "train": {**TRAIN, "params": {**TRAIN["params"], **params}}}}


def test_steps_monitor_is_read_as_drift_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"steps\.monitor is deprecated: it is read as steps\.drift") as caught:
        spec = parse_spec(OLD_DRIFT)
    assert [w.category for w in caught] == [RenamedKey]
    assert spec.steps.drift is not None and spec.steps.drift.plugin == "evidently"
    assert spec.steps.drift.params == {"min_window": 50}
    assert build_plan(spec).names[-2:] == ["drift", "publish"]
    assert "monitor" not in spec.steps.model_dump(by_alias=True)  # what a run records uses the new name


def test_trainer_monitor_param_is_read_as_early_stopping_metric() -> None:
    with pytest.warns(RenamedKey, match=r"params\.monitor is deprecated: it is read as params\.early_stopping_metric"):
        spec = resolve(parse_spec(with_train_params(monitor="val_accuracy")))
    params = spec.steps.train.params
    assert params["early_stopping_metric"] == "val_accuracy" and "monitor" not in params


@pytest.mark.parametrize(("data", "path", "new"), [
    ({**OLD_DRIFT, "steps": {**OLD_DRIFT["steps"], "drift": {"plugin": "evidently"}}}, "steps.monitor", "steps.drift"),
    (with_train_params(monitor="val_accuracy", early_stopping_metric="val_loss"), "steps.train.params.monitor",
     "params.early_stopping_metric"),
])
def test_old_and_new_name_together_are_refused_at_the_old_one(data: dict, path: str, new: str) -> None:
    with pytest.raises(SpecError) as caught:
        resolve(parse_spec(data))
    assert caught.value.problems == [(path, f"the old name of {new}; give only {new}")]


def test_cli_warns_once_per_renamed_key_and_refuses_both_with_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    data = with_train_params(monitor="val_loss")
    data["steps"]["monitor"] = {"plugin": "evidently"}
    old = write_spec(tmp_path, data)
    compiled = tmp_path / "old.yaml"
    result = mlplat("compile", str(old), "-o", str(compiled))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: steps.monitor is deprecated: it is read as steps.drift; rename it",
                        "warning: params.monitor is deprecated: it is read as params.early_stopping_metric; rename it"]
    assert "drift" in yaml.safe_load(compiled.read_text().split("\n---\n")[0])["root"]["dag"]["tasks"]

    both = yaml.safe_load(old.read_text())
    both["steps"]["drift"] = {"plugin": "evidently"}
    result = mlplat("run", str(write_spec(tmp_path, both)), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "steps.monitor: the old name of steps.drift; give only steps.drift" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_registry_get_is_the_deprecated_name_of_spec_of():
    from mlplat import registry

    with pytest.warns(DeprecationWarning, match="spec_of"):
        old = registry.get("trainer", "mlp")
    assert old is registry.spec_of("trainer", "mlp")
