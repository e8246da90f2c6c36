"""Per-column distribution plots for the HTML report (one small histogram per column)."""

from __future__ import annotations

import io

import pandas as pd

COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c", "serving": "#d62728"}


def distribution_grid(frames: dict[str, pd.DataFrame], columns: list[str], ncols: int = 4) -> bytes:
    """A PNG grid: per column, overlaid density histograms of each split's numeric values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, columns, strict=False):  # the grid may have more axes than columns
        for split, frame in frames.items():
            if name not in frame.columns:
                continue
            values = pd.to_numeric(frame[name], errors="coerce").dropna()
            if not values.empty:
                ax.hist(values, bins=30, density=True, alpha=0.45, color=COLORS.get(split), label=split)
        ax.set_title(str(name), fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
