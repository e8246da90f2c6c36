"""Spec errors: exact path, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC


def mlplat(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], capture_output=True, text=True, cwd=cwd,
                          env={"COLUMNS": "300", "PATH": "", "PYTHONUNBUFFERED": "1"})


def write_spec(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_changes(**steps: dict) -> dict:
    data = yaml.safe_load(yaml.safe_dump(TINY_SPEC))
    data["steps"].update(steps)
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_changes(train={"plugin": "mlp", "params": {"epochs": 0}}),
         "steps.train.params.epochs: Input should be greater than or equal to 1"),
        (with_changes(train={"plugin": "mlp", "params": {"epochz": 3}}), "steps.train.params.epochz: unknown field"),
        (with_changes(train={"plugin": "nope"}), "steps.train.plugin: unknown trainer plugin 'nope'; available:"),
        (with_changes(validate={"plugin": "tabular", "params": {"max_missing_rate": 2}}),
         "steps.validate.params.max_missing_rate: Input should be less than or equal to 1"),
        (with_changes(train={"plugin": "mlp", "resources": {"gpus": 3}}),
         "steps.train.resources.gpus: Value error, KFP accepts GPU counts 0, 1, 2, 4, 8, 16; got 3"),
        ({**TINY_SPEC, "name": "Bad_Name"}, "name: String should match pattern"),
        ({**TINY_SPEC, "dataset": {"source": "sklearn:breast_cancer", "test": 1.5}}, "dataset.test: Input should be less than 1"),
        ({k: v for k, v in TINY_SPEC.items() if k != "steps"}, "steps: Field required"),
        (with_changes(evaluate={"params": {"min_accuracy": 1.5}}),
         "steps.evaluate.params.min_accuracy: Input should be less than or equal to 1"),
    ],
)
def test_bad_spec_exits_2_with_exact_path(tmp_path: Path, data: dict, expected: str) -> None:
    result = mlplat("run", str(write_spec(tmp_path, data)), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nsteps: [unclosed\n")
    result = mlplat("run", str(path))
    assert result.returncode == 2
    assert "line 3" in result.stderr and "invalid YAML" in result.stderr


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"source": "missing.csv", "label": "y"}, "dataset.source: data file not found"),
        ({"source": "sklearn:nonexistent"}, "dataset.source: unknown scikit-learn dataset 'nonexistent'"),
        ({"source": "data.csv", "label": "nolabel"}, "dataset.label: column 'nolabel' not in data.csv"),
    ],
)
def test_bad_dataset_exits_2(tmp_path: Path, dataset: dict, expected: str) -> None:
    (tmp_path / "data.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    spec = write_spec(tmp_path, {**TINY_SPEC, "dataset": dataset})
    result = mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_missing_spec_file_exits_2(tmp_path: Path) -> None:
    result = mlplat("run", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "spec file not found" in result.stderr


def test_runs_show_refuses_escaping_ids(tmp_path: Path) -> None:
    for bad in ("../etc", "/etc/passwd", "a/b", ".."):
        result = mlplat("runs", "show", bad, "--runs-dir", str(tmp_path))
        assert result.returncode == 2, (bad, result.stderr)
        assert "invalid run id" in result.stderr
