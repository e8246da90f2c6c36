"""Training report: curves (PNG), validation confusion matrix (PNG), report.html and report.md."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mlplat.reports import html_image, html_page, html_table, markdown_table

CURVES_PNG, CONFUSION_PNG = "training_curves.png", "confusion_matrix.png"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def curves_png(history: list[dict[str, float]], best_epoch: int) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    figure = Figure(figsize=(10, 3.6))
    epochs = [int(r["epoch"]) + 1 for r in history]
    second = "accuracy" if history and "train_accuracy" in history[0] else "rmse"  # a regression reports val_rmse
    for ax, metric in zip(figure.subplots(1, 2), ("loss", second), strict=True):
        if f"train_{metric}" in history[0] if history else False:
            ax.plot(epochs, [r[f"train_{metric}"] for r in history], label=f"train {metric}")
        ax.plot(epochs, [r.get(f"val_{metric}", float("nan")) for r in history], label=f"validation {metric}")
        if best_epoch >= 0:
            ax.axvline(best_epoch + 1, color="grey", linestyle="--", linewidth=1, label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    return _png(figure)


def confusion_png(matrix: list[list[int]], labels: list[str]) -> bytes:
    from matplotlib.figure import Figure

    size = max(3.5, 0.45 * len(labels) + 2)
    figure = Figure(figsize=(size, size))
    ax = figure.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black", fontsize=8)
    ax.set_title("validation confusion matrix")
    return _png(figure)


def write_training_report(work_dir: Path, title: str, metrics: dict[str, float], history: list[dict[str, float]],
                          cv: dict[str, Any] | None, extras: dict[str, Any]) -> None:
    curves = curves_png(history, int(metrics.get("best_epoch", -1)))
    (work_dir / CURVES_PNG).write_bytes(curves)
    confusion = extras.get("confusion_matrix")
    summary = [(k, v) for k, v in metrics.items()]
    compute = [(k, v) for k, v in extras.get("compute", {}).items()]
    sections = [("Final metrics (restored best epoch, eval mode)", html_table(["metric", "value"], summary)),
                ("Training curves", html_image(curves, "training curves") +
                 "<p>Per-epoch train figures are running averages over the epoch (train mode); "
                 "final train metrics are re-evaluated in eval mode.</p>")]
    md = [f"# {title}", "", markdown_table(["metric", "value"], summary), ""]
    if confusion:
        png = confusion_png(confusion["matrix"], confusion["labels"])
        (work_dir / CONFUSION_PNG).write_bytes(png)
        rows = [[label, *row] for label, row in zip(confusion["labels"], confusion["matrix"], strict=True)]
        sections.append(("Validation confusion matrix", html_image(png, "confusion matrix") +
                         html_table(["true \\ predicted", *confusion["labels"]], rows)))
    if cv:
        cv_rows = [(k, v["mean"], v["std"]) for k, v in cv.items() if isinstance(v, dict)]
        sections.append((f"Cross-validation ({cv['folds']} stratified folds)", html_table(["metric", "mean", "std"], cv_rows)))
        md += [f"## Cross-validation ({cv['folds']} folds)", "", markdown_table(["metric", "mean", "std"], cv_rows), ""]
    if extras.get("warm_start"):
        ws = extras["warm_start"]
        sections.append(("Warm start", html_table(["field", "value"], [(k, v if not isinstance(v, list) else ", ".join(map(str, v)))
                                                                         for k, v in ws.items()])))
    sections.append(("Compute cost", html_table(["measure", "value"], compute)))
    md += ["## Compute cost", "", markdown_table(["measure", "value"], compute), ""]
    (work_dir / "report.html").write_text(html_page(title, sections))
    (work_dir / "report.md").write_text("\n".join(md))
