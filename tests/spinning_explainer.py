"""A test explainer for the explain worker's child process (importable there, so picklable by reference):
it burns a CPU for `X[0, 0] - 1000` seconds when that value is over 1000, answers at once otherwise, and
names the process it ran in."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

SPIN = 1000.0  # a first feature of SPIN + s: spin s seconds


class SpinningExplainer:
    def explain(self, X: np.ndarray) -> list[dict[str, Any]]:
        deadline = time.monotonic() + max(0.0, float(X[0, 0]) - SPIN)
        while time.monotonic() < deadline:
            pass
        return [{"attributions": {}, "pid": os.getpid()} for _ in X]


def spinning_explainer() -> SpinningExplainer:
    return SpinningExplainer()
