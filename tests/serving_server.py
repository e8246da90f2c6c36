"""Start `mlplat serve` as a real subprocess on 127.0.0.1 for tests (and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_process(port: int) -> psutil.Process:
    """The process listening on 127.0.0.1:`port`."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise LookupError(f"nothing listens on port {port}")


@contextmanager
def running_server(model_dir: Path, *args: str, timeout_s: float = 120) -> Iterator[str]:
    """Yields the base URL once the model reports ready; stops the server afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "mlplat", "serve", str(model_dir), "--port", str(port), *args]
    # a file, not a pipe: nobody drains a pipe while tests run, and a full one blocks the server's logging
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited {process.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready in time")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
