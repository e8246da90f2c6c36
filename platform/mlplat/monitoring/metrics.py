"""Prometheus metrics of the monitor, all labelled by `model`.

Registered once per process in the default registry, so `mlplat serve`'s `/metrics` and the
standalone `mlplat monitor` service expose the same names. Counts that change on every
request (records, labels) are read from the windows at scrape time by a collector, so the
request path never touches a prometheus-client lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mlplat.monitoring.window import Window

M = ["model"]
FEATURE_DRIFT_SCORE = Gauge("mlplat_feature_drift_score", "Evidently drift score per feature (p-value or distance, see the report)",
                            [*M, "feature"])
FEATURE_DRIFT_EFFECT = Gauge("mlplat_feature_drift_effect_size", "Normed Wasserstein distance per feature (reference std units)",
                             [*M, "feature"])
FEATURE_DRIFT_DETECTED = Gauge("mlplat_feature_drift_detected", "1 if the feature drifted in the last window after noise control",
                               [*M, "feature"])
FEATURE_DRIFT_CRITICAL = Gauge("mlplat_feature_drift_critical", "1 once a top-importance feature drifted for N windows (hysteresis)",
                               [*M, "feature"])
OUTPUT_DRIFT_DETECTED = Gauge("mlplat_output_drift_detected", "1 once the class probabilities drifted for N windows (K-S per class)", M)
DRIFT_CRITICAL = Gauge("mlplat_drift_critical", "1 while a top-importance feature or the output distribution drifted", M)
DRIFT_SHARE = Gauge("mlplat_drift_share", "Share of features drifted in the last window (after noise control)", M)
DRIFT_SHARE_WEIGHTED = Gauge("mlplat_drift_share_weighted", "Importance-weighted share of drifted features in the last window", M)
DATA_DRIFT_DETECTED = Gauge("mlplat_data_drift_detected", "1 once data drift held for N consecutive windows (hysteresis)", M)
PREDICTION_DRIFT_SCORE = Gauge("mlplat_prediction_drift_score", "Evidently drift score of the predicted class", M)
PREDICTION_DRIFT_EFFECT = Gauge("mlplat_prediction_drift_effect_size", "Total-variation distance of predicted-class shares", M)
PREDICTION_DRIFT_DETECTED = Gauge("mlplat_prediction_drift_detected", "1 once prediction drift held for N consecutive windows", M)
LIVE_ACCURACY = Gauge("mlplat_live_accuracy", "Accuracy over the labeled rows of the window (NaN below the minimum)", M)
LIVE_F1 = Gauge("mlplat_live_f1", "Macro F1 over the labeled rows of the window (NaN below the minimum)", M)
ESTIMATED_ACCURACY = Gauge("mlplat_estimated_accuracy", "Label-free (CBPE) accuracy estimate from calibrated probabilities", M)
ESTIMATED_F1 = Gauge("mlplat_estimated_f1", "Label-free (CBPE) macro-F1 estimate from calibrated probabilities", M)
ESTIMATED_ACCURACY_GAP = Gauge("mlplat_estimated_accuracy_gap", "Estimated accuracy minus the CV band's lower edge; < 0: below", M)
GENERALIZATION_GAP = Gauge("mlplat_generalization_gap", "(live metric - training CV mean) / CV std", [*M, "metric"])
LAST_EVALUATION = Gauge("mlplat_monitor_last_evaluation_timestamp_seconds",
                        "Unix time of the last evaluation (until the first: the start)", M)
EVALUATION_SECONDS = Gauge("mlplat_monitor_evaluation_duration_seconds", "Wall time of the last drift evaluation", M)
STATE_SAVE_FAILURES = Counter("mlplat_monitor_state_save_failures", "Failed saves of the monitor state (window, labels, alerts)", M)

_windows: dict[str, Window] = {}
_lock = threading.Lock()


class _WindowCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        records = CounterMetricFamily("mlplat_monitor_records", "Rows recorded into the monitoring window", labels=M)
        labels = CounterMetricFamily("mlplat_monitor_labels_received", "Ground-truth labels matched to recorded rows", labels=M)
        size = GaugeMetricFamily("mlplat_monitor_window_rows", "Rows currently in the window", labels=M)
        labeled = GaugeMetricFamily("mlplat_monitor_labeled_rows", "Rows in the window that have a label", labels=M)
        with _lock:
            windows = list(_windows.items())
        for model, window in windows:
            records.add_metric([model], window.total)
            labels.add_metric([model], window.labels_received)
            size.add_metric([model], window.size)
            labeled.add_metric([model], int(np.count_nonzero(window.labels[: window.size] >= 0)))
        yield from (records, labels, size, labeled)


REGISTRY.register(_WindowCollector())


def expose_window(model: str, window: Window) -> None:
    with _lock:
        _windows[model] = window


def forget_window(model: str) -> None:
    with _lock:
        _windows.pop(model, None)
