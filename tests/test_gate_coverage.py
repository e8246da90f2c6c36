"""The validate gate names each corruption of benchmarks/effectiveness/gate_coverage.py (issue 17, item 6)
on small data: against a previous run's schema every one, alone those one batch can show; a clean batch of
the same distribution blocks nothing. Plus the false-alarm guards of the relation checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks" / "effectiveness"))
from gate_coverage import CORRUPTIONS, clean_frame, naming, validate

ROWS = 1000


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, schema = validate(clean_frame(ROWS, seed=0), tmp_path_factory.mktemp("reference"), None)
    return schema


@pytest.mark.parametrize("mode", ["reference", "alone"])
def test_clean_batch_blocks_nothing(reference: Path, tmp_path: Path, mode: str) -> None:
    checks, _ = validate(clean_frame(ROWS, seed=1), tmp_path, reference if mode == "reference" else None)
    assert [c.reason for c in checks if not c.passed and c.severity == "fail"] == []
    assert any(c.check == "schema.association" and c.passed for c in checks)  # the check ran


CASES = [(name, mode) for name, (*_, alone) in CORRUPTIONS.items() for mode in ("reference", "alone")
         if mode == "reference" or alone]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_gate_names_the_corruption(reference: Path, tmp_path: Path, name: str, mode: str) -> None:
    corrupt, names, column, _ = CORRUPTIONS[name]
    frame = corrupt(clean_frame(ROWS, seed=1), np.random.default_rng(7))
    checks, _ = validate(frame, tmp_path, reference if mode == "reference" else None)
    found = naming(checks, names, column)
    assert found, [c.reason for c in checks if not c.passed]
    if name in ("shuffled_column", "label_leak", "string_in_numeric", "dropped_column", "scaled_column"):
        assert any(c.severity == "fail" for c in found)  # these block the run, not only warn


def test_association_is_chance_adjusted_and_leaks_need_evidence() -> None:
    from mlplat_plugins.tabular_validation.relations import association, single_feature_leaks

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    noise_codes = pd.Series([f"id-{i}" for i in rng.integers(0, 300, 2000)])  # many levels, unrelated to the label
    assert association(noise_codes, labels, regression=False) < 0.02
    assert association(pd.Series(rng.normal(size=2000)), labels, regression=False) < 0.01
    assert association(pd.Series(labels + rng.normal(0, 0.5, 2000)), labels, regression=False) > 0.3
    target = rng.normal(size=2000)
    assert association(pd.Series(target + rng.normal(0, 0.1, 2000)), target, regression=True) > 0.9
    assert association(pd.Series(rng.permutation(target)), target, regression=True) < 0.01

    def leaks(n_held_out: int) -> list[object]:
        train = pd.DataFrame({"copy": labels + rng.normal(0, 0.05, 2000)})
        held = rng.integers(0, 2, n_held_out)
        return single_feature_leaks(train, labels, pd.DataFrame({"copy": held + rng.normal(0, 0.05, n_held_out)}), held,
                                    lambda _: "fail")

    assert [c.column for c in leaks(300)] == ["copy"]
    assert leaks(20) == []  # 20 perfect held-out rows are no proof of a leak


def test_iris_has_no_leak(tmp_path: Path) -> None:
    """Petal width alone separates iris well (~0.95): a strong feature, not a leak."""
    from mlplat import registry
    from mlplat.data import load_source, split_frame
    from mlplat.registry import StageKind
    from mlplat.testing.fixtures import step_context

    frame, label = load_source("sklearn:iris", None, None, REPO)
    splits = split_frame(frame, label, "iris", 0.2, 0.2, seed=0)
    validator = registry.create(StageKind.VALIDATOR, "tabular", {"label_noise": {"enabled": False}, "plot_columns": 0},
                                 step="validate")
    report = validator.validate(splits, step_context(tmp_path, splits, step="validate"))
    assert not [c.reason for c in report.checks if c.check in ("label_leak", "schema.association") and not c.passed]


def test_regression_shuffled_column_is_named_against_the_reference(tmp_path: Path) -> None:
    import json

    from mlplat import registry
    from mlplat.data import split_frame
    from mlplat.registry import StageKind
    from mlplat.testing.fixtures import step_context

    def batch(seed: int, shuffle: bool) -> object:
        rng = np.random.default_rng(seed)
        x0, x1 = rng.normal(size=800), rng.normal(size=800)
        frame = pd.DataFrame({"x0": rng.permutation(x0) if shuffle else x0, "x1": x1, "y": 3 * x0 + 0.5 * x1 + rng.normal(0, 0.3, 800)})
        return split_frame(frame, "y", "reg", 0.2, 0.2, seed=0, task="regression")

    def validate_splits(splits: object, **params: object) -> list[object]:
        validator = registry.create(StageKind.VALIDATOR, "tabular", {"plot_columns": 0, **params}, step="validate")
        return validator.validate(splits, step_context(tmp_path, splits, step="validate"))

    clean = validate_splits(batch(0, shuffle=False))
    (tmp_path / "schema.json").write_text(json.dumps(clean.schema))
    assert [c["association"] > 0.5 for c in clean.schema["columns"]] == [True, False]
    report = validate_splits(batch(1, shuffle=True), schema_path=str(tmp_path / "schema.json"))
    lost = [c for c in report.checks if c.check == "schema.association" and not c.passed]
    assert lost and {c.column for c in lost} == {"x0"} and not report.passed
    assert validate_splits(batch(2, shuffle=False), schema_path=str(tmp_path / "schema.json")).passed
