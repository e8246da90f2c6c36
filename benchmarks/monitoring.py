"""Monitoring benchmark: request-path cost, drift evaluation vs plain Evidently, false alarms, detection delay.

    .venv/bin/python benchmarks/monitoring.py [--windows 200]

1. Request path: `Window.record` of one 30-feature row, against the 10 µs budget.
2. Drift evaluation of a 10k-row x 30-feature window against a 5k-row reference: the
   evidently plugin's `detect` (cached reference statistics) vs a plain Evidently
   `DataDriftPreset` report on the same data, with identical per-column and dataset verdicts.
3. False alarms over N independent no-shift windows (1000 rows each, hysteresis 3).
4. Detection delay after a 0.5-std shift in the most important feature, streaming 100 rows per
   evaluation into a 1000-row sliding window.

Measured 2026-12-01 on the idle 2-core dev VM, 12 s wall (two runs):
- request path: 1.62-1.88 µs per record (target <= 10 µs; no Evidently call, no I/O).
- drift evaluation 10k x 30 vs a 5k reference: ours 27.7-29.0 ms (20-23 / 20 / 41-44 ms for no
  shift / one feature +0.5 std / 16 features +0.3 std) vs plain DataDriftPreset 1.54-1.57 s
  -> 54-56x faster (target >= 3x), per-column and dataset verdicts identical in all 3 cases;
  one-off JSON state load 22 ms.
- false alarms over 200 no-shift windows: 0.0 % alerts (target <= 1 %); 0.0 % of windows
  drifted before hysteresis, while plain Evidently per-feature verdicts flagged >= 1 feature
  in 20 % of windows (42 feature flags).
- detection delay, +0.5 std in the most important feature (importance share 0.35): 5 evaluations
  = 500 shifted rows into a 1000-row window (hysteresis 3).
(2026-11-22 under load average 4-5: 9.7 µs per record, 127 ms vs 9.46 s, 74x.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from mlplat import registry
from mlplat.contracts.drift_detector import PREDICTION_COLUMN
from mlplat.monitoring.monitor import Hysteresis
from mlplat.monitoring.window import Window
from mlplat_plugins.evidently_drift.detector import evidently_report

N_FEATURES, REFERENCE_ROWS = 30, 5000
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


def sample(rng: np.random.Generator, n: int, shift: dict[int, float] | None = None) -> pd.DataFrame:
    """Mixed shapes (normal, lognormal, uniform, discrete counts), a prediction column."""
    cols = {}
    for i, name in enumerate(FEATURES):
        kind = i % 4
        if kind == 0:
            x = rng.normal(10 + i, 2.0, n)
        elif kind == 1:
            x = rng.lognormal(0.0, 0.5, n)
        elif kind == 2:
            x = rng.uniform(-1, 1, n)
        else:
            x = rng.poisson(8, n).astype(float)
        cols[name] = x
    frame = pd.DataFrame(cols)
    for i, delta_std in (shift or {}).items():
        frame[FEATURES[i]] += delta_std * frame[FEATURES[i]].std()
    logit = 0.5 * (frame[FEATURES[0]] - (10.0)) / 2 + (frame[FEATURES[2]] - 0.5)
    frame[PREDICTION_COLUMN] = (logit > 0).astype(int)
    return frame


def importance() -> dict[str, float]:
    """Like an explainer's global importance: a few features matter, most barely."""
    weights = {name: 0.005 for name in FEATURES}
    weights.update({FEATURES[0]: 0.35, FEATURES[1]: 0.15, FEATURES[2]: 0.15, FEATURES[5]: 0.1, FEATURES[9]: 0.1})
    return weights


def bench_record() -> float:
    window = Window(FEATURES, capacity=5000)
    row, pred = np.ones((1, N_FEATURES), np.float32), np.array([1])
    ids = [[f"req-{i}"] for i in range(200_000)]
    for i in range(5000):
        window.record(row, pred, ids[i])
    started = time.perf_counter()
    for i in range(200_000):
        window.record(row, pred, ids[i])
    return (time.perf_counter() - started) / 200_000


def library_verdicts(snapshot) -> tuple[dict[str, bool], bool]:
    columns, share = {}, None
    for m in snapshot.dict()["metrics"]:
        config, value = m["config"], m["value"]
        if "column" in config:
            method = config["method"]
            p_value = "p_value" in method.lower()
            columns[config["column"]] = value <= config["threshold"] if p_value else value >= config["threshold"]
        elif isinstance(value, dict) and "share" in value:
            share = value["share"] >= config["drift_share"]
    return columns, bool(share)


def bench_evaluation(rng: np.random.Generator, detector, state, reference: pd.DataFrame) -> None:
    evidently_report(reference.head(500), sample(rng, 500))  # import and warm Evidently before timing
    ours_first = time.perf_counter()
    detector.detect(state, sample(rng, 100))  # first call converts the JSON state once
    ours_first = time.perf_counter() - ours_first
    cases = {"no shift": None, "one feature +0.5 std": {0: 0.5}, "16 features +0.3 std": {i: 0.3 for i in range(16)}}
    ours_t, plain_t, identical = [], [], True
    for label, shift in cases.items():
        current = sample(rng, 10_000, shift)
        t = time.perf_counter()
        result = detector.detect(state, current)
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        snapshot = evidently_report(reference, current)
        plain_t.append(time.perf_counter() - t)
        columns, dataset = library_verdicts(snapshot)
        mine = {f.feature: f.library_drifted for f in [*result.features, result.prediction]}
        same = mine == columns and dataset == result.library_dataset_drift
        identical &= same
        print(f"  {label:<22} ours {ours_t[-1] * 1e3:7.1f} ms  Evidently {plain_t[-1]:6.2f} s  "
              f"library-drifted columns {sum(columns.values()):2d}  verdicts identical: {same}  "
              f"alerting (noise-controlled) features: {[f.feature for f in result.features if f.drifted]}")
    ratio = np.mean(plain_t) / np.mean(ours_t)
    print(f"drift evaluation 10k x 30: ours {np.mean(ours_t) * 1e3:.1f} ms vs DataDriftPreset {np.mean(plain_t):.2f} s "
          f"-> {ratio:.0f}x faster (target >= 3x); identical verdicts: {identical}; "
          f"one-off state load {ours_first * 1e3:.0f} ms")


def bench_false_alarms(rng: np.random.Generator, detector, state, windows: int) -> None:
    flag, alarms, drifted_windows, library_windows, library_features = Hysteresis(3), 0, 0, 0, 0
    for _ in range(windows):
        result = detector.detect(state, sample(rng, 1000))
        drifted_windows += result.dataset_drift
        library_windows += any(f.library_drifted for f in result.features)
        library_features += sum(bool(f.library_drifted) for f in result.features)
        was = flag.active
        alarms += flag.update(result.dataset_drift) and not was
    print(f"false alarms over {windows} no-shift windows of 1000 rows: {alarms / windows:.1%} alerts (target <= 1%); "
          f"{drifted_windows / windows:.1%} windows drifted before hysteresis; "
          f"plain Evidently per-feature verdicts flagged >= 1 feature in {library_windows / windows:.0%} of windows "
          f"({library_features} feature flags)")


def bench_delay(rng: np.random.Generator, detector, state) -> None:
    window, flag, batch = Window(FEATURES, capacity=1000), Hysteresis(3), 100

    def feed(shift: dict[int, float] | None) -> bool:
        frame = sample(rng, batch, shift)
        window.record(frame[FEATURES].to_numpy(np.float32), frame[PREDICTION_COLUMN].to_numpy(), [f"r{window.total}"])
        return flag.update(detector.detect(state, window.frame()[[*FEATURES, PREDICTION_COLUMN]]).dataset_drift)

    for _ in range(20):  # steady state on in-distribution traffic
        assert not feed(None), "false alarm during warm-up"
    for evaluation in range(1, 51):
        if feed({0: 0.5}):
            print(f"detection delay, +0.5 std in the most important feature (importance share 0.35): "
                  f"{evaluation} evaluations = {evaluation * batch} shifted rows into a 1000-row window (hysteresis 3)")
            return
    print("detection delay: not detected within 50 evaluations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_record = bench_record()
    print(f"request path: Window.record {per_record * 1e6:.2f} µs per request (budget 10 µs -> {10e-6 / per_record:.1f}x headroom)")
    detector = registry.spec_of("drift_detector", "evidently").create({"min_window": 200})
    reference = sample(rng, REFERENCE_ROWS)
    state = detector.fit(reference, None, importance())
    bench_evaluation(rng, detector, state, reference)
    bench_false_alarms(rng, detector, state, args.windows)
    bench_delay(rng, detector, state)


if __name__ == "__main__":
    main()
