"""The validation report in three forms: JSON for machines, HTML for people, Markdown for the KFP UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlplat.contracts.validator import ValidationReport
from mlplat.reports import html_page, html_table, markdown_table, write_json

HEADERS = ("check", "status", "severity", "column", "expected", "observed", "message")


def _status(check: Any) -> str:
    return "ok" if check.passed else check.severity


def _row(check: Any) -> tuple[Any, ...]:
    return (check.check, _status(check), check.severity, check.column, check.expected, check.observed, check.message)


def markdown_summary(report: ValidationReport, title: str) -> str:
    verdict = "**PASSED**" if report.passed else "**FAILED**"
    failed = [c for c in report.checks if not c.passed]
    lines = [f"## {title}", "", f"Gate: {verdict} — {len(report.blocking)} blocking, {len(report.warnings)} warnings, "
             f"{len(report.checks)} checks."]
    if failed:
        lines += ["", markdown_table(HEADERS, (_row(c) for c in failed))]
    return "\n".join(lines) + "\n"


def write_validation_report(report: ValidationReport, out: Path, title: str, extra_sections: list[tuple[str, str]] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report.to_dict())
    (out / "report.md").write_text(markdown_summary(report, title))
    ordered = sorted(report.checks, key=lambda c: (c.passed, {"fail": 0, "warn": 1, "info": 2}[c.severity]))
    sections = [
        ("Gate", f"<p class='{'ok' if report.passed else 'fail'}'>{'PASSED' if report.passed else 'FAILED'}: "
                 f"{len(report.blocking)} blocking, {len(report.warnings)} warnings</p>"),
        ("Checks", html_table(HEADERS, (_row(c) for c in ordered), [_status(c) for c in ordered])),
        *report.html_sections,
        *(extra_sections or []),
    ]
    (out / "report.html").write_text(html_page(title, sections))
