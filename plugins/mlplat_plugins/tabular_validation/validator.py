"""The `tabular` validator: infer a schema from train, check every split (and an optional
serving sample) against it, run the quality checks, and hand label-noise suspects on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlplat.contracts import StepContext
from mlplat.contracts.validator import CheckResult, Severity, ValidationReport
from mlplat.data import RESERVED, Splits
from mlplat.errors import SpecError, UsageError
from mlplat.reports import html_image, html_table

from mlplat_plugins.tabular_validation import DEFAULT_SEVERITY, TabularValidatorConfig, quality
from mlplat_plugins.tabular_validation.relations import association_checks, single_feature_leaks
from mlplat_plugins.tabular_validation.schema import check_against_schema, infer_schema


class TabularValidator:
    def __init__(self, config: TabularValidatorConfig) -> None:
        self.config = config  # severity keys are checked by the config model, when the spec is resolved

    def severity(self, check: str) -> Severity:
        return self.config.severity.get(check, DEFAULT_SEVERITY.get(check, "warn"))

    def validate(self, splits: Splits, context: StepContext) -> ValidationReport:
        cfg, info = self.config, splits.info
        train = splits.train.features
        schema = infer_schema(train, info.classes, splits.train.labels, info.column_types, info.regression)
        expected = _read_json(cfg.schema_path, "schema_path") if cfg.schema_path else schema
        checks: list[CheckResult] = self._bad_cells(info.bad_cells)
        checks += [self._train_missing(train[c["name"]], c) for c in schema["columns"]]
        named = [("validation", splits.validation), ("test", splits.test)]
        if cfg.schema_path:
            named.insert(0, ("train", splits.train))
        self._missing_alpha = cfg.missing_alpha / max(1, len(expected["columns"]) * (len(named) + bool(cfg.serving_sample)))
        for name, table in named:  # a regression has no label classes to check
            labels = (None, None) if info.regression else (table.labels, info.classes)
            checks += self._schema_checks(expected, table.features, name, *labels)
            checks += association_checks(expected, table.features, table.labels, name, info.regression, self.severity)
        checks += quality.duplicates(train, splits.train.labels, self.severity)
        for name in ("validation", "test"):
            checks += quality.leakage(train, getattr(splits, name).features, name, self.severity)
        checks += quality.constant_columns(train, self.severity)
        checks += quality.extreme_outliers(train, cfg.outlier_iqr, cfg.max_outlier_share, self.severity)
        findings: dict[str, Any] = {}
        if info.regression:  # CLASSIFICATION_CHECKS: class imbalance, label noise and class-identical features
            checks.append(CheckResult("imbalance", True, "info", "class checks skipped: the task is a regression"))
        else:
            identity = quality.label_feature_identity(train, splits.train.labels, info.n_classes, self.severity)
            held_out = splits.validation if len(splits.validation) else splits.test
            leaking = {c.column for c in identity if not c.passed}  # one finding per leaking column
            checks += identity + [c for c in single_feature_leaks(train, splits.train.labels, held_out.features, held_out.labels,
                                                                  self.severity) if c.column not in leaking]
            checks += quality.imbalance(splits.train.labels, info.classes, cfg.min_minority_share, self.severity)
        if cfg.label_noise.enabled and not info.regression:
            check, findings["label_noise"] = self._label_noise(splits, context.seed)
            checks.append(check)
        frames = {"train": train, "validation": splits.validation.features, "test": splits.test.features}
        if cfg.serving_sample:
            serving = self._load_serving(info.label)
            frames["serving"] = serving
            checks += self._schema_checks(expected, serving, "serving")
            skew_checks, findings["skew"] = self._skew(train, serving)
            checks += skew_checks
        sections = self._html_sections(frames, checks, findings)
        return ValidationReport(checks, schema, findings, sections)

    def _schema_checks(self, schema: dict[str, Any], frame: pd.DataFrame, split: str,
                       labels: np.ndarray | None = None, classes: list[str] | None = None) -> list[CheckResult]:
        return check_against_schema(schema, frame, split, self.severity, self.config.max_missing_rate,
                                    self.config.range_tolerance, self.config.max_out_of_range_share,
                                    self.config.max_mean_shift, labels, classes, self._missing_alpha,
                                    self.config.max_unseen_category_share)

    def _bad_cells(self, cells: list[dict[str, Any]]) -> list[CheckResult]:
        """Cells of numeric columns that are no number: named by column, row id and value, never silently NaN."""
        by_column: dict[str, list[dict[str, Any]]] = {}
        for cell in cells:
            by_column.setdefault(cell["column"], []).append(cell)
        return [CheckResult("schema.parse", False, self.severity("schema.parse"),
                            f"{column}: {len(found)} cells are not numbers: "
                            + ", ".join(f"row {c['row_id']} {c['value']!r}" for c in found[:5])
                            + " (list missing-value markers in dataset.na_values)", column, "numbers",
                            [{"row_id": c["row_id"], "value": c["value"]} for c in found[:20]],
                            details={"cells": found}) for column, found in by_column.items()]

    def _train_missing(self, series: pd.Series, col: dict[str, Any]) -> CheckResult:
        n, missing = len(series), int(series.isna().sum())
        rate = missing / n if n else 0.0
        cap = self.config.max_missing_rate
        return CheckResult("schema.missing", rate <= cap, self.severity("schema.missing"),
                           f"train: {col['name']}: {missing} of {n} rows missing ({rate:.1%}); imputed for training",
                           col["name"], f"<= {cap:.1%}", missing, details={"rows": missing, "rate": rate})

    def _label_noise(self, splits: Splits, seed: int) -> tuple[CheckResult, dict[str, Any]]:
        from mlplat_plugins.tabular_validation.label_noise import combine_members, confident_learning, out_of_fold_members

        cfg, table = self.config.label_noise, splits.train
        real = np.flatnonzero(~table.synthetic)
        numeric = table.features.select_dtypes("number")  # categorical columns: not used by the noise model
        X = numeric.fillna(numeric.median()).fillna(0.0).to_numpy(np.float64)[real]
        y = table.labels[real]
        counts = np.bincount(y, minlength=splits.info.n_classes)
        folds = min(cfg.folds, int(counts[counts > 0].min()))
        if folds < 2 or numeric.shape[1] == 0:
            return (CheckResult("label_noise", True, "info", "label noise not assessed: too few rows per class or no numeric columns"),
                    {"row_ids": [], "scores": []})
        proba, members = combine_members(out_of_fold_members(X, y, splits.info.n_classes, cfg.model, folds, seed, cfg.mlp_epochs), y)
        result = confident_learning(proba, y, cfg.method)
        share = len(result.suspects) / len(y)
        finding = {
            "method": f"confident_learning/{cfg.method}", "model": cfg.model, "members": members, "folds": folds,
            "row_ids": table.row_ids[real][result.suspects].tolist(), "scores": np.round(result.scores, 6).tolist(),
            "given": y[result.suspects].tolist(), "suggested": result.suggested.tolist(),
            "thresholds": result.thresholds.tolist(), "confident_joint": result.joint.tolist(), "share": share,
            "noise_rates": result.noise_rate_pairs(splits.info.classes),
            "oof_accuracy": float((proba.argmax(1) == y).mean()),
        }
        check = CheckResult("label_noise", share <= cfg.max_noise_share, self.severity("label_noise"),
                            f"{len(result.suspects)} likely mislabelled training rows ({share:.1%}, confident learning, "
                            f"{cfg.model}: {'+'.join(members)})",
                            "label", f"<= {cfg.max_noise_share:.1%} suspects", round(share, 4),
                            details={"top_row_ids": finding["row_ids"][:20]})
        return check, finding

    def _load_serving(self, label: str) -> pd.DataFrame:
        path = Path(self.config.serving_sample or "")
        if not path.is_file():
            raise SpecError([("serving_sample", f"file not found: {path}")])
        try:
            frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
        except Exception as exc:  # malformed file: name it
            raise SpecError([("serving_sample", f"cannot read {path}: {exc}")]) from None
        return frame.drop(columns=[c for c in (label, *RESERVED) if c in frame.columns])

    def _skew(self, train: pd.DataFrame, serving: pd.DataFrame) -> tuple[list[CheckResult], dict[str, Any]]:
        from mlplat.skew import compare_columns

        drifts = compare_columns(train, serving, method=self.config.skew_method, threshold=self.config.skew_threshold)
        checks = [CheckResult("skew", not d.drifted, self.severity("skew"), f"serving: {d.feature} distribution vs train",
                              d.feature, f"no drift ({d.test})", round(d.score, 6)) for d in drifts]
        share = sum(d.drifted for d in drifts) / max(len(drifts), 1)
        checks.append(CheckResult("skew.share", share <= self.config.max_skew_share, self.severity("skew.share"),
                                  f"serving: {share:.0%} of columns skewed vs train (Evidently)", None,
                                  f"<= {self.config.max_skew_share:.0%}", round(share, 4)))
        finding = {"share": share, "columns": {d.feature: {"score": d.score, "drifted": d.drifted, "test": d.test} for d in drifts}}
        return checks, finding

    def _html_sections(self, frames: dict[str, pd.DataFrame], checks: list[CheckResult],
                       findings: dict[str, Any]) -> list[tuple[str, str]]:
        from mlplat_plugins.tabular_validation.plots import distribution_grid

        sections = []
        noise = findings.get("label_noise", {})
        if noise.get("row_ids"):
            rows = list(zip(noise["row_ids"], noise["scores"], noise["given"], noise["suggested"], strict=True))[:50]
            sections.append(("Label-noise suspects (top 50)", html_table(("row id", "score", "given", "suggested"), rows)
                             + f"<p>confident joint [given, true]: {noise['confident_joint']}</p>"
                             + html_table(("given", "true", "estimated share of the given class"),
                                          [(r["given"], r["true"], f"{r['rate']:.1%}") for r in noise.get("noise_rates", [])])))
        if self.config.plot_columns:
            flagged = [c.column for c in checks if not c.passed and c.column is not None and c.column in frames["train"].columns]
            ordered = list(dict.fromkeys([*flagged, *map(str, frames["train"].columns)]))[: self.config.plot_columns]
            if ordered:
                png = distribution_grid(frames, ordered)
                sections.append(("Distributions per column (flagged columns first)", html_image(png, "per-column distributions")))
        return sections


def _read_json(path: str, field: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"steps.validate.params.{field}: file not found: {file}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"steps.validate.params.{field}: not valid JSON: {exc}") from None
