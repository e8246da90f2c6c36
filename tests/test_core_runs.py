"""The run store: atomic publishing and a `latest` that only ever points at a good model."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TINY_SPEC
from mlplat.data import Splits, load_source, split_frame
from mlplat.errors import GateFailed, MlplatError, UsageError
from mlplat.runner import run_pipeline
from mlplat.runs import HEARTBEAT, HEARTBEAT_STALE_S, RunStore
from mlplat.spec import parse_spec, resolve


def tiny_spec(**train_params: object):
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["train"]["params"].update(train_params)
    return resolve(parse_spec(data))


def test_published_model_is_safetensors_plus_json_and_reloads(trained_run) -> None:
    from mlplat.modeldir import LoadedModel
    from safetensors.torch import load_file

    files = sorted(p.name for p in trained_run.model_dir.iterdir())
    assert {"model.json", "weights.safetensors", "reference.parquet", "schema.json"} <= set(files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".joblib"))]
    manifest = json.loads((trained_run.model_dir / "model.json").read_text())
    assert manifest["classes"] == ["benign", "malignant"]
    assert len(manifest["features"]) == 30 and len(manifest["preprocessing"]["mean"]) == 30
    assert set(load_file(str(trained_run.model_dir / "weights.safetensors"))) == \
        set(LoadedModel.load(trained_run.model_dir).network.state_dict())
    # the reloaded model reproduces the evaluation metrics
    splits = Splits.load(trained_run.run.dir / "steps" / "ingest")
    model = LoadedModel.load(trained_run.model_dir)
    accuracy = float((model.predict_proba(splits.test.features.to_numpy()).argmax(1) == splits.test.labels).mean())
    assert accuracy == pytest.approx(trained_run.metrics["test"]["accuracy"])
    assert os.readlink(trained_run.run.dir.parent / "latest") == trained_run.run.id


def test_failed_gate_publishes_nothing_and_keeps_latest(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    good = run_pipeline(tiny_spec(), REPO, store)
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["evaluate"] = {"params": {"min_accuracy": 1.0, "min_roc_auc": 1.0}}
    data["steps"]["train"]["params"]["epochs"] = 1
    with pytest.raises(GateFailed, match="evaluation gate failed"):
        run_pipeline(resolve(parse_spec(data)), REPO, store)
    failed = [r for r in store.list() if r.id != good.run.id][0]
    assert failed.record()["status"] == "failed"
    assert not failed.model_dir.exists()
    assert store.latest_id() == good.run.id


def test_interrupted_publish_keeps_previous_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path)
    good = run_pipeline(tiny_spec(), REPO, store)
    real_copytree = shutil.copytree

    def crash_midway(src, dst, *args, **kwargs):
        real_copytree(src, dst, *args, **kwargs)
        (Path(dst) / "weights.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("mlplat.runs.shutil.copytree", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_spec(), REPO, store)
    interrupted = [r for r in store.list() if r.id != good.run.id][0]
    assert not interrupted.model_dir.exists()
    assert not list(interrupted.dir.glob(".*.tmp-*"))  # the half copy is removed, not left behind
    assert store.latest_id() == good.run.id
    assert (store.get("latest").model_dir / "weights.safetensors").stat().st_size > 100


@pytest.mark.parametrize("bad", ["../x", "..", "/abs", "a/b", "", "x" * 200, "-lead"])
def test_run_ids_cannot_escape(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError):
        RunStore(tmp_path).get(bad)


def test_latest_without_any_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no published model yet"):
        RunStore(tmp_path).get("latest")


def test_splits_are_seeded_stratified_and_disjoint() -> None:
    frame, label = load_source("sklearn:wine", None, None, REPO)
    a = split_frame(frame, label, "w", 0.2, 0.2, seed=1)
    b = split_frame(frame, label, "w", 0.2, 0.2, seed=1)
    c = split_frame(frame, label, "w", 0.2, 0.2, seed=2)
    assert np.array_equal(a.test.row_ids, b.test.row_ids) and not np.array_equal(a.test.row_ids, c.test.row_ids)
    ids = [set(t.row_ids) for t in (a.train, a.validation, a.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == len(frame)
    overall = np.bincount(a.train.labels) / len(a.train)
    for table in (a.validation, a.test):
        assert np.abs(np.bincount(table.labels, minlength=3) / len(table) - overall).max() < 0.06


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_sources(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=100), "x2": rng.normal(size=100), "label": ["a", "b"] * 50})
    path = tmp_path / f"d{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    loaded, label = load_source(path.name, "label", None, tmp_path)
    splits = split_frame(loaded, label, "d", 0.2, 0.2, seed=0)
    assert splits.info.classes == ["a", "b"] and splits.info.feature_names == ["x1", "x2"]
    splits.save(tmp_path / "out")
    again = Splits.load(tmp_path / "out")
    assert again.info == splits.info and np.array_equal(again.train.row_ids, splits.train.row_ids)


def test_plugin_log_lines_reach_the_run_log(tmp_path: Path) -> None:
    """A plugin's context.log line (SMOTE reports what it added) lands in runs/<id>/run.log."""
    from mlplat.runner import RUN_LOG

    spec = resolve(parse_spec({**TINY_SPEC, "steps": {**TINY_SPEC["steps"], "augment": [{"plugin": "smote"}]}}))
    result = run_pipeline(spec, tmp_path, RunStore(tmp_path / "runs"))
    log = (result.run.dir / RUN_LOG).read_text()
    assert "mlplat.step.augment.0: SMOTE: added" in log, log


def _cli(*args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO / "plugins")])}
    command = [sys.executable, "-m", "mlplat", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _write_spec(path: Path, **train_params: object) -> Path:
    from mlplat.spec import to_yaml

    path.write_text(to_yaml(tiny_spec(**train_params)))
    return path


def test_resume_of_a_finished_run_is_refused_and_leaves_its_status_alone(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    done = run_pipeline(tiny_spec(), REPO, store)
    record = (done.run.dir / "run.json").read_bytes()
    with pytest.raises(UsageError, match=f"run {done.run.id} already finished .status: succeeded; its model is"):
        run_pipeline(tiny_spec(), REPO, store, run_id=done.run.id)
    cli = _cli("run", str(_write_spec(tmp_path / "spec.yaml")), "--runs-dir", str(store.root), "--resume", done.run.id)
    assert cli.returncode == 2, cli.stderr
    assert "already finished" in cli.stderr and "latest points at it" in cli.stderr and "Traceback" not in cli.stderr
    assert (done.run.dir / "run.json").read_bytes() == record  # status, error, times: untouched
    assert store.latest_id() == done.run.id and done.run.status() == "succeeded"
    assert not list(done.run.dir.glob(".*.tmp-*"))


def test_a_killed_run_shows_interrupted_and_resumes_without_leftovers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    spec = _write_spec(tmp_path / "spec.yaml", epochs=5000, checkpoint_every=1)
    child = _cli("run", str(spec), "--runs-dir", str(runs), wait=False)
    assert isinstance(child, subprocess.Popen)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/steps/train/checkpoints/*")) and time.monotonic() < deadline:
        assert child.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    run = RunStore(runs).list()[0]
    assert run.status() == "running" and run.record()["pid"] == child.pid
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert run.record()["status"] == "running"  # what the killed process left on disk
    assert run.status() == "interrupted"
    listing = _cli("runs", "list", "--runs-dir", str(runs))
    assert listing.returncode == 0 and "interrupted" in listing.stdout, listing.stdout
    # a crash mid-publish leaves these: a resume removes them before it starts
    (run.dir / ".model.tmp-dead").mkdir()
    (run.dir / ".model.tmp-dead" / "weights.safetensors").write_bytes(b"half")
    (run.dir / ".run.json.tmp-dead").write_text("{")
    resumed = run_pipeline(tiny_spec(), REPO, RunStore(runs), run_id=run.id)
    assert resumed.run.status() == "succeeded" and resumed.run.record()["pid"] == os.getpid()
    assert not list(run.dir.glob(".*.tmp-*"))


def test_a_run_on_another_host_is_interrupted_when_its_heartbeat_is_stale(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create("remote")
    run.update(host="another-node", pid=1)
    assert run.status() == "running"  # a fresh heartbeat: alive, wherever it runs
    old = time.time() - HEARTBEAT_STALE_S - 1
    os.utime(run.dir / HEARTBEAT, (old, old))
    assert run.status() == "interrupted"
    with pytest.raises(UsageError, match="still running"):
        RunStore(tmp_path).check_resumable(RunStore(tmp_path).create("here"))


def test_a_full_disk_fails_the_run_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC injected at the write layer: from the model manifest's write on, no temporary file can be written."""
    store = RunStore(tmp_path / "runs")
    good = run_pipeline(tiny_spec(), REPO, store)
    from mlplat import modeldir, runs

    full = {"on": False}
    real_write = runs.write_text_atomic

    def no_space(path: Path, text: str) -> None:
        if full["on"] or path.name == "model.json":
            full["on"] = True
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, text)

    monkeypatch.setattr(runs, "write_text_atomic", no_space)
    monkeypatch.setattr(modeldir, "_write_atomic", no_space)
    with pytest.raises(MlplatError) as failed:
        run_pipeline(tiny_spec(), REPO, store)
    assert full["on"] and not isinstance(failed.value, OSError)
    assert "No space left on device" in str(failed.value) and "model.json" in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__  # no chained tracebacks
    run = [r for r in store.list() if r.id != good.run.id][0]
    record = run.record()
    assert record["status"] == "failed" and run.status() == "failed"
    assert "\n" not in record["error"] and "OSError" in record["error"] and "No space left" in record["error"]
    assert not list(run.dir.glob(".*.tmp-*")) and not run.model_dir.exists()
    assert store.latest_id() == good.run.id
