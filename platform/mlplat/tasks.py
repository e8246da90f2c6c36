"""The learning task of a pipeline: classification or regression.

Rule (`infer_task`), applied to the label column when `dataset.task` is not set:
  - a boolean, string or categorical label is a classification;
  - a numeric label is a classification when every value is an integer and it has at most
    `MAX_INFERRED_CLASSES` distinct values (class codes such as 0/1 or 1..10);
  - any other numeric label (a non-integer value, or more than `MAX_INFERRED_CLASSES` distinct
    integers, e.g. a price in whole euros) is a regression target.
`dataset.task: classification | regression` overrides the rule.

What each task accepts is declared here once: the evaluation gate thresholds, the metrics a tuner
may optimize, and the plugins (`PluginSpec.tasks`) and trainer options that only make sense for one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from mlplat.errors import UsageError

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
MAX_INFERRED_CLASSES = 20
SKLEARN_TASKS: dict[str, Task] = {"breast_cancer": "classification", "digits": "classification", "wine": "classification",
                                  "iris": "classification", "diabetes": "regression"}

# evaluation gate field -> (metric it bounds, task it belongs to)
GATE_METRICS: dict[str, tuple[str, Task]] = {
    "min_accuracy": ("accuracy", "classification"), "min_f1": ("f1", "classification"),
    "min_roc_auc": ("roc_auc", "classification"),
    "max_rmse": ("rmse", "regression"), "max_mae": ("mae", "regression"), "min_r2": ("r2", "regression"),
}
# metric -> direction, per task: what the evaluate step, the CV band and a tuner speak in
REGRESSION_METRICS: dict[str, Literal["maximize", "minimize"]] = {"rmse": "minimize", "mae": "minimize", "r2": "maximize"}


def infer_task(labels: pd.Series) -> Task:
    """The task a label column implies by the rule in this module's docstring."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return "classification"
    values = labels.dropna().to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    if integral and len(np.unique(values)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def resolve_task(labels: pd.Series, declared: Task | None, label: str) -> Task:
    """`declared` (the spec's dataset.task) when set, else `infer_task`; a regression label must be numeric."""
    task = declared or infer_task(labels)
    if task == "regression":
        if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
            raise UsageError(f"dataset.task: regression needs a numeric label; column {label!r} is {labels.dtype} "
                             f"(e.g. {labels.dropna().iloc[0]!r} if it has values); set dataset.task: classification")
        if not np.all(np.isfinite(labels.to_numpy(dtype=np.float64))):
            raise UsageError(f"dataset.label: column {label!r} has {int((~np.isfinite(labels.to_numpy(np.float64))).sum())} "
                             "missing or infinite values; a regression target needs a number in every row")
    return task


def source_task(source: str) -> Task | None:
    """The task known from the dataset source's name alone (scikit-learn datasets), else None."""
    return SKLEARN_TASKS.get(source.removeprefix("sklearn:")) if source.startswith("sklearn:") else None
