"""Errors users see. Each one names the problem; the CLI maps them to exit codes."""

from __future__ import annotations


class MlplatError(Exception):
    """Base class for errors that are reported without a traceback."""

    exit_code = 1


class UsageError(MlplatError):
    """Bad input from the user: a spec, a parameter, a path. Exit code 2."""

    exit_code = 2


class SpecError(UsageError):
    """A pipeline spec or plugin config is invalid; `problems` are (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path}: {message}" if path else message for path, message in problems]
        where = f"{source}: " if source else ""
        super().__init__(where + ("invalid spec\n  " if len(lines) > 1 else "") + "\n  ".join(lines))


class PluginError(UsageError):
    """A plugin cannot be found, is ambiguous, or fails to load."""


class GateFailed(MlplatError):
    """A quality gate (validation or evaluation) blocked the run. Exit code 1; nothing is published."""

    def __init__(self, gate: str, reasons: list[str], report: str | None = None) -> None:
        self.gate = gate
        self.reasons = reasons
        self.report = report
        detail = "; ".join(reasons) if reasons else "no reason given"
        tail = f" (report: {report})" if report else ""
        super().__init__(f"{gate} gate failed: {detail}{tail}")
