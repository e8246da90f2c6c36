"""`dataset.id` with text ids: kept as the user wrote them through splits, Parquet, synthetic rows,
bad-cell reports, label-noise findings and the augmenter that acts on them, and the evaluate step's
predictions.csv; ids without a value, empty, duplicated or fractional are refused naming the column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlplat import registry
from mlplat.columns import row_ids_of, split_roles
from mlplat.contracts import StepContext
from mlplat.data import Splits, Table, split_frame
from mlplat.errors import UsageError
from mlplat.registry import StageKind


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"key": [f"acct-{i:03d}" for i in range(n)], "x": x.round(3).astype(object),
                         "plan": rng.choice(["a", "b"], n), "y": np.where(x > 0, "up", "down")})


def test_text_ids_stay_text_and_whole_numbers_stay_integers() -> None:
    text = row_ids_of(frame(5), "key")
    assert text.dtype == object and text.tolist() == [f"acct-{i:03d}" for i in range(5)]
    numbers = row_ids_of(pd.DataFrame({"k": [7.0, 3.0, 11.0]}), "k")
    assert numbers.dtype == np.int64 and numbers.tolist() == [7, 3, 11]
    assert row_ids_of(pd.DataFrame({"k": [True, False]}), "k").tolist() == ["True", "False"]


@pytest.mark.parametrize(("ids", "message"), [
    (["a", None, "c"], "has 1 rows without an id (first at row 1)"),
    (["a", " ", "c"], "has empty ids (first at row 1)"),
    (["a", "b", "a"], "has 1 duplicate ids, e.g. 'a'"),
    ([1.0, 2.5, 3.0], "holds numbers that are no non-negative whole numbers, e.g. 2.5"),
    ([1, -4, 3], "holds numbers that are no non-negative whole numbers, e.g. -4"),
])
def test_bad_ids_are_refused_naming_the_column(ids: list[object], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"dataset.id: column 'k' {message}")):
        row_ids_of(pd.DataFrame({"k": ids}), "k")


def test_splits_parquet_and_synthetic_rows_keep_text_ids(tmp_path: Path) -> None:
    data = frame()
    roles = split_roles(data, "y", id_column="key")
    splits = split_frame(roles.features.assign(y=roles.label), "y", "ids", 0.25, 0.25, seed=0, row_ids=roles.row_ids,
                         id_column="key")
    splits.save(tmp_path)
    loaded = Splits.load(tmp_path)
    together = np.concatenate([loaded.train.row_ids, loaded.validation.row_ids, loaded.test.row_ids])
    assert sorted(together) == sorted(data["key"])
    assert (loaded.train.labels == splits.train.labels).all() and list(loaded.train.row_ids) == list(splits.train.row_ids)
    grown = loaded.train.with_synthetic(loaded.train.features.iloc[:2], loaded.train.labels[:2])
    assert grown.row_ids[-2:].tolist() == ["", ""] and grown.synthetic[-2:].all()
    grown.to_frame().to_parquet(tmp_path / "grown.parquet")  # one string column, no mixed types
    assert Table.from_frame(pd.read_parquet(tmp_path / "grown.parquet")).row_ids.tolist() == grown.row_ids.tolist()


def test_a_bad_cell_is_reported_by_its_text_id() -> None:
    data = frame(30)
    data.loc[12, "x"] = "twelve"
    roles = split_roles(data, "y", id_column="key")
    assert roles.bad_cells == [{"column": "x", "row_id": "acct-012", "value": "twelve"}]


def test_label_noise_augmenter_drops_rows_by_text_id(tmp_path: Path) -> None:
    roles = split_roles(frame(), "y", id_column="key")
    train = Table(roles.features, (roles.label == "up").astype(int).to_numpy(), roles.row_ids)
    findings = {"validate": {"label_noise": {"row_ids": ["acct-003", "acct-010"], "scores": [0.9, 0.8]}}}
    plugin = registry.spec_of(StageKind.AUGMENTER, "label_noise").create({})
    info = split_frame(roles.features.assign(y=roles.label), "y", "ids", 0.25, 0.25, seed=0).info
    out = plugin.augment(train, StepContext("augment.0", tmp_path, info, seed=0, findings=findings))
    assert len(out) == len(train) - 2 and not {"acct-003", "acct-010"} & set(out.row_ids)


def test_held_out_file_with_numeric_ids_joins_text_ids(tmp_path: Path) -> None:
    from mlplat import steps
    from mlplat.spec import load_spec

    frame(60).to_csv(tmp_path / "train.csv", index=False)
    frame(20, seed=1).assign(key=np.arange(900, 920)).to_csv(tmp_path / "test.csv", index=False)
    spec = {"name": "ids", "dataset": {"source": "train.csv", "test_source": "test.csv", "label": "y", "id": "key"},
            "steps": {"train": {"plugin": "mlp"}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    splits = steps.ingest(load_spec(tmp_path / "spec.yaml"), tmp_path, tmp_path / "data")
    assert splits.test.row_ids.tolist() == [str(i) for i in range(900, 920)]
    assert all(i.startswith("acct-") for i in splits.train.row_ids)
    assert json.loads((tmp_path / "data" / "dataset.json").read_text())["id_column"] == "key"
