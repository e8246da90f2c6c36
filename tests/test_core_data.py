"""Dataset sources: `dataset.features` selects columns for every kind of source."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlplat.data import load_source
from mlplat.errors import UsageError


def test_features_select_columns_of_a_sklearn_source(tmp_path: Path) -> None:
    frame, label = load_source("sklearn:breast_cancer", None, ["mean radius", "mean texture"], tmp_path)
    assert list(frame.columns) == ["mean radius", "mean texture", label]


def test_features_select_columns_of_a_csv_source(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,c,y\n1,2,3,0\n4,5,6,1\n")
    frame, label = load_source("d.csv", "y", ["c", "a"], tmp_path)
    assert list(frame.columns) == ["c", "a", "y"] and label == "y"


@pytest.mark.parametrize("source", ["sklearn:breast_cancer", "d.csv"])
def test_unknown_feature_names_the_column(tmp_path: Path, source: str) -> None:
    (tmp_path / "d.csv").write_text("a,y\n1,0\n")
    with pytest.raises(UsageError, match="dataset.features: columns not in .*: bogus"):
        load_source(source, "y" if source.endswith("csv") else None, ["bogus"], tmp_path)
