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


@pytest.mark.slow
def test_the_kfp_publish_component_publishes_to_the_store(s3: object, tmp_path: Path, cache: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """kfp.local runs the compiled publish task, which uploads to the S3 server as a cluster run would; a run whose
    gate fails never reaches the task, so `latest` stays."""
    from mlplat.kfp.local import KFP_ROOT

    spec = {"name": "kfp-stored", "seed": 1, "dataset": {"source": "sklearn:breast_cancer"},
            "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 2, "early_stopping_patience": None}}}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec))
    runs, uri = tmp_path / "runs", f"s3://{BUCKET}/kfp-store"
    assert mlplat("run", str(tmp_path / "ok.yaml"), "--runner", "kfp-local", "--runs-dir", str(runs),
                  "--publish-to", uri) == 0, capsys.readouterr()
    run_id = (runs / "latest").readlink().name
    version = f"{uri}/models/{run_id}/"
    assert json.loads((runs / run_id / "run.json").read_text())["published_uri"] == version == model_uri(uri)
    assert f"store:   {version}" in capsys.readouterr().out
    local = sorted(p.relative_to(runs / run_id / "model").as_posix() for p in (runs / run_id / "model").rglob("*") if p.is_file())
    assert keys(s3, f"kfp-store/models/{run_id}/") == [f"kfp-store/models/{run_id}/{name}" for name in local]
    [output] = (runs / run_id / KFP_ROOT).glob("*/publish/executor_output.json")
    published = json.loads(output.read_text())["artifacts"]["published"]["artifacts"][0]["metadata"]
    assert published["model_store_uri"] == version  # what the Kubeflow UI shows for the published model
    assert resolve_model(uri, None).read().name == "kfp-stored"
    failing = {**spec, "steps": {**spec["steps"], "evaluate": {"params": {"min_accuracy": 1.0, "min_f1": 1.0}}}}
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(failing))
    assert mlplat("run", str(tmp_path / "gate.yaml"), "--runner", "kfp-local", "--runs-dir", str(runs),
                  "--publish-to", uri) == 1
    assert ModelStore(uri).latest() == {"version": run_id, "uri": version}
    assert {k.split("/")[2] for k in keys(s3, "kfp-store/models/")} == {run_id}


def test_deploy_emits_a_monitor_that_reads_the_same_store_uri_and_it_runs(s3: object, trained_model_dir: Path,
                                                                          tmp_path: Path, cache: Path) -> None:
    """`mlplat deploy s3://...`: the monitor Deployment gets the InferenceService's storageUri and the credentials
    of the same Secret; its own command line, run here against the S3 server, downloads the model with KServe's
    storage code and serves."""
    import os
    import subprocess
    import time

    import httpx
    from crd_schemas import documents, problems
    from mlplat.k8s import monitor as k8s_monitor
    from serving_server import free_port

    store = ModelStore(f"s3://{BUCKET}/deployed")
    version = store.publish(trained_model_dir, "v1")
    out = tmp_path / "deploy"
    assert mlplat("deploy", store.uri, "-o", str(out), "--storage-secret", "s3-creds", "--service-account", "models-sa") == 0
    isvc = yaml.safe_load((out / "inferenceservice.yaml").read_text())
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents((out / "monitor.yaml").read_text())}
    name = isvc["metadata"]["name"]
    assert [problems(d) for d in docs.values()] == [[]] * 5
    assert isvc["spec"]["predictor"]["logger"]["url"] == k8s_monitor.events_url(name)
    assert isvc["spec"]["predictor"]["serviceAccountName"] == isvc["spec"]["explainer"]["serviceAccountName"] == "models-sa"
    [container] = docs[("Deployment", f"{name}-monitor")]["spec"]["template"]["spec"]["containers"]
    predictor_env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    assert container["args"][:2] == ["monitor", predictor_env["STORAGE_URI"]] and predictor_env["STORAGE_URI"] == version
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secret_refs == {"AWS_ACCESS_KEY_ID": "s3-creds", "AWS_SECRET_ACCESS_KEY": "s3-creds", "AWS_ENDPOINT_URL": "s3-creds"}
    assert (out / "kustomization.yaml").read_text().endswith("  - monitor.yaml\n")

    # the container's command line here: loopback for 0.0.0.0, free ports, the pod's paths under tmp_path;
    # the Secret's keys are in this process's env (moto_bucket set them), as the kubelet would set them
    ports = {"8090": str(free_port()), "8091": str(free_port())}
    (tmp_path / "token").write_text("t" * 32)
    swap = {"0.0.0.0": "127.0.0.1", **ports, k8s_monitor.STATE_DIR: str(tmp_path / "state"),
            f"{k8s_monitor.TOKEN_DIR}/token": str(tmp_path / "token")}
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e},
           "MLPLAT_MODEL_CACHE": str(tmp_path / "models"), "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path)}
    log = (tmp_path / "monitor.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlplat", *[swap.get(a, a) for a in container["args"]]], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "monitor.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{ports['8090']}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        model_name = LoadedModel.load(trained_model_dir).name
        metrics = httpx.get(f"http://127.0.0.1:{ports['8090']}/metrics", timeout=5).text
        assert f'model="{model_name}"' in metrics
        downloaded = [p.parent for p in (tmp_path / "models").rglob("model.json")]
        assert len(downloaded) == 1  # KServe's storage code put the version in the pod's cache (the emptyDir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
