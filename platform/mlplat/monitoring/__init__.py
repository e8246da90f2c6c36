"""Production monitoring: record requests, take labels, evaluate drift and the generalization
gap off the request path, export Prometheus gauges.

`attach(model_dir)` gives a server everything it needs: the recorder its predictor calls on
every validated request, the feedback/summary routers (inputs closed unless `settings.inputs`
opens them) and the start/stop hooks of the background evaluation. The standalone `mlplat monitor` service (`service.create_app`) runs the
same monitor fed by KServe payload-logger CloudEvents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from mlplat.monitoring.monitor import Monitor, MonitorSettings


class Attachment(NamedTuple):
    recorder: Any  # has .record(rows, predictions, request_ids, probabilities=None)
    routers: list[Any]  # fastapi.APIRouter
    hooks: tuple[Callable[[], None], Callable[[], None]]  # (start, stop)
    monitor: Monitor


def attach(model_dir: Path, settings: MonitorSettings | None = None) -> Attachment:
    from mlplat.monitoring.monitor import Monitor
    from mlplat.monitoring.service import router

    monitor = Monitor(Path(model_dir), settings)
    routes = router({monitor.name: monitor}, monitor.settings.inputs)
    return Attachment(monitor.window, [routes], (monitor.start, monitor.stop), monitor)
