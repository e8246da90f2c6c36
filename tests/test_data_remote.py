"""Dataset sources by URI: a full `mlplat run` from s3:// (moto's server on 127.0.0.1, reached through
KServe's env vars), fingerprints, http(s) and local sources, held-out validation/test files."""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from mlplat.errors import UsageError
from mlplat.sources import fetch, s3_options
from s3_server import mlplat, moto_bucket

BUCKET = "data"


def breast_cancer(rows: slice) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return frame[["mean radius", "mean texture", "mean smoothness", "worst area", "target"]].iloc[rows].reset_index(drop=True)



@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    with moto_bucket(BUCKET) as client:
        yield client


def write_spec(path: Path, dataset: dict[str, object], name: str = "remote") -> Path:
    spec = {"name": name, "seed": 3, "dataset": {"label": "target", **dataset},
            "steps": {"train": {"plugin": "mlp", "params": {"hidden": [8], "epochs": 3, "early_stopping_patience": None}}}}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_mlplat_run_reads_s3_and_records_etags(s3: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, test = breast_cancer(slice(0, 400)), breast_cancer(slice(400, 569))
    s3.put_object(Bucket=BUCKET, Key="bc/train.csv", Body=train.to_csv(index=False).encode())
    s3.put_object(Bucket=BUCKET, Key="bc/test.csv", Body=test.to_csv(index=False).encode())
    spec = write_spec(tmp_path / "spec.yaml", {"source": f"s3://{BUCKET}/bc/train.csv", "test_source": f"s3://{BUCKET}/bc/test.csv"})
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 0, capsys.readouterr()
    run_dir = (tmp_path / "runs" / "latest").resolve()
    record = json.loads((run_dir / "run.json").read_text())
    for field, key in (("source", "bc/train.csv"), ("test_source", "bc/test.csv")):
        etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
        assert record["data"][field] == {"uri": f"s3://{BUCKET}/{key}", "kind": "etag", "value": etag,
                                         "size": len(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())}
    metrics = json.loads((run_dir / "steps" / "evaluate" / "metrics.json").read_text())
    assert metrics["test"]["n"] == len(test)  # evaluate scored the held-out file, all of it
    assert metrics["test"]["accuracy"] > 0.7


def test_missing_object_exits_2_naming_the_uri(s3: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "spec.yaml", {"source": f"s3://{BUCKET}/nowhere/train.csv"})
    assert mlplat("run", str(spec), "--runs-dir", str(tmp_path / "runs")) == 2
    assert f"no such object: s3://{BUCKET}/nowhere/train.csv" in capsys.readouterr().err


def test_rewritten_object_changes_the_fingerprint(s3: object) -> None:
    s3.put_object(Bucket=BUCKET, Key="edit.csv", Body=b"a,target\n1,0\n2,1\n")
    first = fetch(f"s3://{BUCKET}/edit.csv", Path("."))
    s3.put_object(Bucket=BUCKET, Key="edit.csv", Body=b"a,target\n1,1\n2,0\n")
    second = fetch(f"s3://{BUCKET}/edit.csv", Path("."))
    assert second.content == b"a,target\n1,1\n2,0\n"
    assert first.fingerprint.kind == second.fingerprint.kind == "etag"
    assert first.fingerprint.value != second.fingerprint.value
    assert second.fingerprint.value == hashlib.md5(second.content).hexdigest()  # S3's ETag of a single-part upload


def test_versioned_bucket_fingerprint_is_the_version_id(s3: object) -> None:
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket="versioned", Key="d.csv", Body=b"a,target\n1,0\n")
    found = fetch("s3://versioned/d.csv", Path(".")).fingerprint
    assert (found.kind, found.value) == ("version", put["VersionId"])


def test_s3_options_follow_kserve_env_vars() -> None:
    base = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert s3_options({**base, "S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"})["client_kwargs"]["endpoint_url"] == "http://minio:9000"
    assert s3_options({**base, "S3_ENDPOINT": "minio:9000"})["client_kwargs"]["endpoint_url"] == "https://minio:9000"
    options = s3_options({**base, "AWS_ENDPOINT_URL": "http://a:1", "S3_ENDPOINT": "b:2", "AWS_DEFAULT_REGION": "eu-west-1",
                          "S3_VERIFY_SSL": "0"})
    assert options == {"client_kwargs": {"endpoint_url": "http://a:1", "region_name": "eu-west-1", "verify": False},
                       "key": "k", "secret": "s"}
    assert s3_options({"awsAnonymousCredential": "true"})["anon"] is True


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


def test_http_source_is_fingerprinted_by_content(http_dir: tuple[str, Path]) -> None:
    from mlplat.data import read_source

    url, root = http_dir
    breast_cancer(slice(0, 50)).to_csv(root / "d.csv", index=False)
    frame, label, found = read_source(f"{url}/d.csv", "target", None, Path("."))
    assert label == "target" and len(frame) == 50
    assert (found.kind, found.value) == ("sha256", hashlib.sha256((root / "d.csv").read_bytes()).hexdigest())
    with pytest.raises(UsageError, match=f"dataset.source: no such object: {url}/missing.csv"):
        read_source(f"{url}/missing.csv", "target", None, Path("."))


def test_local_and_file_uri_sources_agree(tmp_path: Path) -> None:
    breast_cancer(slice(0, 30)).to_csv(tmp_path / "d.csv", index=False)
    relative, uri = fetch("d.csv", tmp_path), fetch((tmp_path / "d.csv").as_uri(), Path("/elsewhere"))
    assert relative.fingerprint.value == uri.fingerprint.value == hashlib.sha256((tmp_path / "d.csv").read_bytes()).hexdigest()
    with pytest.raises(UsageError, match="data file not found"):
        fetch("nope.csv", tmp_path)


def ingest(tmp_path: Path, **dataset: object) -> tuple[object, dict[str, object]]:
    from mlplat import steps
    from mlplat.spec import load_spec

    spec = load_spec(write_spec(tmp_path / "spec.yaml", dataset))
    splits = steps.ingest(spec, tmp_path, tmp_path / "data")
    return splits, steps.read_fingerprints(tmp_path / "data")


def test_held_out_files_are_the_validation_and_test_splits(tmp_path: Path) -> None:
    breast_cancer(slice(0, 300)).to_csv(tmp_path / "train.csv", index=False)
    breast_cancer(slice(300, 420)).to_csv(tmp_path / "val.csv", index=False)
    breast_cancer(slice(420, 569)).to_csv(tmp_path / "test.csv", index=False)
    splits, prints = ingest(tmp_path, source="train.csv", validation_source="val.csv", test_source="test.csv")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (300, 120, 149)
    pd.testing.assert_frame_equal(splits.test.features, breast_cancer(slice(420, 569)).drop(columns="target").astype("float64"))
    assert sorted(prints) == ["source", "test_source", "validation_source"]
    only_test, _ = ingest(tmp_path, source="train.csv", test_source="test.csv", validation=0.25)
    assert (len(only_test.train), len(only_test.validation), len(only_test.test)) == (225, 75, 149)


def test_held_out_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    breast_cancer(slice(0, 300)).to_csv(tmp_path / "train.csv", index=False)
    breast_cancer(slice(300, 400)).drop(columns="mean texture").assign(extra=1).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(UsageError, match=r"dataset.test_source: columns differ from dataset.source "
                                         r"\(missing mean texture; not in dataset.source: extra\)"):
        ingest(tmp_path, source="train.csv", test_source="test.csv")


def test_ingest_cache_key_follows_the_data(s3: object, tmp_path: Path) -> None:
    from mlplat import steps
    from mlplat.kfp import submit
    from mlplat.spec import load_spec, resolve

    s3.put_object(Bucket=BUCKET, Key="key/train.csv", Body=breast_cancer(slice(0, 200)).to_csv(index=False).encode())
    spec = resolve(load_spec(write_spec(tmp_path / "spec.yaml", {"source": f"s3://{BUCKET}/key/train.csv"})))
    before = steps.data_fingerprint(spec, tmp_path)
    assert before == f"source=etag:{s3.head_object(Bucket=BUCKET, Key='key/train.csv')['ETag'].strip(chr(34))}"
    prepared = submit.prepare(spec, tmp_path / "submit")
    assert prepared.arguments == {"data_fingerprint": before}  # a run starts with the data as it is now
    ir = next(yaml.safe_load_all(Path(prepared.pipeline_file).read_text()))  # the IR; then the platform spec
    ingest_inputs = ir["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]
    assert ingest_inputs["data_fingerprint"] == {"componentInputParameter": "data_fingerprint"}  # part of the cache key
    steps.ingest(spec, tmp_path, tmp_path / "data", before)
    s3.put_object(Bucket=BUCKET, Key="key/train.csv", Body=breast_cancer(slice(100, 300)).to_csv(index=False).encode())
    assert steps.data_fingerprint(spec, tmp_path) != before
    with pytest.raises(UsageError, match="the data changed since this run was started"):
        steps.ingest(spec, tmp_path, tmp_path / "data2", before)
