"""The explain step's global-importance report. Explainer plugins' helpers live in
`mlplat.explainer_kit`, serving's explainer loader in `mlplat.serving.explainer_loader`."""

from __future__ import annotations

import warnings
from typing import Any

_MOVED_TO_KIT = {"summarize_background", "sample_rows", "mean_abs_importance", "attribution_records",
                 "BackgroundAttributionExplainer"}


def __getattr__(name: str) -> Any:
    # plugins written before the split keep importing from here, with a warning
    if name in _MOVED_TO_KIT:
        from mlplat import explainer_kit

        warnings.warn(f"mlplat.explanations.{name} moved to mlplat.explainer_kit.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(explainer_kit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def importance_html(model_name: str, plugin: str, importance: dict[str, float]) -> str:
    """The explain step's global-importance report: features ranked, with proportional bars."""
    from mlplat.reports import html_page, html_table

    ranked = sorted(importance.items(), key=lambda kv: -kv[1])
    top = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
    rows = [(i + 1, name, f"{value:.4g}", "█" * max(1, round(30 * value / top)) if value > 0 else "")
            for i, (name, value) in enumerate(ranked)]
    table = html_table(["rank", "feature", "importance", ""], rows)
    return html_page(f"{model_name}: global feature importance ({plugin})",
                     [("Mean |attribution| over sampled training rows", table)])
