"""The tune step's report: Optuna's matplotlib plots (PNG) plus best params and trials in HTML/Markdown."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from mlplat.reports import html_image, html_page, html_table, markdown_table

PLOTS = {
    "optimization_history": ("Optimization history", "plot_optimization_history"),
    "param_importances": ("Parameter importance", "plot_param_importances"),
    "parallel_coordinate": ("Parallel coordinate", "plot_parallel_coordinate"),
}
TRIAL_HEADERS = ["#", "state", "value", "epochs", "duration (s)", "params", "error"]


def write_plots(study: optuna.Study, out: Path) -> dict[str, Path | str]:
    """One PNG per plot; a plot Optuna cannot draw (e.g. importance with one finished trial) gives its reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    made: dict[str, Path | str] = {}
    for key, (_, function) in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's matplotlib backend is marked experimental
                axes = getattr(optuna_plots, function)(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            path = out / f"{key}.png"
            figure.savefig(path, dpi=90)
            plt.close(figure)
            made[key] = path
        except Exception as exc:  # not enough trials or too little variety for this plot
            made[key] = f"not drawn: {type(exc).__name__}: {exc}"
    return made


def _trial_row(t: dict[str, Any]) -> list[Any]:
    return [t["number"], t["state"], t["value"], t["epochs"], t["duration_s"],
            json.dumps(t["params"], separators=(", ", ": ")), t.get("error") or ""]


def write_report(study: optuna.Study, trials: list[dict[str, Any]], out: Path, step: str) -> None:
    plots = write_plots(study, out)
    best = study.best_trial
    best_rows = [[k, v] for k, v in next(t["params"] for t in trials if t["number"] == best.number).items()]
    states = {s: sum(1 for t in trials if t["state"] == s) for s in ("complete", "pruned", "fail")}
    epochs = sum(t["epochs"] for t in trials)
    summary = (f"best value {best.value:.4f} (trial {best.number}); {len(trials)} trials: "
               + ", ".join(f"{n} {s}" for s, n in states.items()) + f"; {epochs} trial-epochs")
    sections = [("Summary", f"<p>{summary}</p>"), ("Best params", html_table(["param", "value"], best_rows))]
    for key, (title, _) in PLOTS.items():
        plot = plots[key]
        sections.append((title, html_image(plot, title) if isinstance(plot, Path) else f"<p>{plot}</p>"))
    classes = ["ok" if t["state"] == "complete" else "fail" if t["state"] == "fail" else "warn" for t in trials]
    sections.append(("Trials", html_table(TRIAL_HEADERS, [_trial_row(t) for t in trials], classes)))
    (out / "report.html").write_text(html_page(f"Hyperparameter search ({step})", sections))
    md = [f"# Hyperparameter search ({step})", "", summary, "", "## Best params", "",
          markdown_table(["param", "value"], best_rows), ""]
    md += [f"![{title}]({key}.png)" if isinstance(plots[key], Path) else f"{title}: {plots[key]}"
           for key, (title, _) in PLOTS.items()]
    md += ["", "## Trials", "", markdown_table(TRIAL_HEADERS, [_trial_row(t) for t in trials]), ""]
    (out / "report.md").write_text("\n".join(md))
