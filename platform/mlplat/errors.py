"""Every error mlplat reports, in one tree. The CLI maps them to exit codes, the servers to HTTP statuses.

    MlplatError                      exit 1; reported as one line, no traceback (unless --debug)
    ├── UsageError                   exit 2: bad input from the user (an option, a path, a file)
    │   ├── SpecError                  a spec or plugin config is invalid; `problems` are (field path, message)
    │   ├── PluginUnavailable          a selected plugin is unknown, ambiguous, broken, or its extra is missing
    │   └── ModelDirError              a model directory is missing, corrupt or of an unsupported format
    ├── PluginError                  exit 1: a plugin raised, or broke its contract; names step, plugin, distribution
    ├── GateFailed                   exit 1: a validation or evaluation gate blocked the run; nothing is published
    ├── ServingError                 an HTTP request failed; `status` is the HTTP status the server answers with
    │   ├── InvalidInput               400: the body does not match the model's schema
    │   ├── NotFound                   404: unknown model, or a capability the model was published without
    │   ├── PayloadTooLarge            413
    │   ├── UnsupportedMediaType       415
    │   ├── UpstreamError              502: the predictor an explainer calls failed
    │   ├── Busy                       503: try again later (an explanation still runs)
    │   └── Timeout                    504: the work took longer than its limit
    └── MonitoringError              monitoring refused an input; `status` as for ServingError
        ├── BadFeedback                422: a label that is no class of the model (as FastAPI answers a feedback
        │                                   body that fails its schema; unknown request ids are reported, not refused)
        ├── BadEvent                   400: a malformed payload-logger CloudEvent
        ├── Unauthorized               401: a monitoring input without the right bearer token
        ├── Forbidden                  403: monitoring inputs are off (no token configured)
        └── LabelConflict              409: a request id that already has a different label

`http_status(exc)` is the one place an exception becomes a status code.
"""

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


class PluginUnavailable(UsageError):
    """A plugin cannot be found, is offered twice, fails to import, or needs an extra that is not installed."""


class ModelDirError(UsageError):
    """A model directory cannot be used: missing, unreadable, inconsistent, or of an unknown format version."""


class PluginError(MlplatError):
    """A plugin failed while it ran: it raised, or returned something its contract does not allow.

    The message names the step, the plugin and the distribution that ships it, so the user knows whom to ask."""

    def __init__(self, message: str, *, step: str = "", plugin: str = "", distribution: str = "") -> None:
        self.step, self.plugin, self.distribution = step, plugin, distribution
        where = ", ".join(p for p in (f"step {step}" if step else "", f"plugin {plugin!r}" if plugin else "",
                                      f"from {distribution}" if distribution else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class GateFailed(MlplatError):
    """A quality gate (validation or evaluation) blocked the run. Exit code 1; nothing is published."""

    def __init__(self, gate: str, reasons: list[str], report: str | None = None) -> None:
        self.gate = gate
        self.reasons = reasons
        self.report = report
        detail = "; ".join(reasons) if reasons else "no reason given"
        tail = f" (report: {report})" if report else ""
        super().__init__(f"{gate} gate failed: {detail}{tail}")


class ServingError(MlplatError):
    """A request the server refuses or cannot complete; `status` is its HTTP status."""

    status = 500


class InvalidInput(ServingError):
    status = 400

    def __init__(self, message: str, reason: str = "malformed") -> None:
        self.reason = reason  # the `reason` label of mlplat_rejected_requests_total
        super().__init__(message)


class NotFound(ServingError):
    status = 404


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class UpstreamError(ServingError):
    status = 502


class Busy(ServingError):
    status = 503


class Timeout(ServingError):
    status = 504


class MonitoringError(MlplatError):
    """An input monitoring refuses; `status` is the HTTP status its routes answer with."""

    status = 400


class BadFeedback(MonitoringError):
    status = 422


class BadEvent(MonitoringError):
    status = 400


class Unauthorized(MonitoringError):
    status = 401


class Forbidden(MonitoringError):
    status = 403


class LabelConflict(MonitoringError):
    status = 409


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception: its own for serving and monitoring errors, 400 for usage errors, else 500."""
    if isinstance(exc, (ServingError, MonitoringError)):
        return exc.status
    if isinstance(exc, UsageError):
        return 400
    return 500
