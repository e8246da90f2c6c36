"""The predictor's own Prometheus metrics, next to KServe's per-stage latency histograms
(request_preprocess_seconds, request_predict_seconds, ...) on the same /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PREDICTIONS = Counter("mlplat_predictions", "Predicted rows by class", ["model", "class"])
REJECTED = Counter("mlplat_rejected_requests", "Requests refused with a 4xx, by reason", ["model", "reason"])
EXPLAIN_SECONDS = Histogram("mlplat_explanation_duration_seconds", "Wall time of one :explain request",
                            ["model", "method"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BATCH_ROWS = Histogram("mlplat_batch_rows", "Rows per forward pass (adaptive batching merges requests)", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
IMPUTED = Counter("mlplat_imputed_values", "Null feature values in requests, imputed with the training fill value",
                  ["model", "feature"])
UNKNOWN_CATEGORIES = Counter("mlplat_unknown_categories", "Categorical values not in the training vocabulary "
                             "(predicted through the unknown bucket)", ["model", "feature"])
REJECTION_LOG_SUPPRESSED = Counter("mlplat_rejection_log_suppressed", "Rejection log lines dropped by the rate limit")
CONNECTION_REFUSALS = Counter("mlplat_connection_refusals", "Connections closed before a request reached the app: "
                              "head too large (431), head or body not received in time (408), idle", ["reason"])
