"""Validator contract: check a dataset and report what is wrong with it.

A validator returns a `ValidationReport`. Every check names the column, the expectation
and the observed value, and carries a severity. The runner's gate fails the run when any
failed check has severity "fail"; it then writes the report and publishes nothing.
`schema` (the inferred training schema) is saved with the model for serving and monitoring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from mlplat.contracts.context import StepContext
from mlplat.data import Splits

Severity = Literal["info", "warn", "fail"]


@dataclass
class CheckResult:
    check: str
    passed: bool
    severity: Severity
    message: str
    column: str | None = None
    expected: Any = None
    observed: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """How a gate names this check when it fails."""
        return f"{self.check}: {self.message} (expected {self.expected}, observed {self.observed})"


@dataclass
class ValidationReport:
    checks: list[CheckResult]
    schema: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)  # handed to later steps, e.g. noisy row ids
    # extra (heading, HTML) sections for the HTML report, e.g. distribution plots; not part of the JSON
    html_sections: list[tuple[str, str]] = field(default_factory=list)

    @property
    def blocking(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "schema": self.schema,
            "findings": self.findings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        """A report read back from its report.json (`to_dict`)."""
        return cls([CheckResult(**c) for c in data.get("checks", [])], data.get("schema", {}), data.get("findings", {}))


@runtime_checkable
class Validator(Protocol):
    def validate(self, splits: Splits, context: StepContext) -> ValidationReport:
        """Check all splits (train is the reference); never modify them."""
        ...
