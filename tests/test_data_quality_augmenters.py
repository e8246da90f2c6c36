"""Augmenter plugins: each test fails if the augmenter returned its input unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlplat import registry
from mlplat.contracts import StepContext
from mlplat.data import Splits, Table, load_source, split_frame
from mlplat.errors import UsageError
from mlplat.registry import StageKind

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cancer() -> Splits:
    frame, label = load_source("sklearn:breast_cancer", None, None, REPO)
    return split_frame(frame, label, "bc", 0.2, 0.2, seed=0)


@pytest.fixture(scope="module")
def digits() -> Splits:
    frame, label = load_source("sklearn:digits", None, None, REPO)
    return split_frame(frame.iloc[:300], label, "digits", 0.2, 0.2, seed=0, image_shape=[1, 8, 8])


def augment(name: str, train: Table, info, tmp_path: Path, findings=None, **params) -> Table:
    plugin = registry.spec_of(StageKind.AUGMENTER, name).create(params)
    ctx = StepContext("augment.0", tmp_path, info, seed=0, findings=findings or {})
    before = train.to_frame().copy()
    out = plugin.augment(train, ctx)
    pd.testing.assert_frame_equal(train.to_frame(), before)  # the input is never mutated
    return out


def imbalanced(splits: Splits, minority: int = 10) -> Table:
    t = splits.train
    keep = np.flatnonzero((t.labels == 1) | (np.cumsum(t.labels == 0) <= minority))
    return t.take(keep)


def assert_tagged(out: Table, original: Table) -> np.ndarray:
    """Original rows come first untouched; added rows are synthetic with row id -1."""
    n = len(original)
    pd.testing.assert_frame_equal(out.features.iloc[:n], original.features)
    assert np.array_equal(out.row_ids[:n], original.row_ids) and not out.synthetic[:n].any()
    assert out.synthetic[n:].all() and (out.row_ids[n:] == -1).all() and len(out) > n
    return np.arange(n, len(out))


@pytest.mark.parametrize("name", ["random_oversample", "smote"])
def test_oversampling_balances_the_classes(cancer, tmp_path, name):
    train = imbalanced(cancer)
    out = augment(name, train, cancer.info, tmp_path)
    added = assert_tagged(out, train)
    counts = np.bincount(out.labels)
    assert counts[0] == counts[1] and (out.labels[added] == 0).all()
    minority = train.features.to_numpy()[train.labels == 0]
    new = out.features.to_numpy()[added]
    if name == "smote":  # interpolations: new points, inside the minority's bounding box
        assert not (new[:, None, :] == minority[None]).all(-1).any(1).all()
        assert (new >= minority.min(0) - 1e-9).all() and (new <= minority.max(0) + 1e-9).all()
    else:  # copies of minority rows
        assert (new[:, None, :] == minority[None]).all(-1).any(1).all()


def test_smote_ratio_strategy(cancer, tmp_path):
    out = augment("smote", imbalanced(cancer), cancer.info, tmp_path, sampling_strategy=0.5)
    counts = np.bincount(out.labels)
    assert counts[0] == int(0.5 * counts[1])


def noise_findings(train: Table) -> dict:
    ids = train.row_ids[[3, 1, 4]].tolist()
    return {"validate": {"label_noise": {"row_ids": ids, "scores": [0.9, 0.5, 0.05]}}}


def test_label_noise_drops_flagged_rows(cancer, tmp_path):
    train = cancer.train
    found = noise_findings(train)
    out = augment("label_noise", train, cancer.info, tmp_path, found)
    assert len(out) == len(train) - 3 and not set(found["validate"]["label_noise"]["row_ids"]) & set(out.row_ids)
    out = augment("label_noise", train, cancer.info, tmp_path, found, min_score=0.1)
    assert set(train.row_ids) - set(out.row_ids) == set(train.row_ids[[3, 1]])


def test_label_noise_downweights_flagged_rows(cancer, tmp_path):
    train = cancer.train
    out = augment("label_noise", train, cancer.info, tmp_path, noise_findings(train), action="downweight", weight=0.25)
    assert len(out) == len(train)
    assert np.allclose(out.weights[[3, 1, 4]], 0.25) and out.weights.sum() == pytest.approx(len(train) - 3 * 0.75)


def test_label_noise_without_findings_is_a_clear_error(cancer, tmp_path):
    with pytest.raises(UsageError, match="needs a validate step"):
        augment("label_noise", cancer.train, cancer.info, tmp_path)


def test_gaussian_noise_scaled_per_column(cancer, tmp_path):
    train = cancer.train
    out = augment("gaussian_noise", train, cancer.info, tmp_path, copies=2, scale=0.1)
    added = assert_tagged(out, train)
    assert len(added) == 2 * len(train) and np.array_equal(out.labels[added], np.tile(train.labels, 2))
    X = train.features.to_numpy()
    delta = out.features.to_numpy()[added] - np.tile(X, (2, 1))
    ratio = delta.std(0) / X.std(0)  # per-column noise relative to the column's spread
    assert (ratio > 0.03).all() and (ratio < 0.11).all()


@pytest.mark.parametrize("same_class", [False, True])
def test_mixup_hard_label_variant(cancer, tmp_path, same_class):
    train = cancer.train
    out = augment("mixup", train, cancer.info, tmp_path, same_class=same_class)
    added = assert_tagged(out, train)
    X, new = train.features.to_numpy(), out.features.to_numpy()[added]
    lam = out.weights[added]  # weight = the anchor's share, >= 0.5
    assert (lam >= 0.5).all() and (lam <= 1).all() and lam.std() > 0.01
    # each new row is lam * anchor + (1 - lam) * partner, labelled like its anchor (row i of train)
    anchors = np.arange(len(train))
    partner = (new - lam[:, None] * X[anchors]) / np.maximum(1 - lam[:, None], 1e-9)
    nearest = np.abs(partner[:, None, :] - X[None]).sum(-1).argmin(1)
    mixed = lam < 0.999
    assert np.allclose(partner[mixed], X[nearest[mixed]], rtol=1e-4, atol=1e-3)
    assert np.array_equal(out.labels[added], train.labels)
    if same_class:
        assert np.array_equal(train.labels[nearest[mixed]], train.labels[mixed])
    else:
        assert (train.labels[nearest[mixed]] != train.labels[mixed]).any()


def test_image_augment_shifts_rotates_and_adds_noise(digits, tmp_path):
    train = digits.train
    out = augment("image_augment", train, digits.info, tmp_path, copies=2)
    added = assert_tagged(out, train)
    X = train.features.to_numpy()
    new = out.features.to_numpy()[added]
    same = np.tile(X, (2, 1))
    assert np.abs(new - same).mean() > 0.5  # pixels moved
    own = [np.corrcoef(a, b)[0, 1] for a, b in zip(new, same, strict=True)]
    other = [np.corrcoef(a, b)[0, 1] for a, b in zip(new, np.roll(same, 1, axis=0), strict=True)]
    assert np.mean(own) > np.mean(other) + 0.1  # still the same digit, recognizably
    assert new.min() >= X.min() and new.max() <= X.max()
    # shifts are whole pixels: with rotation and noise off, each output is its image moved by (dx, dy)
    from mlplat_plugins.image_augment import ImageAugmentConfig
    from mlplat_plugins.image_augment.augment import transform

    images = X[:40].reshape(-1, 1, 8, 8).astype(np.float32)
    moved = transform(images, ImageAugmentConfig(max_shift=1, max_rotation=0.0, noise_std=0.0), 0, 0.0, 16.0)
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    candidates = {(dx, dy): padded[:, :, 1 - dy:9 - dy, 1 - dx:9 - dx] for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    matched = [next((d for d, c in candidates.items() if np.array_equal(moved[i], c[i])), None) for i in range(len(images))]
    assert None not in matched and len(set(matched)) > 3


def test_image_augment_refuses_tabular_data(cancer, tmp_path):
    with pytest.raises(UsageError, match="needs an image dataset"):
        augment("image_augment", cancer.train, cancer.info, tmp_path)


def test_gaussian_copula_synthetic_rows_and_fidelity_report(cancer, tmp_path):
    train = cancer.train
    out = augment("gaussian_copula", train, cancer.info, tmp_path, ratio=1.0)
    added = assert_tagged(out, train)
    assert np.array_equal(np.bincount(out.labels[added]), np.bincount(train.labels))
    report = json.loads((tmp_path / "augment.0.fidelity.json").read_text())
    assert report["rows"] == {"real": len(train), "synthetic": len(added)}
    assert report["mean_ks"] < 0.1 and report["mean_abs_correlation_difference"] < 0.1
    assert "Marginals" in (tmp_path / "augment.0.fidelity.html").read_text()
    # the generator keeps class structure: the class means of synthetic rows match the real ones
    real, synth = train.features.to_numpy(), out.features.to_numpy()[added]
    for c in (0, 1):
        gap = np.abs(real[train.labels == c].mean(0) - synth[out.labels[added] == c].mean(0)) / real.std(0)
        assert gap.max() < 0.3


@pytest.mark.slow
def test_pipeline_augments_train_only(tmp_path):
    """validate -> label_noise + smote -> train: validation/test stay the ingested rows."""
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore
    from mlplat.spec import parse_spec, resolve

    frame, label = load_source("sklearn:breast_cancer", None, None, REPO)
    flipped = np.random.default_rng(0).choice(len(frame), size=len(frame) // 10, replace=False)  # row ids = positions
    frame.loc[flipped, label] = np.where(frame.loc[flipped, label] == "benign", "malignant", "benign")
    frame.to_csv(tmp_path / "noisy.csv", index=False)
    spec = resolve(parse_spec({
        "name": "aug", "seed": 0, "dataset": {"source": str(tmp_path / "noisy.csv"), "label": label},
        "steps": {"validate": {"plugin": "tabular", "params": {"plot_columns": 0}},
                  "augment": [{"plugin": "label_noise"}, {"plugin": "smote"}],
                  "train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 2, "early_stopping_patience": None}}},
    }))
    result = run_pipeline(spec, REPO, RunStore(tmp_path / "runs"))
    steps_dir = result.run.dir / "steps"
    ingested, augmented = Splits.load(steps_dir / "ingest"), Splits.load(steps_dir / "augment")
    for name in ("validation", "test"):
        pd.testing.assert_frame_equal(getattr(ingested, name).to_frame(), getattr(augmented, name).to_frame())
    rows = json.loads((steps_dir / "augment" / "augment.json").read_text())
    noise = json.loads((steps_dir / "validate" / "findings.json").read_text())["label_noise"]
    flipped_in_train = set(flipped) & set(ingested.train.row_ids)
    found = set(noise["row_ids"]) & flipped_in_train
    assert len(found) >= 0.5 * len(flipped_in_train) and len(found) >= 0.7 * len(noise["row_ids"])  # the injected noise
    dropped = {i for i, score in zip(noise["row_ids"], noise["scores"], strict=True) if score > 0}  # default min_score 0
    assert len(dropped) >= 0.5 * len(flipped_in_train)
    assert rows[1]["rows"] == rows[0]["rows"] - len(dropped) and rows[2]["synthetic"] > 0
    assert not dropped & set(augmented.train.row_ids)
