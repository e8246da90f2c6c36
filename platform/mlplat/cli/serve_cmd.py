"""`mlplat serve`: a published model behind KServe's ModelServer (predictor or explainer role)."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import MONITOR_CONSECUTIVE_OPTION, MONITOR_MIN_NEW_ROWS_OPTION, MONITOR_WINDOW_OPTION, RUNS_DIR_OPTION


def serve(
    ref: str = typer.Argument(..., metavar="RUN", help="Run id, `latest`, a run or model directory, or a file:// URI"),
    runs_dir: Path = RUNS_DIR_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (0.0.0.0 only inside a container)"),
    port: int = typer.Option(8080, "--port", "--http_port", min=1, max=65535, help="--http_port: as the KServe controller appends it"),
    max_batch_size: int = typer.Option(64, "--max-batch-size", min=1, help="Rows per merged forward pass"),
    max_latency_ms: float = typer.Option(0.0, "--max-latency-ms", min=0,
                                         help="Extra wait to fill a batch (0: merge only what queued during the last pass)"),
    no_batching: bool = typer.Option(False, "--no-batching", help="One forward pass per request"),
    inline_forward_ms: float = typer.Option(0.5, "--inline-forward-ms", min=0,
                                            help="Forward passes measured cheaper than this run on the event loop, slower ones "
                                                 "on the forward thread (0: always the thread)"),
    max_body_bytes: int = typer.Option(4 << 20, "--max-body-bytes", min=1, help="Larger request bodies get HTTP 413"),
    max_rows: int = typer.Option(10_000, "--max-rows", min=1, help="Most instances in one request"),
    max_request_images: int = typer.Option(64, "--max-request-images", min=1,
                                           help="An image model: most images in one request (more get HTTP 400)"),
    max_explain_rows: int = typer.Option(100, "--max-explain-rows", min=1, help="Most instances in one :explain request"),
    explain_timeout_s: float = typer.Option(30.0, "--explain-timeout-s", min=0.01, help="Explanations slower than this get HTTP 504"),
    no_monitor: bool = typer.Option(False, "--no-monitor", help="Don't record requests for drift monitoring"),
    monitor_interval_s: float = typer.Option(30.0, "--monitor-interval-s", min=0.05, help="Seconds between drift evaluations"),
    state_dir: Path = typer.Option(None, "--state-dir", help="Persist the monitoring window and labels here"),
    window: int = MONITOR_WINDOW_OPTION,
    consecutive: int = MONITOR_CONSECUTIVE_OPTION,
    min_new_rows: int = MONITOR_MIN_NEW_ROWS_OPTION,
    token_file: Path = typer.Option(None, "--token-file",
                                 help="Bearer token for /feedback, monitor/evaluate and the explainer's marker"),
    insecure_monitoring_inputs: bool = typer.Option(False, "--insecure-monitoring-inputs",
                                                    help="No token: take feedback and evaluate from anyone"),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (KServe timings and access lines)"),
    explainer: bool = typer.Option(False, "--explainer", help="Run as the explainer component; predictions come from --predictor-url"),
    predictor_url: str = typer.Option(None, "--predictor-url", help="Predictor base URL for --explainer, e.g. http://127.0.0.1:8080"),
    predictor_batch_rows: int = typer.Option(256, "--predictor-batch-rows", min=1,
                                             help="--explainer: most rows per request to the predictor (keep under its --max-rows)"),
    # the arguments the KServe controller (v0.20, pkg/apis/serving/v1beta1/explainer_custom.go) appends to a custom
    # explainer's container: --model_name ISVC --predictor_host PREDICTOR.NAMESPACE --http_port 8080 [--workers N]
    model_name: str = typer.Option(None, "--model_name", help="KServe: the InferenceService's name, served as an alias"),
    predictor_host: str = typer.Option(None, "--predictor_host", help="KServe: the predictor's host[:port] (implies --explainer)"),
    workers: int = typer.Option(1, "--workers", min=1, help="KServe: worker count (one process serves; more is ignored)"),
    enable_model_admin: bool = typer.Option(False, "--enable-model-admin", help="Serve /v2/repository load/unload (unauthenticated)"),
    drain_s: float = typer.Option(0.0, "--drain-s", min=0,
                                  help="On SIGTERM: seconds not ready but still serving, before the listener closes"),
    shutdown_timeout_s: int = typer.Option(35, "--shutdown-timeout-s", min=1,
                                           help="On SIGTERM: most seconds in-flight requests get (above --explain-timeout-s)"),
    header_timeout_s: float = typer.Option(10.0, "--header-timeout-s", min=0.01,
                                           help="A request's line and headers must arrive within this (else 408)"),
    body_timeout_s: float = typer.Option(30.0, "--body-timeout-s", min=0.01,
                                         help="A request's body must arrive within this after its headers (else 408)"),
) -> None:
    """Serve a published model: V1 :predict/:explain, V2 infer + metadata, /metrics."""
    from mlplat.errors import UsageError

    if predictor_host:
        if predictor_url:
            raise UsageError("--predictor_host and --predictor-url both name the predictor: give one")
        explainer, predictor_url = True, f"http://{predictor_host}"
    if workers > 1:
        import logging

        logging.getLogger("mlplat.serve").warning("--workers %d: serving with one worker process", workers)
    if explainer != bool(predictor_url):
        raise UsageError("--explainer and --predictor-url go together: the explainer asks the predictor for predictions")
    if predictor_url and not predictor_url.startswith(("http://", "https://")):
        raise UsageError(f"--predictor-url: {predictor_url!r} is not an http(s) URL")
    from mlplat.modeldir import resolve_model

    model_dir = resolve_model(ref, runs_dir).path

    from mlplat.monitoring.inputs import InputPolicy
    from mlplat.monitoring.monitor import MonitorSettings
    from mlplat.serving.predictor import ServingOptions
    from mlplat.serving.server import ReadTimeouts
    from mlplat.serving.server import serve as run_server

    inputs = InputPolicy.from_options(token_file, insecure_monitoring_inputs)
    options = ServingOptions(max_batch_size, max_latency_ms, not no_batching, max_rows, explain_timeout_s, predictor_url,
                             predictor_batch_rows, inline_forward_ms, inputs.token, max_explain_rows,
                             max_request_images=max_request_images)
    settings = MonitorSettings(capacity=window, interval_s=monitor_interval_s, consecutive=consecutive,
                               min_new_rows=min_new_rows, state_dir=state_dir, inputs=inputs)
    run_server(model_dir, options, host, port, max_body_bytes, None if no_monitor else settings, access_log,
               enable_model_admin, model_name, drain_s, shutdown_timeout_s, ReadTimeouts(header_timeout_s, body_timeout_s))
