"""Monitoring core: detector verdicts vs plain Evidently, noise control, window, persistence,
labels and the generalization gap, feedback and KServe CloudEvents routes."""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from mlplat import registry
from mlplat.contracts.drift_detector import PREDICTION_COLUMN
from mlplat.manifest import CVBand, Spread
from mlplat.modeldir import ModelDir, copy_model_dir
from mlplat.monitoring.inputs import InputPolicy
from mlplat.monitoring.monitor import Monitor, MonitorSettings
from mlplat.monitoring.window import Window

TOKEN = "test-token-0123456789abcdef"
POLICY = InputPolicy(token=TOKEN)
AUTH = {"authorization": f"Bearer {TOKEN}"}
COLS = [f"f{i}" for i in range(8)]


def _frames(n_ref: int, n_cur: int, shift: dict[str, float], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(n_ref, len(COLS))), columns=COLS)
    cur = pd.DataFrame(rng.normal(size=(n_cur, len(COLS))), columns=COLS)
    ref["f7"] = rng.integers(0, 3, n_ref).astype(float)  # low-cardinality: Evidently's count-based test
    cur["f7"] = rng.integers(0, 3, n_cur).astype(float)
    for column, delta in shift.items():
        cur[column] += delta
    ref[PREDICTION_COLUMN] = rng.integers(0, 2, n_ref)
    cur[PREDICTION_COLUMN] = (rng.random(n_cur) < 0.8).astype(int)  # prediction mix moved: 80% class 1
    return ref, cur


@pytest.mark.parametrize("n_ref", [1500, 400])  # Wasserstein path and K-S path
def test_detector_library_verdicts_equal_plain_evidently(n_ref: int) -> None:
    from mlplat_plugins.evidently_drift.detector import evidently_report

    ref, cur = _frames(n_ref, 1000, {"f1": 0.5, "f2": 0.3, "f3": 0.02})
    detector = registry.spec_of("drift_detector", "evidently").create({})
    result = detector.detect(detector.fit(ref, None), cur)
    metrics = evidently_report(ref, cur).dict()["metrics"]
    plain = {m["config"]["column"]: m["value"] for m in metrics if "column" in m["config"]}
    ours = {f.feature: f for f in [*result.features, result.prediction]}
    assert set(plain) == set(ours)
    for column, score in plain.items():
        assert ours[column].score == pytest.approx(score, rel=1e-9, abs=1e-12), column
    share = next(m["value"]["share"] for m in metrics if "share" in (m["value"] if isinstance(m["value"], dict) else {}))
    assert result.details["library_share"] == pytest.approx(share)
    assert {f.feature for f in result.features if f.library_drifted} >= {"f1", "f2"}
    assert result.prediction is not None and result.prediction.library_drifted and result.prediction.drifted


def test_noise_control_min_window_importance_and_effect_size() -> None:
    detector = registry.spec_of("drift_detector", "evidently").create({"min_window": 300})
    ref, cur = _frames(3000, 2000, {"f0": 1.0, "f1": 1.0})
    # f0 carries almost all importance, f1 none: only f0 may alert
    state = detector.fit(ref, None, {"f0": 10.0, "f1": 0.0, "f2": 0.5, "f3": 0.5})
    result = detector.detect(state, cur)
    drifted = {f.feature for f in result.features if f.drifted}
    assert drifted == {"f0"} and result.dataset_drift
    assert next(f for f in result.features if f.feature == "f1").library_drifted  # Evidently would have paged
    # too few rows: never a drifted window, whatever the statistic says
    assert not detector.detect(state, cur.head(100)).dataset_drift
    # a tiny shift on a huge window: significant p-value but below the effect-size floor
    big_ref, big = _frames(20000, 50000, {"f0": 0.04}, seed=1)
    tiny = detector.detect(detector.fit(big_ref, None, {"f0": 1.0}), big)
    f0 = next(f for f in tiny.features if f.feature == "f0")
    assert f0.p_value is not None and f0.p_value < 0.01 and not f0.drifted and not tiny.dataset_drift


@pytest.mark.parametrize(("shift", "alerts"), [(0.24, False), (0.30, True)])
def test_benjamini_hochberg_correction_across_features(shift: float, alerts: bool) -> None:
    """One shifted feature among 8 unshifted ones: its raw K-S p-value is under the FDR level in both
    cases, but corrected for 8 tests it stays under only for the larger shift."""
    from scipy import stats

    ref_values, cur_values = (stats.norm.ppf((np.arange(n) + 0.5) / n) for n in (1000, 500))
    reference = pd.DataFrame({c: ref_values for c in COLS})
    current = pd.DataFrame({c: cur_values for c in COLS})
    current["f0"] += shift
    detector = registry.spec_of("drift_detector", "evidently").create({})
    config = detector.config
    f0 = next(f for f in detector.detect(detector.fit(reference, None), current).features if f.feature == "f0")
    raw = stats.ks_2samp(reference["f0"], current["f0"]).pvalue
    # uncorrected, f0 would alert: p-value under the FDR level, effect over its floor, window big enough
    assert raw < config.fdr and f0.effect_size >= config.min_effect_size and len(current) >= config.min_window
    assert stats.ks_2samp(reference["f1"], current["f1"]).pvalue == 1.0  # the 7 others: no shift at all
    assert f0.p_value == pytest.approx(raw * len(COLS))  # BH: the smallest of 8 p-values times 8
    assert f0.drifted is alerts


def test_window_wraps_labels_and_persists(tmp_path: Path) -> None:
    window = Window(["a", "b"], capacity=5)
    for i in range(7):
        window.record(np.full((1, 2), i, np.float32), np.array([i % 2]), [f"r{i}"])
    window.record(np.zeros((2, 2), np.float32), np.array([1, 0]), ["multi"])
    frame = window.frame()
    assert window.size == 5 and window.total == 9
    assert list(frame["__request_id__"]) == ["r4", "r5", "r6", "multi/0", "multi/1"]
    result = window.add_labels(["r5", "r0", "multi/1"], [1, 0, 0])
    assert result.accepted == 2 and result.unknown == ["r0"]  # r0 fell out of the window
    window.save(tmp_path / "w.parquet")
    restored = Window(["a", "b"], capacity=5)
    restored.load(tmp_path / "w.parquet")
    pd.testing.assert_frame_equal(restored.frame(), window.frame())
    assert restored.labels_received == 2
    restored.record(np.ones((1, 2), np.float32), np.array([1]), ["next"])  # continues the ring where it stopped
    assert list(restored.frame()["__request_id__"])[-2:] == ["multi/1", "next"]


def test_record_memory_stays_bounded_under_traffic() -> None:
    """The request path keeps nothing per request beyond the window: once the ring is full, 28k more
    requests leave memory where it was (its cost in µs is measured by benchmarks/monitoring.py)."""
    window = Window([f"f{i}" for i in range(30)], capacity=1000)
    row, pred = np.ones((1, 30), np.float32), np.array([1])
    ids = [f"id-{i}" for i in range(30000)]
    for i in range(2000):
        window.record(row, pred, [ids[i]])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(2000, 30000):
        window.record(row, pred, [ids[i]])
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert window.size == 1000 and window.total == 30000
    assert grown < 100_000, f"{grown} bytes kept by 28k records into a full 1000-row window"


@pytest.fixture()
def model_dir(trained_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    copy_model_dir(trained_model_dir, target)
    return target


def _rows(model_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    reference = pd.read_parquet(model_dir / "reference.parquet")
    return reference, ModelDir(model_dir).read().feature_names


def test_monitor_drift_hysteresis_gap_and_restart(model_dir: Path, tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    reference, features = _rows(model_dir)
    settings = MonitorSettings(capacity=400, consecutive=2, min_new_rows=50, min_labels=30, state_dir=tmp_path / "state")
    monitor = Monitor(model_dir, settings)
    rng = np.random.default_rng(0)
    sample = reference.sample(300, replace=True, random_state=0)
    X, y_pred = sample[features].to_numpy(np.float32), sample[PREDICTION_COLUMN].to_numpy()
    monitor.window.record(X, y_pred, ["in"])
    summary = monitor.evaluate()
    assert summary["rows"] == 300 and not summary["dataset_drift"] and not summary["data_drift_alert"]
    assert (tmp_path / "state" / "drift_report.html").stat().st_size > 10_000  # Evidently's HTML, at the first evaluation

    stds = reference[features].std().to_numpy()
    for i in range(2):  # hysteresis: the flag rises on the 2nd drifted window, not the 1st
        shifted = X[:200] + (1.5 * stds).astype(np.float32)
        monitor.window.record(shifted, y_pred[:200], [f"shift{i}"])
        summary = monitor.evaluate()
        assert summary["dataset_drift"] and summary["data_drift_alert"] == (i == 1)
    assert REGISTRY.get_sample_value("mlplat_data_drift_detected", {"model": monitor.name}) == 1.0

    # labels: 90% wrong -> live accuracy far below the band -> large negative gap
    keys = [f"shift1/{i}" for i in range(200)]
    truth = [int(p) if rng.random() < 0.1 else 1 - int(p) for p in y_pred[:200]]
    assert monitor.feedback(keys, truth).accepted == 200
    summary = monitor.evaluate()
    assert summary["live"]["accuracy"] < 0.3 and summary["generalization_gap"]["accuracy"] < -3
    gap = REGISTRY.get_sample_value("mlplat_generalization_gap", {"model": monitor.name, "metric": "accuracy"})
    assert gap is not None and gap < -3

    monitor.stop()  # persists
    again = Monitor(model_dir, settings)
    assert again.window.total == monitor.window.total and again.window.labels_received == 200
    assert again.data_flag.active
    assert again.evaluate()["labeled_rows"] == 200


def test_gap_uses_cv_band_and_falls_back_without_cv(model_dir: Path) -> None:
    ModelDir(model_dir).update(cv=CVBand(folds=5, bands={"val_accuracy": Spread(mean=0.9, std=0.02)}))
    band = Monitor(model_dir, MonitorSettings()).band("accuracy", 100)
    assert band is not None and (band.mean, band.std, band.source) == (0.9, 0.02, "cv")
    manifest = ModelDir(model_dir).update(cv=None)
    band = Monitor(model_dir, MonitorSettings()).band("accuracy", 100)
    assert manifest.metrics.test is not None
    test_accuracy = manifest.metrics.test["accuracy"]
    assert band is not None and band.source == "metrics" and band.mean == test_accuracy
    assert band.std == pytest.approx(max(math.sqrt(test_accuracy * (1 - test_accuracy) / 100), 0.01))


def test_cv_band_has_macro_f1_and_the_f1_gap_uses_it(model_dir: Path) -> None:
    import torch
    from mlplat.contracts.trainer import ArrayData
    from mlplat.modeldir import LoadedModel
    from mlplat_plugins.torch_trainers import TrainingConfig, cv
    from sklearn.metrics import f1_score

    loaded = LoadedModel.load(model_dir)
    reference, features = _rows(model_dir)
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(3):  # each "fold" scores the trained network on a different noisy labelling
        part = reference.sample(100, random_state=fold)  # the reference: the 114 validation rows
        X = loaded.preprocess(part[features].to_numpy(np.float32))
        y = np.where(rng.random(len(part)) < 0.2, 1 - part[PREDICTION_COLUMN], part[PREDICTION_COLUMN]).astype(np.int64)
        scores = cv.score_fold(loaded.network, ArrayData(X, y), "val", TrainingConfig(), torch.device("cpu"), 2)
        with torch.inference_mode():
            predicted = loaded.network(torch.from_numpy(X)).argmax(1).numpy()
        assert scores["val_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
        rows.append({**scores, **{k.replace("val_", "train_"): v for k, v in scores.items()}})
    band = cv.band(rows)
    f1s = [r["val_f1"] for r in rows]
    assert band["val_f1"] == {"mean": pytest.approx(np.mean(f1s)), "std": pytest.approx(np.std(f1s, ddof=1))}

    ModelDir(model_dir).update(cv=CVBand.from_trainer(band))
    monitor = Monitor(model_dir, MonitorSettings(min_labels=10))
    f1_band = monitor.band("f1", 100)
    assert f1_band is not None and f1_band.source == "cv" and f1_band.mean == pytest.approx(np.mean(f1s))
    sample = reference.head(40)
    monitor.window.record(sample[features].to_numpy(np.float32), sample[PREDICTION_COLUMN].to_numpy(), ["r"])
    labels = [1 - int(p) if i % 4 == 0 else int(p) for i, p in enumerate(sample[PREDICTION_COLUMN])]  # 75 % right
    monitor.feedback([f"r/{i}" for i in range(40)], labels)
    summary = monitor.evaluate()
    assert summary["generalization_gap"]["f1"] == pytest.approx((summary["live"]["f1"] - f1_band.mean) / f1_band.std)


def test_report_is_written_at_the_first_evaluation_without_a_state_dir(model_dir: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from mlplat.monitoring.service import router
    from mlplat.serving.http_errors import add_error_handler

    reference, features = _rows(model_dir)
    monitor = Monitor(model_dir, MonitorSettings(interval_s=3600))  # what `mlplat serve` gets by default
    app = FastAPI()
    add_error_handler(app)  # the router raises mlplat errors; the app's handler gives them their status
    app.include_router(router({monitor.name: monitor}, POLICY))
    client = TestClient(app)
    url = f"/v1/models/{monitor.name}/monitor/report"
    assert client.get(url).status_code == 404  # nothing evaluated yet
    sample = reference.head(250)
    monitor.window.record(sample[features].to_numpy(np.float32), sample[PREDICTION_COLUMN].to_numpy(), ["a"])
    monitor.evaluate()
    report = client.get(url)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html") and len(report.text) > 10_000
    path = monitor.report_path
    assert path is not None
    written = path.stat().st_mtime_ns
    monitor.evaluate()  # the next one waits for report_interval_s (300 s by default)
    assert path.stat().st_mtime_ns == written
    monitor.stop()
    assert not path.parent.exists()  # the temporary report directory goes with the monitor


def test_a_started_monitor_exports_its_clock_before_any_evaluation(model_dir: Path) -> None:
    from prometheus_client import REGISTRY

    ModelDir(model_dir).update(name="never-evaluates")  # a name no other test's monitor set the gauge for
    monitor = Monitor(model_dir, MonitorSettings(interval_s=3600))
    gauge = "mlplat_monitor_last_evaluation_timestamp_seconds"
    assert REGISTRY.get_sample_value(gauge, {"model": "never-evaluates"}) is None
    started = time.time()
    monitor.start()  # the stale alert's clock runs from here, so a monitor that never evaluates goes stale
    try:
        value = REGISTRY.get_sample_value(gauge, {"model": "never-evaluates"})
        assert value is not None and started <= value <= time.time()
    finally:
        monitor.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_killed_monitor_restarts_with_its_rows_and_labels(model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL, no clean stop: rows and labels reach the state directory within a second of
    arriving (not only at the next evaluation, an hour away here), so a restart resumes with them."""
    import subprocess
    import sys

    reference, features = _rows(model_dir)
    name = ModelDir(model_dir).read().name
    port, state = _free_port(), tmp_path / "state"
    (tmp_path / "token").write_text(TOKEN)
    command = [str(Path(sys.executable).with_name("mlplat")), "monitor", str(model_dir), "--port", str(port),
               "--state-dir", str(state), "--interval", "3600", "--token-file", str(tmp_path / "token")]
    base = f"http://127.0.0.1:{port}"

    def started() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(tmp_path / "monitor.log").open("ab"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "monitor.log").read_text()
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc.kill()
        raise AssertionError("the monitor never became ready")

    proc = started()
    try:
        rows = reference[features].head(4).to_numpy().tolist()
        ids = [f"client/{i}" for i in range(4)]
        headers = {"ce-id": "event", "ce-specversion": "1.0", "ce-source": "kserve", **AUTH}
        for kind, body in (("request", {"instances": rows}), ("response", {"predictions": [0, 1, 1, 0], "request_ids": ids})):
            logged = httpx.post(base, json=body, headers={**headers, "ce-type": f"org.kubeflow.serving.inference.{kind}"})
            assert logged.status_code == 200, logged.text
        feedback = {"ids": ids[:3], "label_indices": [0, 1, 0]}
        assert httpx.post(f"{base}/v1/models/{name}/feedback", json=feedback, headers=AUTH).json()["accepted"] == 3
        saved = state / name / "window.parquet"
        deadline = time.monotonic() + 30
        while not (saved.is_file() and (pd.read_parquet(saved)["__label__"] >= 0).sum() == 3):
            assert time.monotonic() < deadline, "rows and labels never reached the state directory"
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no shutdown hook runs
        proc.wait(timeout=30)
    proc = started()
    try:
        summary = httpx.post(f"{base}/v1/models/{name}/monitor/evaluate", timeout=120, headers=AUTH).json()
        assert summary["rows"] == 4 and summary["labeled_rows"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_service_feedback_and_cloudevents(model_dir: Path) -> None:
    from fastapi.testclient import TestClient
    from mlplat.monitoring.service import create_app

    reference, features = _rows(model_dir)
    monitor = Monitor(model_dir, MonitorSettings(interval_s=3600))
    client = TestClient(create_app({monitor.name: monitor}, POLICY), headers=AUTH)
    rows = reference[features].head(3).to_numpy().tolist()
    # the KServe logger's event id is its own (Ce-Id or a fresh uuid), not the id the client got back
    headers = {"ce-id": "event-1", "ce-specversion": "1.0", "ce-source": "kserve", "ce-inferenceservicename": monitor.name}
    request_type, response_type = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"
    answered = {"predictions": [0, 1, 1], "request_ids": ["client-1/0", "client-1/1", "client-1/2"]}
    response = client.post("/", content=json.dumps(answered), headers={**headers, "ce-type": response_type})
    assert response.status_code == 200 and response.json()["recorded"] == 0  # waits for its request
    response = client.post("/", content=json.dumps({"instances": rows}), headers={**headers, "ce-type": request_type})
    assert response.json() == {"recorded": 3} and monitor.window.total == 3
    ok = client.post(f"/v1/models/{monitor.name}/feedback", json={"request_id": "client-1",
                                                                        "labels": [monitor.classes[i] for i in (0, 1, 0)]})
    assert ok.status_code == 200 and ok.json() == {"accepted": 3, "unknown_ids": []}
    by_event = client.post(f"/v1/models/{monitor.name}/feedback", json={"ids": ["event-1/0"], "label_indices": [0]})
    assert by_event.json() == {"accepted": 0, "unknown_ids": ["event-1/0"]}
    unknown_class = client.post(f"/v1/models/{monitor.name}/feedback", json={"ids": ["client-1/0"], "label_indices": [7]})
    assert unknown_class.status_code == 422 and unknown_class.json() == {
        "error": f"label_indices[0]: '7' is not a class index 0..{len(monitor.classes) - 1} (an integer)"}
    missing = client.post(f"/v1/models/{monitor.name}/feedback", json={"labels": [1]})
    assert missing.status_code == 422 and "request_id" in missing.text
    assert client.post("/v1/models/nope/feedback", json={"request_id": "x", "labels": [1]}).status_code == 404

    def logged(event_id: str, request: object, response: object) -> httpx.Response:
        client.post("/", content=json.dumps(request), headers={**headers, "ce-id": event_id, "ce-type": request_type})
        return client.post("/", content=json.dumps(response), headers={**headers, "ce-id": event_id, "ce-type": response_type})

    # the explainer's synthetic rows (KernelShap coalitions) are answered but never recorded
    from mlplat.monitoring.window import explainer_parameters

    skipped = logged("event-2", {"instances": rows, "parameters": explainer_parameters(TOKEN)}, answered)
    assert skipped.json() == {"recorded": 0, "skipped": "explainer"} and monitor.window.total == 3
    # V2: rows keyed by the response id; a response without ids (another server): by the event id
    v2 = {"inputs": [{"name": "input-0", "shape": [1, len(features)], "datatype": "FP32", "data": rows[0]}]}
    outputs = [{"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.8]},
               {"name": "predicted_class", "shape": [1], "datatype": "BYTES", "data": [monitor.classes[1]]}]
    assert logged("event-3", v2, {"id": "client-2", "model_name": monitor.name, "outputs": outputs}).json() == {"recorded": 1}
    assert logged("event-4", {"instances": rows[:1]}, {"predictions": [1]}).json() == {"recorded": 1}
    both = client.post(f"/v1/models/{monitor.name}/feedback", json={"ids": ["client-2", "event-4"], "label_indices": [1, 1]})
    assert both.json() == {"accepted": 2, "unknown_ids": []}
    assert list(monitor.window.frame()[PREDICTION_COLUMN]) == [0, 1, 1, 1, 1]
    wrong_ids = logged("event-5", {"instances": rows}, {"predictions": [0, 1, 1], "request_ids": ["a", "b"]})
    assert wrong_ids.status_code == 400 and "request_ids" in wrong_ids.json()["error"]

    bad = client.post("/", content=json.dumps({"instances": [[1.0, 2.0]]}),
                      headers={**headers, "ce-id": "req-2", "ce-type": request_type})
    assert bad.status_code == 200  # held until its response arrives; the shape is checked when paired
    paired = client.post("/", content=json.dumps({"predictions": [0]}),
                         headers={**headers, "ce-id": "req-2", "ce-type": response_type})
    assert paired.status_code == 400 and "instances" in paired.json()["error"]
    assert client.post("/", content=b"{}", headers={"ce-id": "x"}).status_code == 400
    metrics = client.get("/metrics").text
    assert f'mlplat_monitor_records_total{{model="{monitor.name}"}} 5.0' in metrics
    assert f'mlplat_monitor_labels_received_total{{model="{monitor.name}"}} 5.0' in metrics


def test_monitor_step_fits_state_with_importance_and_monitor_uses_it(model_dir: Path, tmp_path: Path) -> None:
    from conftest import TINY_SPEC
    from mlplat import steps
    from mlplat.spec import parse_spec, resolve

    features = ModelDir(model_dir).read().feature_names
    ModelDir(model_dir).update(global_importance={features[0]: 1.0})  # as the explain step writes it
    spec = resolve(parse_spec({**TINY_SPEC, "steps": {**TINY_SPEC["steps"], "drift": {"plugin": "evidently",
                                                                                       "params": {"min_window": 50}}}}))
    steps.drift(spec, model_dir, tmp_path / "out")
    state = json.loads((model_dir / "drift_reference.json").read_text())
    assert state["importance"][features[0]] == 1.0 and state["importance"][features[1]] == 0.0
    monitor = Monitor(model_dir, MonitorSettings())
    assert monitor.reference_state["importance"] == state["importance"] and monitor.detector.config.min_window == 50


def test_cli_monitor_rejects_a_non_model_dir(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([str(Path(sys.executable).with_name("mlplat")), "monitor", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a model or run directory" in result.stderr


def test_attach_gives_a_server_recorder_routes_and_hooks(model_dir: Path, tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from mlplat.monitoring import attach

    reference, features = _rows(model_dir)
    recorder, routers, (start, stop), monitor = attach(model_dir, MonitorSettings(interval_s=0.1, min_new_rows=1,
                                                                                  state_dir=tmp_path / "s", inputs=POLICY))
    app = FastAPI()
    for r in routers:
        app.include_router(r)
    start()
    recorder.record(reference[features].head(2).to_numpy(np.float32), np.array([0, 1]), ["a", "b"])
    client = TestClient(app, headers=AUTH)
    labeled = client.post(f"/v1/models/{monitor.name}/feedback", json={"ids": ["a", "b"], "label_indices": [0, 0]})
    assert labeled.json()["accepted"] == 2
    deadline = time.monotonic() + 30
    while client.get(f"/v1/models/{monitor.name}/monitor").json().get("labeled_rows") != 2:
        assert time.monotonic() < deadline, "the background evaluation never ran"
        time.sleep(0.05)
    stop()
    assert (tmp_path / "s" / "window.parquet").is_file()
