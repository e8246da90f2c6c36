"""The model store by URI on moto's S3 server (127.0.0.1) and on local/pvc paths: atomic publish, the
`latest` pointer, failures that leave it alone, downloads through KServe's storage code, serving, deploy."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from mlplat.errors import ModelDirError
from mlplat.modeldir import LoadedModel, resolve_model
from mlplat.modelstore import ModelStore, model_uri
from s3_server import mlplat, moto_bucket

BUCKET = "models"



@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    with moto_bucket(BUCKET) as client:
        yield client


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPLAT_MODEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def keys(s3: object, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_publish_points_latest_at_the_new_version_and_kserve_downloads_it(s3: object, trained_model_dir: Path,
                                                                         cache: Path) -> None:
    store = ModelStore(f"s3://{BUCKET}/bc")
    assert store.latest() is None
    first = store.publish(trained_model_dir, "run-1")
    assert first == f"s3://{BUCKET}/bc/models/run-1/"
    published = sorted(p.relative_to(trained_model_dir).as_posix() for p in trained_model_dir.rglob("*") if p.is_file())
    assert keys(s3, "bc/models/run-1/") == [f"bc/models/run-1/{name}" for name in published]
    assert json.loads(s3.get_object(Bucket=BUCKET, Key="bc/latest")["Body"].read()) == {"version": "run-1", "uri": first}
    store.publish(trained_model_dir, "run-10")  # a version whose name extends another's: prefixes must not mix
    assert model_uri(store.uri) == f"s3://{BUCKET}/bc/models/run-10/"
    for ref, version in ((store.uri, "run-10"), (first, "run-1")):
        local = resolve_model(ref, None)
        assert local.path.is_relative_to(cache)
        assert sorted(p.relative_to(local.path).as_posix() for p in local.path.rglob("*") if p.is_file()) == published
        assert local.read().model_dump() == LoadedModel.load(trained_model_dir).manifest.model_dump(), version
    with pytest.raises(Exception, match="never rewritten"):
        store.publish(trained_model_dir, "run-1")


def test_downloaded_model_serves_like_the_original(s3: object, trained_model_dir: Path, cache: Path) -> None:
    from mlplat.serving.predictor import MlplatModel

    store = ModelStore(f"s3://{BUCKET}/serve")
    store.publish(trained_model_dir, "v1")
    served = MlplatModel(resolve_model(store.uri, None).path)
    assert served.load()
    original = LoadedModel.load(trained_model_dir)
    reference = original.reference()[original.feature_names].iloc[:5]
    response = asyncio.run(served({"instances": reference.to_dict(orient="records")}))
    expected = original.predict_proba(reference.to_numpy()).argmax(1)
    assert [p if isinstance(p, str) else p["class"] for p in _predictions(response)] == \
        [original.class_names[i] for i in expected]


def _predictions(response: object) -> list:
    body = response[0] if isinstance(response, tuple) else response
    return body["predictions"]


def test_failed_upload_leaves_latest_alone(s3: object, trained_model_dir: Path, cache: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    store = ModelStore(f"s3://{BUCKET}/fail")
    good = store.publish(trained_model_dir, "good")
    real_put, calls = s3fs.S3FileSystem.put_file, []

    def put_then_break(self: object, lpath: str, rpath: str, *args: object, **kwargs: object) -> object:
        calls.append(rpath)
        if len(calls) == 2:  # the connection drops in the middle of the upload
            raise ConnectionError("connection reset")
        return real_put(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "put_file", put_then_break)
    with pytest.raises(ConnectionError):
        store.publish(trained_model_dir, "broken")
    monkeypatch.undo()
    assert store.latest() == {"version": "good", "uri": good}
    assert keys(s3, "fail/models/broken/") and "fail/models/broken/model.json" not in keys(s3, "fail/models/broken/")
    with pytest.raises(ModelDirError, match="no model.json"):
        resolve_model(f"s3://{BUCKET}/fail/models/broken/", None)


def test_mlplat_run_publishes_to_the_store_and_a_failed_gate_does_not(s3: object, tmp_path: Path, cache: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = {"name": "stored", "seed": 1, "dataset": {"source": "sklearn:breast_cancer"},
            "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 3, "early_stopping_patience": None}}}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec))
    runs, uri = str(tmp_path / "runs"), f"s3://{BUCKET}/runs-store"
    assert mlplat("run", str(tmp_path / "ok.yaml"), "--runs-dir", runs, "--publish-to", uri) == 0, capsys.readouterr()
    run_id = (tmp_path / "runs" / "latest").readlink().name
    record = json.loads((tmp_path / "runs" / run_id / "run.json").read_text())
    assert record["published_uri"] == f"{uri}/models/{run_id}/" == model_uri(uri)
    failing = {**spec, "steps": {**spec["steps"], "evaluate": {"params": {"min_accuracy": 1.0, "min_f1": 1.0}}},
               "publish": {"uri": uri}}
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(failing))
    assert mlplat("run", str(tmp_path / "gate.yaml"), "--runs-dir", runs) == 1
    assert "evaluation gate failed" in capsys.readouterr().err
    assert ModelStore(uri).latest()["version"] == run_id  # unchanged
    assert [k.split("/")[2] for k in keys(s3, "runs-store/models/")] == [run_id] * len(keys(s3, "runs-store/models/"))
    # deploy the store's model: storageUri is the version, not the moving pointer
    assert mlplat("deploy", uri, "-o", str(tmp_path / "deploy")) == 0
    isvc = yaml.safe_load((tmp_path / "deploy" / "inferenceservice.yaml").read_text())
    container = isvc["spec"]["predictor"]["containers"][0]
    assert {"name": "STORAGE_URI", "value": f"{uri}/models/{run_id}/"} in container["env"]


def test_pvc_and_local_stores_publish_atomically_in_place(trained_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_PVC_ROOT", str(tmp_path / "mnt"))
    store = ModelStore("pvc://mlplat-models/store")
    version = store.publish(trained_model_dir, "r1")
    assert version == "pvc://mlplat-models/store/models/r1/"
    on_disk = tmp_path / "mnt" / "store"
    assert (on_disk / "models" / "r1" / "model.json").is_file()
    assert sorted(p.name for p in (on_disk / "models").iterdir()) == ["r1"]  # no staging directory left behind
    assert resolve_model("pvc://mlplat-models/store", None).path == on_disk / "models" / "r1"
    assert resolve_model(str(on_disk), None).path == on_disk / "models" / "r1"  # the same store as a path
    X = LoadedModel.load(trained_model_dir).reference()[LoadedModel.load(trained_model_dir).feature_names].to_numpy()[:3]
    np.testing.assert_allclose(LoadedModel.load(on_disk / "models" / "r1").predict_proba(X),
                               LoadedModel.load(trained_model_dir).predict_proba(X))
    with pytest.raises(ModelDirError, match="not a model directory"):
        store.publish(tmp_path, "r2")
    assert store.latest()["version"] == "r1"
