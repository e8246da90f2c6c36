"""Names and quantities are checked once, at spec load, against every cluster target: exit 2 naming the field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat.errors import SpecError
from mlplat.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = {"name": "names", "dataset": {"source": "sklearn:breast_cancer"}, "steps": {"train": {"plugin": "mlp"}}}
TUNE = {"plugin": "random", "metric": "val_accuracy", "search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}}


def spec_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SPEC)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


@pytest.mark.parametrize("name, target", [
    ("1-model", "RFC 1035"),                 # TrainJob / Katib / KServe names start with a letter
    ("a" * 46, "InferenceService"),          # 45 + KServe's -predictor-... suffixes
    ("a" * 58, "TrainJob"),                  # 58 + "-train" > 63
])
def test_a_name_no_target_accepts_is_refused(name: str, target: str) -> None:
    found = problems(spec_with(name=name))
    assert any(p == "name" and target in m for p, m in found), found


def test_the_katib_limit_applies_to_specs_that_tune() -> None:
    name = "a" * 36  # 36 + "-tune" = 41 > 40
    parse_spec(spec_with(name=name))  # no tune step: no Experiment
    found = problems(spec_with(name=name, steps__tune=TUNE))
    assert found == [("name", f"{name!r} is 36 characters; the Katib Experiment {name + '-tune'!r} may have at most 40, "
                              "so at most 35")]
    parse_spec(spec_with(name="a" * 35, steps__tune=TUNE))


@pytest.mark.parametrize("field, value", [("cpu", "two"), ("cpu", "1.5Gi"), ("cpu", "0"), ("memory", "4GB"), ("memory", "lots"),
                                          ("memory", "1.5Gi")])
def test_a_quantity_kfp_or_kubernetes_refuses_is_named(field: str, value: str) -> None:
    found = problems(spec_with(steps__train__resources={field: value}))
    assert [p for p, _ in found] == [f"steps.train.resources.{field}"] and repr(value) in found[0][1]


@pytest.mark.parametrize("field, value", [("cpu", "2"), ("cpu", "500m"), ("cpu", "0.5"), ("memory", "512Mi"), ("memory", "4G")])
def test_quantities_every_target_takes_pass(field: str, value: str) -> None:
    parse_spec(spec_with(steps__train__resources={field: value}))


@pytest.mark.parametrize("command", [["compile"], ["trainjob"], ["tune", "katib"]])
def test_every_emitting_command_exits_2_naming_the_field(tmp_path: Path, command: list[str]) -> None:
    """`resources: {cpu: two}` used to be refused by compile only; trainjob and tune katib wrote it."""
    data = spec_with(steps__tune={**TUNE, "resources": {"cpu": "two"}})
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "mlplat", *command, str(spec_file)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "steps.tune.resources.cpu" in done.stderr and "'two'" in done.stderr
    assert done.stdout == "" and not list(tmp_path.glob("*.pipeline.yaml"))


def test_every_checked_in_spec_passes() -> None:
    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        parse_spec(yaml.safe_load(path.read_text()), str(path))
