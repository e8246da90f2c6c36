"""How close synthetic rows are to the real ones: marginals (KS, means, stds) and correlations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlplat.reports import html_page, html_table, write_json


def fidelity(real: pd.DataFrame, real_y: np.ndarray, synth: pd.DataFrame, synth_y: np.ndarray,
             classes: list[str]) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    marginals: list[dict[str, Any]] = []
    for name in real.columns:
        r, s = real[name].to_numpy(float), synth[name].to_numpy(float)
        marginals.append({"column": str(name), "ks": float(ks_2samp(r, s).statistic), "real_mean": float(r.mean()),
                          "synthetic_mean": float(s.mean()), "real_std": float(r.std()), "synthetic_std": float(s.std())})
    per_class = {}
    for c in np.unique(synth_y):
        diff = _corr(real[real_y == c]) - _corr(synth[synth_y == c])
        per_class[classes[int(c)]] = float(np.nanmean(np.abs(diff)))
    return {
        "rows": {"real": len(real), "synthetic": len(synth)},
        "mean_ks": float(np.mean([m["ks"] for m in marginals])),
        "max_ks": float(np.max([m["ks"] for m in marginals])),
        "mean_abs_correlation_difference": float(np.nanmean(np.abs(_corr(real) - _corr(synth)))),
        "per_class_mean_abs_correlation_difference": per_class,
        "marginals": marginals,
    }


def _corr(frame: pd.DataFrame) -> np.ndarray:
    return frame.corr().to_numpy()


def write_fidelity_report(real: pd.DataFrame, real_y: np.ndarray, synth: pd.DataFrame, synth_y: np.ndarray,
                          classes: list[str], out: Path, stem: str) -> dict[str, Any]:
    report = fidelity(real, real_y, synth, synth_y, classes)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", report)
    summary = [("real rows", report["rows"]["real"]), ("synthetic rows", report["rows"]["synthetic"]),
               ("mean KS statistic (marginals)", report["mean_ks"]), ("max KS statistic", report["max_ks"]),
               ("mean |corr(real) - corr(synthetic)|", report["mean_abs_correlation_difference"])]
    marg = [(m["column"], m["ks"], m["real_mean"], m["synthetic_mean"], m["real_std"], m["synthetic_std"])
            for m in report["marginals"]]
    sections = [
        ("Summary", html_table(("measure", "value"), summary)),
        ("Correlation difference per class",
         html_table(("class", "mean |diff|"), report["per_class_mean_abs_correlation_difference"].items())),
        ("Marginals", html_table(("column", "KS", "real mean", "synthetic mean", "real std", "synthetic std"), marg)),
    ]
    (out / f"{stem}.html").write_text(html_page("Synthetic data fidelity", sections))
    return report
