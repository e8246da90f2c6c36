"""The monitor: window + detector + label metrics, evaluated in a background thread.

One `Monitor` per model. The request path only calls `window.record`. Every `interval_s`
the background thread snapshots the window, runs the drift detector plugin against the
reference state fitted at training time, scores the labeled rows against the training CV
band, applies hysteresis, sets the Prometheus gauges, persists the window and, at the first
evaluation and then every `report_interval_s`, writes Evidently's HTML report. With a
`state_dir`, a second thread saves new rows and labels every `persist_interval_s`, so even a
killed process loses at most that much.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplat import modeldir, registry
from mlplat.contracts.drift_detector import PREDICTION_COLUMN, DriftResult
from mlplat.errors import BadFeedback, UsageError
from mlplat.manifest import DriftDetectorRef
from mlplat.monitoring import metrics as m
from mlplat.monitoring.inputs import InputPolicy
from mlplat.monitoring.window import LABEL_COLUMN, FeedbackResult, Window
from mlplat.registry import StageKind

log = logging.getLogger("mlplat.monitoring")
DEFAULT_DETECTOR = "evidently"
DEFAULT_IMAGE_DETECTOR = "image_drift"  # embeddings (MMD), softmax outputs (KS per class), image statistics
WINDOW_FILE, MONITOR_FILE, REPORT_FILE = "window.parquet", "monitor.json", "drift_report.html"
GAP_METRICS = ("accuracy", "f1")
REGRESSION_GAP_METRICS = ("rmse", "mae")  # in the label's units, against the CV band's val_rmse / val_mae


@dataclass
class MonitorSettings:
    capacity: int = 5000  # rows in the window
    interval_s: float = 30.0  # seconds between evaluations
    consecutive: int = 3  # hysteresis: windows in a row that raise (or clear) an alert flag
    min_new_rows: int = 100  # a window counts toward hysteresis only after this many new rows
    min_labels: int = 50  # labeled rows below which live accuracy and the gap are not exported
    gap_std_floor: float = 0.01  # a CV std of ~0 would turn any difference into an infinite gap
    report_interval_s: float = 300.0  # Evidently's HTML report is slow: write it at most this often
    state_dir: Path | None = None  # where window, labels, hysteresis and the report persist; None = memory only
    persist_interval_s: float = 1.0  # with a state_dir: new rows and labels reach disk within this long
    inputs: InputPolicy = field(default_factory=InputPolicy)  # who may send feedback/events/evaluate: closed by default
    min_estimate_rows: int = 100  # rows with probabilities below which the label-free estimate is not exported
    estimate_band_stds: float = 3.0  # the CV band's lower edge for the estimate's gap: mean - this many stds


class Hysteresis:
    """A flag that rises after N positive windows in a row and falls after N negative ones."""

    def __init__(self, n: int, active: bool = False, streak: int = 0) -> None:
        self.n, self.active, self.streak = max(1, n), active, streak

    def update(self, positive: bool) -> bool:
        if positive == self.active:
            self.streak = 0
        else:
            self.streak += 1
            if self.streak >= self.n:
                self.active, self.streak = positive, 0
        return self.active


@dataclass
class Band:
    mean: float
    std: float
    source: str  # "cv" or "metrics"


class Monitor:
    def __init__(self, model_dir: Path, settings: MonitorSettings | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.settings = settings or MonitorSettings()
        # before the reference and the drift detector load: a refusal must not wait on (or race) their libraries
        self._check_state_dir()
        self.manifest = modeldir.ModelDir(self.model_dir).read()
        self.name = self.manifest.name
        self.classes = list(self.manifest.classes)
        self._reference: pd.DataFrame | None = None
        images = self.manifest.preprocessing.kind == "image"
        # an image model's window holds its drift features (mlplat.embeddings), the columns of its reference
        self.feature_names = ([c for c in self.reference().columns if c != PREDICTION_COLUMN] if images
                              else self.manifest.feature_names)
        # a model published without a drift step gets the default detector, fitted at startup
        section = self.manifest.drift_detector or DriftDetectorRef(plugin=DEFAULT_IMAGE_DETECTOR if images else DEFAULT_DETECTOR)
        self.detector = registry.create(StageKind.DRIFT_DETECTOR, section.plugin, section.params, step="monitor")
        self.reference_state = self._reference_state(section.state)
        self.regression = self.manifest.task == "regression"
        self.window = Window(self.feature_names, self.settings.capacity, self.regression,
                             0 if self.regression else len(self.classes))
        self.data_flag = Hysteresis(self.settings.consecutive)
        self.prediction_flag = Hysteresis(self.settings.consecutive)
        self.output_flag = Hysteresis(self.settings.consecutive)  # critical: class probabilities drifted
        self.feature_flags = {f: Hysteresis(self.settings.consecutive) for f in self.feature_names}  # critical, per feature
        self._counted_total = 0  # window.total at the last window that counted toward hysteresis
        self._last_report = -math.inf  # the first evaluation with rows writes a report
        self._report_dir = self.settings.state_dir  # without one: a temporary directory, made at the first report
        self.last: dict[str, Any] = {}
        self.state_error: str | None = None  # the last failed save of the state directory, until one succeeds
        self._restore()
        m.expose_window(self.name, self.window)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._eval_lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self._persisted = self.window.progress  # what the state directory holds

    # ---- setup -----------------------------------------------------------------------------
    def _reference_state(self, state_file: str) -> dict[str, Any]:
        model_dir = modeldir.ModelDir(self.model_dir)
        path = model_dir.file(state_file, "drift_detector.state")  # never a file outside the model directory
        if path.is_file():
            return model_dir.read_state(state_file, "drift_detector.state")
        # model trained without a monitor step: fit the reference summary now (seconds, once)
        log.info("no %s in %s; fitting the drift reference now", state_file, self.model_dir)
        return self.detector.fit(self.reference(), None, self.manifest.global_importance)

    def reference(self) -> pd.DataFrame:
        if self._reference is None:
            if self.manifest.preprocessing.kind == "image":  # embeddings, outputs, statistics of the reference images
                from mlplat.embeddings import drift_reference

                self._reference = drift_reference(modeldir.LoadedModel.load(self.model_dir))
            else:
                self._reference = pd.read_parquet(modeldir.ModelDir(self.model_dir).file(modeldir.REFERENCE, "reference"))
        return self._reference

    def _check_state_dir(self) -> None:
        """Refuse to start on a state directory that cannot be written: every save would fail while the
        server looks healthy."""
        state_dir = self.settings.state_dir
        if state_dir is None:
            return
        probe = state_dir / f".write-test-{threading.get_ident()}"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"--state-dir {state_dir}: the monitor cannot write its state there "
                             f"({exc.strerror or exc}); give a writable directory") from None

    def _restore(self) -> None:
        state_dir = self.settings.state_dir
        if state_dir is None:
            return
        self.window.load(state_dir / WINDOW_FILE)
        saved = state_dir / MONITOR_FILE
        if saved.is_file():
            data = json.loads(saved.read_text())
            self.data_flag = Hysteresis(self.settings.consecutive, **data.get("data_flag", {}))
            self.prediction_flag = Hysteresis(self.settings.consecutive, **data.get("prediction_flag", {}))
            self.output_flag = Hysteresis(self.settings.consecutive, **data.get("output_flag", {}))
            for feature, saved_flag in data.get("feature_flags", {}).items():
                if feature in self.feature_flags:  # the model's features only, whatever the file says
                    self.feature_flags[feature] = Hysteresis(self.settings.consecutive, **saved_flag)
            self._counted_total = int(data.get("counted_total", 0))

    def persist(self, window: bool = True) -> None:
        """Save the alert state and, with `window`, the window. An evaluation changes only the former;
        the persist thread saves new rows and labels. A failed save is counted, kept in `state_error`
        (the monitor service's /healthz reports it) and raised."""
        if self.settings.state_dir is None:
            return
        try:
            self._save(window)
        except Exception as exc:  # a full disk, a read-only mount, a vanished directory
            m.STATE_SAVE_FAILURES.labels(self.name).inc()
            self.state_error = f"saving the monitor state to {self.settings.state_dir} failed: {exc}"
            raise
        self.state_error = None

    def _save(self, window: bool) -> None:
        state_dir = self.settings.state_dir
        assert state_dir is not None
        with self._persist_lock:  # the evaluation and the persist thread both save: one writer at a time
            progress = self.window.progress
            state_dir.mkdir(parents=True, exist_ok=True)
            if window:
                self.window.save(state_dir / WINDOW_FILE)
            flags = {"data_flag": {"active": self.data_flag.active, "streak": self.data_flag.streak},
                     "prediction_flag": {"active": self.prediction_flag.active, "streak": self.prediction_flag.streak},
                     "counted_total": self._counted_total,
                     "output_flag": {"active": self.output_flag.active, "streak": self.output_flag.streak},
                     "feature_flags": {f: {"active": h.active, "streak": h.streak} for f, h in self.feature_flags.items()
                                       if h.active or h.streak}}
            tmp = state_dir / f".{MONITOR_FILE}.tmp"
            tmp.write_text(json.dumps(flags))
            tmp.replace(state_dir / MONITOR_FILE)
            if window:
                self._persisted = progress

    # ---- feedback --------------------------------------------------------------------------
    def target_value(self, label: Any, where: str = "labels") -> float:
        """A regression's delayed label: a finite number."""
        if isinstance(label, bool) or not isinstance(label, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(label)):
            raise BadFeedback(f"{where}: {label!r} is not a finite number (this model is a regression)")
        return float(label)

    def feedback(self, keys: list[str], labels: list[int] | list[float]) -> FeedbackResult:
        """Label recorded rows (`feedback.parse_feedback` reads them from a body): class indices for a
        classifier, finite numbers for a regression."""
        if self.regression:
            return self.window.add_labels(keys, [self.target_value(v, f"labels[{i}]") for i, v in enumerate(labels)])
        for i, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(self.classes):
                raise BadFeedback(f"label_indices[{i}]: {label!r} is not a class index 0..{len(self.classes) - 1}")
        return self.window.add_labels(keys, [int(v) for v in labels])

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, advance: bool = True) -> dict[str, Any]:
        """Score the window now. Only an `advance` evaluation (the background loop's, once per interval)
        moves the alert hysteresis; one a client asks for reports and exports but leaves it alone, so
        calling it often cannot raise (or clear) an alert sooner."""
        with self._eval_lock:
            started = time.perf_counter()
            frame = self.window.frame()
            summary: dict[str, Any] = {"model": self.name, "rows": len(frame), "time": time.time()}
            if len(frame):
                columns = [*self.feature_names, PREDICTION_COLUMN, *self.window.probability_columns]
                result = self.detector.detect(self.reference_state, frame[columns])
                counts = advance and self.window.total - self._counted_total >= self.settings.min_new_rows
                if counts:
                    self._counted_total = self.window.total
                    self.data_flag.update(result.dataset_drift)
                    self.prediction_flag.update(bool(result.prediction and result.prediction.drifted))
                    self._update_critical_flags(result)
                self._export_drift(result)
                summary.update(_drift_summary(result), counted_toward_hysteresis=counts)
            summary.update(self._label_metrics(frame))
            if not self.regression:
                summary["performance"] = self._performance_estimate(frame, summary.get("live", {}), summary["labeled_rows"])
            summary.update(data_drift_alert=self.data_flag.active, prediction_drift_alert=self.prediction_flag.active,
                           **self._export_critical())
            m.DATA_DRIFT_DETECTED.labels(self.name).set(float(self.data_flag.active))
            m.PREDICTION_DRIFT_DETECTED.labels(self.name).set(float(self.prediction_flag.active))
            m.EVALUATION_SECONDS.labels(self.name).set(time.perf_counter() - started)
            m.LAST_EVALUATION.labels(self.name).set(summary["time"])
            self.last = summary
            self._maybe_report(frame)
            return summary

    def _export_drift(self, result: DriftResult) -> None:
        for f in result.features:
            m.FEATURE_DRIFT_SCORE.labels(self.name, f.feature).set(f.score)
            m.FEATURE_DRIFT_EFFECT.labels(self.name, f.feature).set(f.effect_size if f.effect_size is not None else math.nan)
            m.FEATURE_DRIFT_DETECTED.labels(self.name, f.feature).set(float(f.drifted))
        m.DRIFT_SHARE.labels(self.name).set(result.share)
        m.DRIFT_SHARE_WEIGHTED.labels(self.name).set(result.weighted_share if result.weighted_share is not None else result.share)
        if result.prediction is not None:
            m.PREDICTION_DRIFT_SCORE.labels(self.name).set(result.prediction.score)
            effect = result.prediction.effect_size
            m.PREDICTION_DRIFT_EFFECT.labels(self.name).set(effect if effect is not None else math.nan)

    def _update_critical_flags(self, result: DriftResult) -> None:
        """Hysteresis of the critical severity: per top-importance feature, and of the output distribution."""
        critical = {f.feature for f in result.features if f.critical}
        for feature, flag in self.feature_flags.items():
            flag.update(feature in critical)
        self.output_flag.update(result.output_drift)

    def _export_critical(self) -> dict[str, Any]:
        """The critical gauges (per feature: the model's own feature names only) and their summary."""
        critical = sorted(f for f, flag in self.feature_flags.items() if flag.active)
        for feature, flag in self.feature_flags.items():
            m.FEATURE_DRIFT_CRITICAL.labels(self.name, feature).set(float(flag.active))
        m.OUTPUT_DRIFT_DETECTED.labels(self.name).set(float(self.output_flag.active))
        alert = bool(critical) or self.output_flag.active
        m.DRIFT_CRITICAL.labels(self.name).set(float(alert))
        return {"critical_drift_alert": alert, "critical_features_alert": critical, "output_drift_alert": self.output_flag.active}

    def band(self, metric: str, n_labeled: int) -> Band | None:
        """The training CV band for `metric`; without CV, the recorded metric with its sampling std."""
        bands = self.manifest.cv.bands if self.manifest.cv else {}
        for key in (f"val_{metric}", metric):
            if key in bands:
                return Band(bands[key].mean, max(bands[key].std, self.settings.gap_std_floor), "cv")
        recorded = self.manifest.metrics
        for value in ((recorded.test or {}).get(metric), recorded.train.get(f"val_{metric}")):
            if isinstance(value, (int, float)):
                if self.regression:  # an RMSE/MAE estimated from n residuals: standard error ~ value / sqrt(2n)
                    std = abs(value) / math.sqrt(2 * max(n_labeled, 1))
                else:
                    std = math.sqrt(max(value * (1 - value), 0.0) / max(n_labeled, 1))
                return Band(float(value), max(std, self.settings.gap_std_floor), "metrics")
        return None

    def _label_metrics(self, frame: pd.DataFrame) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, f1_score

        if self.regression:
            return self._regression_label_metrics(frame)
        labeled = frame[frame[LABEL_COLUMN] >= 0] if len(frame) else frame
        n = len(labeled)
        out: dict[str, Any] = {"labeled_rows": n}
        live: dict[str, float] = {"accuracy": math.nan, "f1": math.nan}
        if n >= self.settings.min_labels:
            y, p = labeled[LABEL_COLUMN].to_numpy(), labeled[PREDICTION_COLUMN].to_numpy()
            live = {"accuracy": float(accuracy_score(y, p)),
                    "f1": float(f1_score(y, p, average="macro", labels=list(range(len(self.classes))), zero_division=0))}
        m.LIVE_ACCURACY.labels(self.name).set(live["accuracy"])
        m.LIVE_F1.labels(self.name).set(live["f1"])
        gaps: dict[str, float] = {}
        for metric in GAP_METRICS:
            band = self.band(metric, n)
            gap = (live[metric] - band.mean) / band.std if band and not math.isnan(live[metric]) else math.nan
            m.GENERALIZATION_GAP.labels(self.name, metric).set(gap)
            gaps[metric] = gap
        out.update(live={k: v for k, v in live.items() if not math.isnan(v)},
                   generalization_gap={k: v for k, v in gaps.items() if not math.isnan(v)})
        return out

    def _performance_estimate(self, frame: pd.DataFrame, live: dict[str, float], labeled_rows: int) -> dict[str, Any]:
        """The label-free (CBPE) accuracy and macro-F1 of the window from its calibrated probabilities, its gap
        to the CV band's lower edge, and beside them the realized figures once enough labels arrived."""
        from mlplat.monitoring.performance_estimate import estimate

        calibration = self.manifest.calibration
        temperature = calibration.temperature if calibration else 1.0
        probabilities = frame[self.window.probability_columns].to_numpy() if len(frame) else np.zeros((0, len(self.classes)))
        probabilities = probabilities[~np.isnan(probabilities).any(axis=1)]  # rows another server answered without them
        enough = len(probabilities) >= self.settings.min_estimate_rows
        found = estimate(probabilities, temperature, self.manifest.decision) if enough else None
        band = self.band("accuracy", len(probabilities))
        lower = band.mean - self.settings.estimate_band_stds * band.std if band else math.nan
        accuracy, f1 = (found.accuracy, found.f1) if found else (math.nan, math.nan)
        gap = accuracy - lower
        m.ESTIMATED_ACCURACY.labels(self.name).set(accuracy)
        m.ESTIMATED_F1.labels(self.name).set(f1)
        m.ESTIMATED_ACCURACY_GAP.labels(self.name).set(gap)
        return {"estimated_accuracy": accuracy, "estimated_f1": f1, "estimate_rows": len(probabilities),
                "estimated_accuracy_gap": gap, "band_lower_edge": lower, "temperature": temperature,
                "calibrated": calibration is not None, "realized_accuracy": live.get("accuracy", math.nan),
                "realized_f1": live.get("f1", math.nan), "labeled_rows": labeled_rows}

    def _regression_label_metrics(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Live RMSE / MAE / R² of the labeled rows, and the generalization gap in RMSE and MAE."""
        labeled = frame[frame[LABEL_COLUMN].notna()] if len(frame) else frame
        n = len(labeled)
        live: dict[str, float] = dict.fromkeys(("rmse", "mae", "r2"), math.nan)
        if n >= self.settings.min_labels:
            from mlplat.evaluation import regression_metrics

            scored = regression_metrics(labeled[LABEL_COLUMN].to_numpy(), labeled[PREDICTION_COLUMN].to_numpy())
            live = {k: scored[k] for k in live}
        gaps: dict[str, float] = {}
        for metric in REGRESSION_GAP_METRICS:  # positive = live error above the training band
            band = self.band(metric, n)
            gap = (live[metric] - band.mean) / band.std if band and not math.isnan(live[metric]) else math.nan
            m.GENERALIZATION_GAP.labels(self.name, metric).set(gap)
            gaps[metric] = gap
        return {"labeled_rows": n, "live": {k: v for k, v in live.items() if not math.isnan(v)},
                "generalization_gap": {k: v for k, v in gaps.items() if not math.isnan(v)}}

    def _maybe_report(self, frame: pd.DataFrame) -> None:
        if not len(frame) or time.time() - self._last_report < self.settings.report_interval_s:
            return
        self._last_report = time.time()
        if self._report_dir is None:
            self._report_dir = Path(tempfile.mkdtemp(prefix="mlplat-monitor-"))
        columns = [*self.feature_names, PREDICTION_COLUMN]
        try:
            self.detector.write_report(self.reference()[columns], frame[columns], self._report_dir / REPORT_FILE)
        except Exception:  # a broken report must not stop the gauges
            log.exception("writing the drift report failed")

    @property
    def report_path(self) -> Path | None:
        return self._report_dir / REPORT_FILE if self._report_dir else None

    # ---- background thread -----------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        # the clock the stale-monitor alert reads starts now: a monitor that never evaluates goes stale
        m.LAST_EVALUATION.labels(self.name).set(time.time())
        self._stop.clear()
        loops = [self._evaluate_loop] + ([self._persist_loop] if self.settings.state_dir is not None else [])
        self._threads = [threading.Thread(target=loop, name=f"mlplat-monitor-{self.name}", daemon=True) for loop in loops]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []
        try:
            self.persist()
        except Exception:  # counted and kept in state_error; shutting down must go on
            log.error("%s", self.state_error)
        if self._report_dir is not None and self._report_dir != self.settings.state_dir:
            shutil.rmtree(self._report_dir, ignore_errors=True)  # the temporary report directory
            self._report_dir = None

    def _evaluate_loop(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.evaluate()
            except Exception:  # keep evaluating; the stale-monitor alert catches a loop that stops
                log.exception("monitor evaluation failed")
                continue
            try:
                self.persist(window=False)
            except Exception:  # counted (mlplat_monitor_state_save_failures_total); one line, no traceback
                log.error("%s", self.state_error)

    def _persist_loop(self) -> None:
        while not self._stop.wait(self.settings.persist_interval_s):
            if self.window.progress == self._persisted:
                continue
            try:
                self.persist()
            except Exception:  # a full disk must not stop the monitor; counted, and the next tick tries again
                log.error("%s", self.state_error)


def _drift_summary(result: DriftResult) -> dict[str, Any]:
    return {
        "dataset_drift": result.dataset_drift,
        "drift_share": result.share,
        "drift_share_weighted": result.weighted_share,
        "library_dataset_drift": result.library_dataset_drift,
        "drifted_features": [f.feature for f in result.features if f.drifted],
        "critical_features": [f.feature for f in result.features if f.critical],
        "top_features": result.details.get("top_features", []),
        "output_drift": result.output_drift,
        "output": [asdict(o) for o in result.probabilities],
        "prediction": asdict(result.prediction) if result.prediction else None,
    }
