"""Image-file datasets: folders, manifests (local, S3; gs:// in test_data_gcs), generated shapes; the spec fields and refusals;
ingest writes references only; the cnn trains from a DataLoader; evaluate, publish and LoadedModel take images."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlplat.data import Splits
from mlplat.datasets.shapes import CLASSES, write_shapes
from mlplat.errors import SpecError, UsageError
from mlplat.image_sources import listing_fingerprint, read_images
from mlplat.images import IMAGE_COLUMN
from mlplat.spec import parse_spec, resolve
from mlplat.steps import data_fingerprint, ingest
from s3_server import mlplat, moto_bucket


def spec_of(dataset: dict, steps: dict | None = None, name: str = "imgs") -> dict:
    return {"name": name, "dataset": dataset, "steps": steps or {"train": {"plugin": "cnn", "params": {"epochs": 1}}}}


def test_generator_is_seeded_and_varied(tmp_path: Path) -> None:
    first = write_shapes(tmp_path / "a", per_class=3, seed=1)
    again = write_shapes(tmp_path / "b", per_class=3, seed=1)
    assert len(first) == 3 * len(CLASSES) >= 30 and len(CLASSES) >= 10
    assert [f.read_bytes() for f in first] == [f.read_bytes() for f in again]
    from PIL import Image

    pixels = [np.asarray(Image.open(f)) for f in first[:3]]
    assert all(p.shape == (32, 32, 3) for p in pixels)
    assert not np.array_equal(pixels[0], pixels[1])  # position, scale, colors and noise vary within a class


def test_folder_ingest_writes_references_stratified(tmp_path: Path) -> None:
    write_shapes(tmp_path / "data", per_class=10, seed=0, classes=("circle", "square", "ring"))
    spec = parse_spec(spec_of({"source": "data", "image": {"size": [16, 16], "channels": 1}}))
    splits = ingest(spec, tmp_path, tmp_path / "out")
    assert list(splits.train.features.columns) == [IMAGE_COLUMN]
    assert splits.info.classes == ["circle", "ring", "square"] and splits.info.image_shape == [1, 16, 16]
    assert all(Path(p).is_file() for p in splits.train.features[IMAGE_COLUMN])
    assert sorted(np.bincount(splits.test.labels).tolist()) == [2, 2, 2]  # stratified
    table = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert table[IMAGE_COLUMN].dtype == object and table.shape[1] == 5  # references, not pixels
    assert Splits.load(tmp_path / "out").info.image == {"size": [16, 16], "channels": 1, "max_pixels": 40_000_000}
    before = data_fingerprint(spec, tmp_path)
    victim = tmp_path / "data" / "ring" / "ring-0000.png"
    victim.write_bytes(victim.read_bytes() + b"\0")  # one changed file changes the listing
    assert data_fingerprint(spec, tmp_path) != before
    with pytest.raises(UsageError, match="images changed"):
        ingest(spec, tmp_path, tmp_path / "again", expected_fingerprint=before)


def test_manifest_with_relative_paths(tmp_path: Path) -> None:
    files = write_shapes(tmp_path / "set" / "img", per_class=4, classes=("cross", "dots"))
    rows = [{"file": str(f.relative_to(tmp_path / "set")), "kind": f.parent.name} for f in files]
    pd.DataFrame(rows).to_csv(tmp_path / "set" / "manifest.csv", index=False)
    frame, label, found = read_images("set/manifest.csv", "kind", "file", tmp_path)
    assert label == "kind" and found.kind == "listing" and found.size == 8
    assert frame[IMAGE_COLUMN].map(lambda p: Path(p).is_file()).all()
    with pytest.raises(UsageError, match="dataset.image.path_column"):
        read_images("set/manifest.csv", "kind", "path", tmp_path)
    (tmp_path / "set" / rows[0]["file"]).unlink()
    with pytest.raises(UsageError, match="manifest row 0"):
        read_images("set/manifest.csv", "kind", "file", tmp_path)


def test_s3_folder_and_etags(tmp_path: Path) -> None:
    files = write_shapes(tmp_path / "data", per_class=3, classes=("circle", "square"))
    with moto_bucket("images") as client:
        for f in files:
            client.put_object(Bucket="images", Key=f"set/{f.parent.name}/{f.name}", Body=f.read_bytes())
        frame, _, found = read_images("s3://images/set", None, "path", tmp_path)
        assert len(frame) == 6 and frame[IMAGE_COLUMN].str.startswith("s3://images/set/").all()
        assert sorted(set(frame["label"])) == ["circle", "square"]
        from mlplat.images import read_bytes

        assert read_bytes(frame[IMAGE_COLUMN][0]) == files[0].read_bytes()
        client.put_object(Bucket="images", Key="set/circle/circle-0000.png", Body=files[1].read_bytes())
        assert listing_fingerprint("s3://images/set", None, "path", tmp_path).value != found.value


def check_remote_manifest(put: Callable[[str, bytes], None], base: str, tmp_path: Path) -> None:
    """A manifest in an object store whose relative paths sit in two directories beside it: read with one
    listing per directory; a rewritten image changes the fingerprint; a missing one is named by its row."""
    files = write_shapes(tmp_path / "data", per_class=2, classes=("circle", "square"))
    for f in files:
        put(f"m/{f.parent.name}/{f.name}", f.read_bytes())
    rows = [{"file": f"{f.parent.name}/{f.name}", "kind": f.parent.name} for f in files]
    put("m/manifest.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    frame, label, found = read_images(f"{base}/m/manifest.csv", "kind", "file", tmp_path)
    assert label == "kind" and list(frame[IMAGE_COLUMN]) == [f"{base}/m/{r['file']}" for r in rows]
    from mlplat.images import read_bytes

    assert read_bytes(frame[IMAGE_COLUMN][1]) == files[1].read_bytes()
    put(f"m/{rows[0]['file']}", files[1].read_bytes())
    assert listing_fingerprint(f"{base}/m/manifest.csv", "kind", "file", tmp_path).value != found.value
    put("m/manifest.csv", pd.DataFrame([*rows, {"file": "circle/gone.png", "kind": "circle"}]).to_csv(index=False).encode())
    with pytest.raises(UsageError, match=f"manifest row {len(rows)}: image not found: {base}/m/circle/gone.png"):
        read_images(f"{base}/m/manifest.csv", "kind", "file", tmp_path)


def test_s3_manifest(tmp_path: Path) -> None:
    with moto_bucket("images") as client:
        check_remote_manifest(lambda key, data: client.put_object(Bucket="images", Key=key, Body=data), "s3://images", tmp_path)


@pytest.mark.parametrize(("dataset", "field"), [
    ({"source": "d", "image": {"size": [0, 32]}}, "dataset.image.size"),
    ({"source": "d", "image": {"channels": 4}}, "dataset.image.channels"),
    ({"source": "d", "image": {"shm_size": "lots"}}, "dataset.image.shm_size"),
    ({"source": "d", "image": {"colour": 1}}, "dataset.image.colour"),
    ({"source": "d", "image": {}, "weight": "w"}, "weight: not supported for image datasets"),
    ({"source": "generated:circles"}, None),  # refused at ingest, not parse: see test_unknown_generator
])
def test_wrong_image_fields_name_the_field(dataset: dict, field: str | None) -> None:
    if field is None:
        assert parse_spec(spec_of(dataset)).dataset.image is not None  # a generated source implies dataset.image
        return
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_of(dataset))
    assert field in str(refused.value)


def test_unknown_generator_and_options_are_refused(tmp_path: Path) -> None:
    for source, message in (("generated:circles", "unknown generated dataset"), ("generated:shapes?n=3", "not 'n'"),
                            ("generated:shapes?per_class=1", "between 2 and")):
        with pytest.raises(UsageError, match=message):
            read_images(source, None, "path", tmp_path, tmp_path)


def test_tabular_plugins_are_refused_for_image_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = {"train": {"plugin": "mlp"}, "explain": {"plugin": "kernel_shap"}}
    with pytest.raises(SpecError) as refused:
        resolve(parse_spec(spec_of({"source": "generated:shapes"}, steps)))
    paths = [p for p, _ in refused.value.problems]
    assert "steps.train.plugin" in paths and "steps.explain.plugin" in paths
    assert "cannot handle an image dataset" in str(refused.value)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_of({"source": "generated:shapes"}, {"train": {"plugin": "cnn"},
                                                                              "drift": {"plugin": "evidently"}})))
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 2
    assert "steps.drift.plugin" in capsys.readouterr().err


def test_cnn_trains_on_image_files_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from mlplat.images import decode
    from mlplat.modeldir import LoadedModel

    spec = tmp_path / "s.yaml"
    train = {"plugin": "cnn", "params": {"epochs": 2, "batch_size": 16, "workers": 1, "channels": [8], "hidden": 16,
                                         "class_weight": "balanced", "checkpoint_every": 1}}
    spec.write_text(yaml.safe_dump(spec_of({"source": "generated:shapes?per_class=8"}, {"train": train}, "shapes")))
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 0, capsys.readouterr()
    model_dir = tmp_path / "runs" / "latest" / "model"
    manifest = json.loads((model_dir / "model.json").read_text())
    assert manifest["features"] == [{"name": IMAGE_COLUMN, "dtype": "image", "kind": "image", "categories": None,
                                     "min": None, "max": None}]
    assert manifest["preprocessing"]["kind"] == "image" and manifest["image_shape"] == [3, 32, 32]
    assert set(manifest["metrics"]["test"]) >= {"accuracy", "f1"}
    reference = pd.read_parquet(model_dir / "reference.parquet")
    assert list(reference.columns) == [IMAGE_COLUMN, "__prediction__"]
    validation = pd.read_parquet(tmp_path / "runs" / "latest" / "steps" / "ingest" / "validation.parquet")
    assert set(reference[IMAGE_COLUMN]) == set(validation[IMAGE_COLUMN])  # the drift reference: held-out images
    loaded = LoadedModel.load(model_dir)
    assert loaded.is_image
    files = sorted((tmp_path / "runs" / "latest" / "steps" / "ingest" / "images").glob("*/*.png"))[:3]
    batch = torch.stack([decode(f.read_bytes(), loaded.image_preprocessing) for f in files])
    probabilities = loaded.predict_proba_images(batch)
    assert probabilities.shape == (3, len(CLASSES)) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.allclose(probabilities, loaded.predict_proba_files([str(f) for f in files]), atol=1e-5)
    with pytest.raises(UsageError, match="takes images"):
        loaded.predict_proba_images(batch[:, :1])


def test_image_manifest_integrity(tmp_path: Path) -> None:
    from mlplat.errors import ModelDirError
    from mlplat.integrity import check_manifest
    from mlplat.manifest import ModelManifest

    base = {"name": "m", "label": "label", "classes": ["a", "b"], "image_shape": [3, 8, 8], "seed": 0, "created_at": 0,
            "features": [{"name": IMAGE_COLUMN, "dtype": "image", "kind": "image"}], "architecture": {},
            "trainer": {"plugin": "cnn"},
            "preprocessing": {"kind": "image", "size": [8, 8], "channels": 3, "mean": [0.5] * 3, "std": [0.2] * 3}}
    check_manifest(ModelManifest.model_validate(base), tmp_path)
    for change, field in (({"image_shape": [1, 8, 8]}, "image_shape"),
                          ({"preprocessing": {**base["preprocessing"], "std": [0.2, 0.0, 0.2]}}, "preprocessing.std"),
                          ({"features": [{"name": "x"}]}, "features")):
        with pytest.raises(ModelDirError, match=field):
            check_manifest(ModelManifest.model_validate({**base, **change}), tmp_path)


def test_make_shapes_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mlplat("datasets", "make-shapes", str(tmp_path / "set"), "--per-class", "2") == 0
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == sorted(CLASSES)
    assert mlplat("datasets", "make-shapes", str(tmp_path / "x"), "--per-class", "0") == 2
    assert "--per-class" in capsys.readouterr().err


def test_mlplat_evaluate_scores_an_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    train = {"plugin": "cnn", "params": {"epochs": 1, "batch_size": 16, "channels": [4], "hidden": 8}}
    spec.write_text(yaml.safe_dump(spec_of({"source": "data", "image": {"size": [16, 16]}}, {"train": train}, "folder")))
    write_shapes(tmp_path / "data", per_class=6, classes=("circle", "dots"))
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 0, capsys.readouterr()
    write_shapes(tmp_path / "fresh", per_class=5, seed=3, classes=("circle", "dots"))
    assert mlplat("evaluate", "latest", str(tmp_path / "fresh"), "--runs-dir", str(tmp_path / "runs"),
                  "--out", str(tmp_path / "ev")) == 0, capsys.readouterr()
    result = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert result["test"]["n"] == 10 and result["data"]["kind"] == "listing"
    write_shapes(tmp_path / "other", per_class=2, classes=("ring",))
    assert mlplat("evaluate", "latest", str(tmp_path / "other"), "--runs-dir", str(tmp_path / "runs"),
                  "--out", str(tmp_path / "ev2")) == 2
    assert "no class of the model" in capsys.readouterr().err
