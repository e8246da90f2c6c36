"""Serving a CNN: images/s and p99 of `mlplat serve` against a naive `kserve.Model` that decodes and predicts one
image per request (benchmarks/naive_image_model.py), 32 connections of an async httpx client, same run.
Targets: >= 2x the throughput, p99 no worse.

    .venv/bin/python benchmarks/image_serving.py [--seconds 15] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}")
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready")


async def load(url: str, bodies: list[dict], seconds: float, connections: int) -> tuple[int, np.ndarray, int]:
    """`connections` keep-alive HTTP/1.1 connections, each sending its next request when the last answer is in.

    A raw asyncio client with the request bytes built once: httpx's async client spent ~3 ms of CPU per request
    here, so it saturated at ~100 requests/s even against a FastAPI app that does nothing, and measured itself."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n".encode() + body for body in (json.dumps(b).encode() for b in bodies)]
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        i = k
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            await reader.readexactly(lengths[0] if lengths else 0)
            latencies.append(time.perf_counter() - started)
            errors += head[9:12] != b"200"
            i += connections
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))
    return len(latencies), np.asarray(latencies), errors


def measure(name: str, command: list[str], port: int, model: str, bodies: list[dict], args: argparse.Namespace) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        url = f"{base}/v1/models/{model}:predict"
        asyncio.run(load(url, bodies, 2, args.connections))  # warm-up
        count, latencies, errors = asyncio.run(load(url, bodies, args.seconds, args.connections))
    finally:
        process.terminate()
        process.wait(timeout=30)
    rate, p99 = count / args.seconds, float(np.percentile(latencies, 99) * 1000)
    print(f"{name:28s} {rate:8.1f} images/s   p50 {np.percentile(latencies, 50) * 1000:7.1f} ms   p99 {p99:7.1f} ms   errors {errors}")
    return rate, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    from mlplat.testing.image_model import png, shapes, write_image_model
    from serving_server import free_port

    # the images demo's CNN size (pipelines/images_demo.yaml): accuracy does not matter here, the forward pass does
    model_dir = write_image_model(Path(tempfile.mkdtemp(prefix="mlplat-image-serving-")) / "model", steps=5,
                                  train_images=128, reference_images=64, channels=(16, 32), hidden=64)
    bodies = [{"instances": [{"image": {"b64": base64.b64encode(png(p)).decode()}}]} for p in shapes(64, seed=5)[0]]
    port = free_port()
    naive = measure("naive kserve.Model", [sys.executable, str(HERE / "naive_image_model.py"), str(model_dir), str(port)],
                    port, "shapes", bodies, args)
    port = free_port()
    mlplat = measure("mlplat serve", [sys.executable, "-m", "mlplat", "serve", str(model_dir), "--port", str(port)],
                     port, "shapes", bodies, args)
    port = free_port()
    measure("mlplat serve --no-monitor", [sys.executable, "-m", "mlplat", "serve", str(model_dir), "--port", str(port),
                                          "--no-monitor"], port, "shapes", bodies, args)
    throughput, p99 = mlplat[0] / naive[0], mlplat[1] / naive[1]
    print(f"\n{'PASS' if throughput >= 2 else 'MISS'}  throughput >= 2x the naive kserve.Model: {throughput:.2f}x")
    print(f"{'PASS' if p99 <= 1 else 'MISS'}  p99 no worse: {p99:.2f}x the naive p99")


if __name__ == "__main__":
    main()
