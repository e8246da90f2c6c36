"""End to end through the real runner: the digits CNN spec, a crash, `--resume`, and serving's rebuild."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from mlplat import modeldir
from mlplat.data import Splits
from mlplat.runner import Progress, run_pipeline
from mlplat.runs import RunStore
from mlplat.spec import load_spec, parse_spec, resolve
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


class Crash(Exception):
    pass


class CrashAt(Progress):
    def __init__(self, epoch: int) -> None:
        self.at = epoch

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch == self.at:
            raise Crash(f"simulated crash after epoch {epoch}")


def digits_spec(**params: object):
    data = load_spec(REPO / "pipelines" / "digits_cnn.yaml").model_dump(by_alias=True, exclude_none=True)
    data["steps"]["train"]["params"].update({"epochs": 5, "cv_folds": 0, "checkpoint_every": 2,
                                             "early_stopping_patience": None, "device": "cpu", **params})
    data["steps"]["evaluate"]["params"] = {"min_accuracy": 0.85}
    return resolve(parse_spec(data))


@pytest.mark.slow
def test_digits_cnn_spec_crash_resume_and_serving(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = digits_spec()
    clean = run_pipeline(spec, REPO / "pipelines", RunStore(tmp_path / "clean"))
    store = RunStore(tmp_path / "crashy")
    with pytest.raises(Crash):
        run_pipeline(spec, REPO / "pipelines", store, CrashAt(3))
    crashed = store.list()[0]
    assert crashed.record()["status"] == "failed" and not crashed.model_dir.exists()
    resumed = run_pipeline(spec, REPO / "pipelines", store, run_id=crashed.id)  # `mlplat run SPEC --resume RUN`
    train_metrics = json.loads((resumed.run.dir / "steps" / "train" / "metrics.json").read_text())
    assert train_metrics["resumed_from_epoch"] == 3
    assert [r["epoch"] for r in train_metrics["history"]] == [0, 1, 2, 3, 4]
    a, b = load_file(str(clean.model_dir / modeldir.WEIGHTS)), load_file(str(resumed.model_dir / modeldir.WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test"]["accuracy"] == clean.metrics["test"]["accuracy"] > 0.85
    # serving rebuilds the CNN from model.json alone and predicts raw pixel rows
    loaded = modeldir.LoadedModel.load(resumed.model_dir)
    assert loaded.manifest.architecture["type"] == "cnn" and loaded.manifest.image_shape == [1, 8, 8]
    test = Splits.load(resumed.run.dir / "steps" / "ingest").test
    proba = loaded.predict_proba(test.features[loaded.feature_names].to_numpy())
    assert proba.shape == (len(test), 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    train_dir = resumed.run.dir / "steps" / "train"
    for name in ("report.html", "training_curves.png", "confusion_matrix.png"):
        assert (train_dir / name).is_file()
    assert train_metrics["compute"]["wall_s"] > 0


@pytest.mark.slow
def test_digits_cnn_spec_with_cv_band_recorded_in_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = run_pipeline(digits_spec(epochs=3, cv_folds=3), REPO / "pipelines", RunStore(tmp_path))
    cv = modeldir.ModelDir(result.model_dir).read().cv
    assert cv is not None and cv.folds == 3 and len(cv.per_fold) == 3
    assert 0.5 < cv.bands["val_accuracy"].mean <= 1 and cv.bands["val_accuracy"].std >= 0
    assert "gap_accuracy" in cv.bands


def write_bar_images(path: Path, n: int = 300, seed: int = 0) -> None:
    """2-channel 6x6 images: a horizontal bar, a vertical bar or a diagonal (3 classes), plus noise."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.normal(scale=0.3, size=(n, 2, 6, 6)).astype(np.float32)
    for i, label in enumerate(labels):
        pos = rng.integers(0, 6)
        if label == 0:
            images[i, :, pos, :] += 1.5
        elif label == 1:
            images[i, :, :, pos] += 1.5
        else:
            images[i, :, np.arange(6), np.arange(6)] += 1.5
    save_file({"images": images, "labels": labels.astype(np.int64)}, str(path))


def test_cnn_trains_on_an_image_tensor_file(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_bar_images(tmp_path / "bars.safetensors")
    spec = resolve(parse_spec({
        "name": "bars", "seed": 1,
        "dataset": {"source": "bars.safetensors", "validation": 0.2, "test": 0.2},
        "steps": {"train": {"plugin": "cnn", "params": {"channels": [8], "hidden": 16, "epochs": 8, "lr": 0.01,
                                                        "checkpoint_every": 0, "device": "cpu"}},
                  "evaluate": {"params": {"min_accuracy": 0.8}}},
    }))
    result = run_pipeline(spec, tmp_path, RunStore(tmp_path / "runs"))
    manifest = modeldir.ModelDir(result.model_dir).read()
    assert manifest.image_shape == [2, 6, 6] and manifest.architecture["image_shape"] == [2, 6, 6]
    assert len(manifest.features) == 72 and manifest.classes == ["0", "1", "2"]
    assert result.metrics["test"]["accuracy"] > 0.8


def test_tensor_file_without_labels_is_refused(tmp_path: Path) -> None:
    from mlplat.data import load_source
    from mlplat.errors import UsageError
    from safetensors.numpy import save_file

    save_file({"images": np.zeros((4, 3, 3), np.float32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UsageError, match="needs tensors 'images'.*'labels'"):
        load_source("bad.safetensors", None, None, tmp_path)
