"""gs:// end to end on gcp-storage-emulator (127.0.0.1): dataset sources and their fingerprints, an
image folder, and a model store whose versions KServe's storage code downloads and mlplat serves."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gcs_server import gcs_emulator
from mlplat.errors import UsageError
from mlplat.modeldir import LoadedModel, resolve_model
from mlplat.modelstore import ModelStore, model_uri
from mlplat.sources import fetch, filesystem, fingerprint
from s3_server import mlplat
from test_data_remote import breast_cancer, write_spec

BUCKET = "data"


@pytest.fixture(scope="module")
def gcs() -> Iterator[Any]:
    with gcs_emulator(BUCKET, "models") as client:
        yield client


def put(gcs: Any, key: str, data: bytes, bucket: str = BUCKET) -> Any:
    blob = gcs.bucket(bucket).blob(key)
    blob.upload_from_string(data)
    return gcs.bucket(bucket).get_blob(key)


def test_mlplat_run_reads_gs_and_records_generations(gcs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, test = breast_cancer(slice(0, 400)), breast_cancer(slice(400, 569))
    blobs = {"source": put(gcs, "bc/train.csv", train.to_csv(index=False).encode()),
             "test_source": put(gcs, "bc/test.csv", test.to_csv(index=False).encode())}
    spec = write_spec(tmp_path / "spec.yaml", {"source": f"gs://{BUCKET}/bc/train.csv", "test_source": f"gs://{BUCKET}/bc/test.csv"})
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 0, capsys.readouterr()
    record = json.loads(((tmp_path / "runs" / "latest").resolve() / "run.json").read_text())
    for field, blob in blobs.items():
        assert record["data"][field] == {"uri": f"gs://{BUCKET}/{blob.name}", "kind": "version",
                                         "value": str(blob.generation), "size": blob.size}
    metrics = json.loads(((tmp_path / "runs" / "latest").resolve() / "steps" / "evaluate" / "metrics.json").read_text())
    assert metrics["test"]["n"] == len(test)
    assert metrics["test"]["accuracy"] > 0.7


def test_missing_object_and_bucket_exit_2_naming_the_uri(gcs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for uri in (f"gs://{BUCKET}/nowhere/train.csv", "gs://no-such-bucket/train.csv"):
        spec = write_spec(tmp_path / "spec.yaml", {"source": uri})
        assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 2
        assert f"no such object: {uri}" in capsys.readouterr().err


def test_rewritten_object_changes_the_fingerprint(gcs: Any) -> None:
    first_blob = put(gcs, "edit.csv", b"a,target\n1,0\n2,1\n")
    first = fetch(f"gs://{BUCKET}/edit.csv", Path("."))
    put(gcs, "edit.csv", b"a,target\n1,1\n2,0\n")
    second = fetch(f"gs://{BUCKET}/edit.csv", Path("."))
    assert first.content == b"a,target\n1,0\n2,1\n" and second.content == b"a,target\n1,1\n2,0\n"
    assert first.fingerprint.value == str(first_blob.generation) != second.fingerprint.value
    assert fingerprint(f"gs://{BUCKET}/edit.csv", Path(".")) == second.fingerprint  # metadata alone agrees


def test_filesystem_follows_fsspec_semantics(gcs: Any) -> None:
    put(gcs, "tree/a/1.txt", b"0123456789")
    put(gcs, "tree/a/deep/2.txt", b"xy")
    put(gcs, "tree/b.txt", b"b")
    fs, root = filesystem(f"gs://{BUCKET}/tree")
    assert root == f"{BUCKET}/tree"
    assert fs.cat_file(f"{root}/a/1.txt", start=2, end=5) == b"234"  # fsspec's end is exclusive
    assert fs.cat_file(f"{root}/a/1.txt", start=7) == b"789"
    assert sorted(fs.find(root)) == [f"{root}/a/1.txt", f"{root}/a/deep/2.txt", f"{root}/b.txt"]
    assert fs.ls(root, detail=False) == [f"{root}/b.txt", f"{root}/a"]
    assert fs.info(f"{root}/a")["type"] == "directory" and fs.info(f"{root}/b.txt")["size"] == 1
    assert fs.isdir(root) and fs.isfile(f"{root}/b.txt") and not fs.exists(f"{root}/c")
    with fs.open(f"gs://{root}/a/deep/2.txt", "rb") as handle:
        assert handle.read() == b"xy"
    fs.pipe_file(f"{root}/new.txt", b"new")
    assert gcs.bucket(BUCKET).blob("tree/new.txt").download_as_bytes() == b"new"
    fs.rm_file(f"{root}/new.txt")
    assert not fs.exists(f"{root}/new.txt")
    assert fs.find(f"{root}/missing") == [] and fs.find(f"{root}/b.txt") == [f"{root}/b.txt"]
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{root}/missing.txt")
    with pytest.raises(NotImplementedError, match="reading only"):
        fs.open(f"{root}/w.txt", "wb")


def test_image_folder_from_gs_and_its_listing_fingerprint(gcs: Any, tmp_path: Path) -> None:
    from mlplat.datasets.shapes import write_shapes
    from mlplat.image_sources import listing_fingerprint, read_images
    from mlplat.images import IMAGE_COLUMN, read_bytes

    files = write_shapes(tmp_path / "data", per_class=3, classes=("circle", "square"))
    for f in files:
        put(gcs, f"set/{f.parent.name}/{f.name}", f.read_bytes())
    frame, _, found = read_images(f"gs://{BUCKET}/set", None, "path", tmp_path)
    assert len(frame) == 6 and frame[IMAGE_COLUMN].str.startswith(f"gs://{BUCKET}/set/").all()
    assert sorted(set(frame["label"])) == ["circle", "square"]
    assert read_bytes(frame[IMAGE_COLUMN][0]) == files[0].read_bytes()
    put(gcs, f"set/circle/{files[0].name}", files[0].read_bytes())  # same bytes, a new generation
    assert listing_fingerprint(f"gs://{BUCKET}/set", None, "path", tmp_path).value != found.value
    with pytest.raises(UsageError, match="no images"):
        read_images(f"gs://{BUCKET}/nothing-here", None, "path", tmp_path)


def test_image_manifest_from_gs(gcs: Any, tmp_path: Path) -> None:
    from test_images_data import check_remote_manifest

    check_remote_manifest(lambda key, data: put(gcs, key, data), f"gs://{BUCKET}", tmp_path)


def test_model_store_on_gs_publishes_downloads_and_serves(gcs: Any, trained_model_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from mlplat.serving.predictor import MlplatModel

    monkeypatch.setenv("MLPLAT_MODEL_CACHE", str(tmp_path / "cache"))
    store = ModelStore("gs://models/bc")
    assert store.latest() is None
    uri = store.publish(trained_model_dir, "run-1")
    assert uri == "gs://models/bc/models/run-1/" and model_uri(store.uri) == uri
    assert json.loads(gcs.bucket("models").blob("bc/latest").download_as_bytes()) == {"version": "run-1", "uri": uri}
    with pytest.raises(UsageError, match="never rewritten"):
        store.publish(trained_model_dir, "run-1")
    local = resolve_model(store.uri, None)  # KServe's Storage.download, on the same emulator
    assert local.path.is_relative_to(tmp_path / "cache")
    original = LoadedModel.load(trained_model_dir)
    served = MlplatModel(local.path)
    assert served.load()
    rows = original.reference()[original.feature_names].iloc[:5]
    response = asyncio.run(served({"instances": rows.to_dict(orient="records")}))
    body = response[0] if isinstance(response, tuple) else response
    expected = [original.class_names[i] for i in original.predict_proba(rows.to_numpy()).argmax(1)]
    assert [p if isinstance(p, str) else p["class"] for p in body["predictions"]] == expected
