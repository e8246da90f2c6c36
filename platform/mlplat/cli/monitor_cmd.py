"""`mlplat monitor`: the monitor as its own service (KServe payload logger + feedback + /metrics)."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import MONITOR_CONSECUTIVE_OPTION, MONITOR_MIN_NEW_ROWS_OPTION, MONITOR_WINDOW_OPTION, RUNS_DIR_OPTION
from mlplat.monitoring.inputs import DEFAULT_MAX_BODY_BYTES


def monitor(
    models: list[str] = typer.Argument(..., metavar="MODEL...", help="Model or run directories, run ids, `latest`, "
                                                                    "or model store URIs (s3://, gs://, pvc://, file://)"),
    runs_dir: Path = RUNS_DIR_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (0.0.0.0 in a container)"),
    port: int = typer.Option(8090, "--port", min=0, max=65535),
    state_dir: Path = typer.Option(None, "--state-dir", help="Persist window, labels and report here (one subdir per model)"),
    window: int = MONITOR_WINDOW_OPTION,
    interval: float = typer.Option(30.0, "--interval", min=0.05, help="Seconds between evaluations"),
    consecutive: int = MONITOR_CONSECUTIVE_OPTION,
    min_new_rows: int = MONITOR_MIN_NEW_ROWS_OPTION,
    min_labels: int = typer.Option(50, "--min-labels", min=1, help="Labeled rows before accuracy and the gap are exported"),
    report_interval: float = typer.Option(300.0, "--report-interval", min=0, help="Seconds between Evidently HTML reports"),
    token_file: Path = typer.Option(None, "--token-file",
                                 help="Bearer token that events, feedback and evaluate need (403 without one)"),
    insecure_monitoring_inputs: bool = typer.Option(False, "--insecure-monitoring-inputs",
                                                    help="No token: take events, feedback, evaluate from anyone"),
    events_port: int = typer.Option(None, "--events-port", min=1, max=65535,
                                    help="Also serve the CloudEvents sink here, without a token (for KServe's logger)"),
    max_body_bytes: int = typer.Option(DEFAULT_MAX_BODY_BYTES, "--max-body-bytes", min=1, help="Larger bodies get HTTP 413"),
    drain_s: float = typer.Option(0.0, "--drain-s", min=0, help="On SIGTERM: seconds /healthz answers 503 while still serving"),
    shutdown_timeout_s: int = typer.Option(20, "--shutdown-timeout-s", min=1,
                                           help="On SIGTERM: most seconds in-flight requests get to finish"),
) -> None:
    """Serve the monitor: POST CloudEvents to / (InferenceService logger.url), feedback to
    /v1/models/NAME/feedback, scrape /metrics."""
    import asyncio

    from mlplat.errors import UsageError
    from mlplat.heap import freeze_startup_heap
    from mlplat.modeldir import resolve_model
    from mlplat.monitoring.inputs import InputPolicy
    from mlplat.monitoring.monitor import Monitor, MonitorSettings
    from mlplat.monitoring.service import create_app, create_events_app
    from mlplat.serving.shutdown import GracefulServer, serve_gracefully, server_config

    inputs = InputPolicy.from_options(token_file, insecure_monitoring_inputs, max_body_bytes)
    monitors: dict[str, Monitor] = {}
    for ref in models:
        model_dir = resolve_model(ref, runs_dir)
        name = model_dir.read().name
        if name in monitors:
            raise UsageError(f"MODEL: two model directories are both named {name!r}")
        settings = MonitorSettings(window, interval, consecutive, min_new_rows, min_labels,
                                   report_interval_s=report_interval,
                                   state_dir=state_dir / name if state_dir is not None else None, inputs=inputs)
        monitors[name] = Monitor(model_dir.path, settings)
    app = create_app(monitors, inputs)
    servers = [GracefulServer(server_config(app, host, port, shutdown_timeout_s))]
    if events_port is not None:
        if events_port == port:
            raise UsageError("--events-port must differ from --port: it is the port without a token")
        events = create_events_app(app.state.sink, max_body_bytes)
        servers.append(GracefulServer(server_config(events, host, events_port, shutdown_timeout_s, lifespan="off")))
    freeze_startup_heap()

    def drain() -> None:
        app.state.draining = True  # /healthz: 503

    # one handler stops both servers; the lifespan shutdown saves every monitor's state
    asyncio.run(serve_gracefully(servers, drain_s, drain))
