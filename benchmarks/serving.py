"""`mlplat serve` vs a naive `kserve.Model`, same network, same load generator, same run.

    python benchmarks/serving.py                  # both cases, 10 s per arm, 2 rounds
    python benchmarks/serving.py --duration 5 --rounds 1 --cases small

Arms: (1) `mlplat serve MODEL_DIR` as a subprocess on 127.0.0.1 with its defaults (schema
validation, request guard, Prometheus metrics, adaptive batching; drift monitoring off with
--no-monitor unless --monitor); (2) a naive `kserve.Model` in its own ModelServer process:
V1 `predict` is a plain `def` doing `np.asarray → forward → tolist` (standardize + network +
softmax, exactly what the model directory prescribes), no batching, no validation.

Both serve the same model directory, written with the repo's own model-dir code
(`ModelDir`, the torch_trainers `mlp` architecture; random weights, 30 features).
Load: wrk (Debian package `wrk`) with a Lua script POSTing one V1 row per request; both arms
get identical wrk runs, alternated over `--rounds`, best round of each kept (on a shared
machine interference only ever slows an arm down).

Cases and targets:
  (a) small MLP 30→256→256→2, 1 row/request, 8 connections:  throughput ≥ 0.95× naive
  (b) heavy MLP 30→2048→2048→2, 1 row/request, 32 connections: throughput ≥ 1.5× naive, p99 ≤ naive

Explain latency is measured by benchmarks/explainers.py.

Measured 2026-12-01 on the 2-core dev VM, idle apart from the benchmark (the server gets one core,
wrk the other), OMP_NUM_THREADS=1, `--no-monitor` unless noted, 8 s x 2 rounds (83 s per run):

    case   arm     req/s   p50 ms  p99 ms  CPU ms/req   ratio (mlplat/naive)
    small  naive   4102.6   1.94    2.28   0.244
    small  mlplat  4283.3   1.83    2.92   0.233        1.04x req/s          PASS (>= 0.95x)
    heavy  naive   1788.8  17.58   21.41   0.560
    heavy  mlplat  3455.6   8.64   13.49   0.389        1.93x req/s, p99 0.63 PASS (>= 1.5x, p99 <= 1)

A second run: small 1.05x (p99 2.51 vs 1.92 ms), heavy 1.61x (p99 0.73). With --monitor (every
request recorded for drift): small 0.98x. After the later request-path changes (every 4xx counted,
inline estimates per pass size): small 1.01x; heavy 1.43x (p99 0.83) and 1.58x (p99 0.69), then
1.50-1.64x in three 6 s runs. Heavy swings 1.43-1.93x over the day's runs because the server's two
threads (loop + forward) and wrk share the VM's two cores: it is bound by the machine, not by one
thread. What got (a) there, each measured with this script:
- cheap passes on the event loop (batching.py): a thread round trip costs ~55 us of CPU, more than
  the small MLP's 1-row forward (29 us); with `--inline-forward-ms 0` (always the forward thread)
  small is 0.81x. Heavy passes (~1 ms+) still go to the thread, so the loop never stalls on them.
- `gc.freeze()` after loading (mlplat.heap): without it every full collection walked the millions
  ~300k objects torch and kserve leave behind and paused the loop ~120 ms: a p99 of 110-140 ms in both
  cases (heavy was 1.39x with p99 6.8x naive's; small p99 56x naive's).
- the V1 row check runs in C for well-formed rows (9 -> 5 us per 30-feature row); the per-value
  loop runs only to name an offending value.
Earlier figures (2026-11-22, the same VM under load average 4-8 from other jobs: 220-290 req/s)
were bound by the shared cores, not by the server; the ratios there were 0.77-1.33x (small) and
1.76-2.34x (heavy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FEATURES = 30
CASES = {  # name: (hidden layers, wrk connections, throughput target vs naive, p99 must not be worse)
    "small": ([256, 256], 8, 0.95, False),
    "heavy": ([2048, 2048], 32, 1.5, True),
}
MODEL = "bench"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


def write_model(directory: Path, hidden: list[int], seed: int = 0) -> Path:
    """A model directory for an MLP with random weights, through the repo's own model-dir code."""
    import pandas as pd
    import torch
    from mlplat.manifest import ModelManifest, PluginRef
    from mlplat.modeldir import ModelDir, feature_schema
    from mlplat.preprocessing import Standardizer
    from mlplat_plugins.torch_trainers.networks import build_network

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, N_FEATURES)).astype(np.float32) * 3 + 10
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    architecture = {"type": "mlp", "in_features": N_FEATURES, "n_classes": 2, "hidden": hidden, "dropout": 0.0,
                    "norm": "none", "activation": "relu"}
    torch.manual_seed(seed)
    network = build_network(architecture)
    manifest = ModelManifest(name=MODEL, trainer=PluginRef(plugin="mlp"), architecture=architecture,
                             features=feature_schema(frame), label="y", classes=["no", "yes"],
                             preprocessing=Standardizer.fit(X).to_json(), seed=seed, created_at=time.time(),
                             training_wall_s=0.0)
    model_dir = ModelDir(directory)
    model_dir.write_weights(network)
    model_dir.write(manifest)
    frame.assign(y=rng.integers(0, 2, len(frame))).to_parquet(model_dir.reference)
    return directory


def naive_server(model_dir: Path, port: int) -> None:
    """The baseline: a plain kserve.Model, sync predict on the event loop, no batching or checks."""
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import
    import logging

    import kserve
    from mlplat.modeldir import LoadedModel

    class NaiveModel(kserve.Model):
        def load(self) -> bool:
            self.model = LoadedModel.load(model_dir)
            self.ready = True
            return True

        def predict(self, payload: dict, headers: dict | None = None) -> dict:
            return {"predictions": self.model.predict_proba(np.asarray(payload["instances"], dtype=np.float32)).tolist()}

    model = NaiveModel(MODEL)
    model.load()
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for name in ("kserve.trace", "uvicorn.access"):  # same as mlplat serve without --access-log
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float  # server process CPU time per request (user + sys, all threads): the cost interference can't inflate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{MODEL}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{command[:4]} not ready in 180 s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check(port: int, body: str) -> None:
    """Both arms answer the same request with the same probabilities' shape before being timed."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        predictions = json.loads(r.read())["predictions"]
    assert len(predictions) == 1, predictions


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, script: Path, connections: int, duration: float, threads: int, pid: int) -> Result:
    cpu = cpu_seconds(pid)
    done = subprocess.run(["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                           "-s", str(script), f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict"],
                          capture_output=True, text=True, check=True)
    cpu = cpu_seconds(pid) - cpu
    out = done.stdout
    latency = {p: to_ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Result(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), latency["50"], latency["99"], errors,
                  1000 * cpu / max(requests, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per arm (best kept)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--monitor", action="store_true", help="also record requests for drift monitoring")
    parser.add_argument("--mlplat-args", default="", help="extra `mlplat serve` options, e.g. '--max-latency-ms 2'")
    parser.add_argument("--naive-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(Path(args.naive_server[0]), int(args.naive_server[1]))
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    mlplat = [sys.executable, "-m", "mlplat"]
    body = json.dumps({"instances": [[10.0 + 0.1 * i for i in range(N_FEATURES)]]})
    began = time.perf_counter()
    print(f"cpus={os.cpu_count()} duration={args.duration}s rounds={args.rounds} wrk_threads={args.wrk_threads} "
          f"monitor={args.monitor} torch_threads(OMP)={os.environ.get('OMP_NUM_THREADS', '1')}")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "post.lua"
        script.write_text(LUA % body)
        for case in args.cases:
            hidden, connections, target, p99_matters = CASES[case]
            model_dir = write_model(work / case, hidden)
            ports = {"mlplat": free_port(), "naive": free_port()}
            commands = {
                "mlplat": [*mlplat, "serve", str(model_dir), "--port", str(ports["mlplat"]),
                           *([] if args.monitor else ["--no-monitor"]), *args.mlplat_args.split()],
                "naive": [sys.executable, __file__, "--naive-server", str(model_dir), str(ports["naive"])],
            }
            procs = {}
            try:
                for arm, command in commands.items():
                    procs[arm] = start(command, ports[arm], work / f"{case}-{arm}.log")
                    check(ports[arm], body)
                    wrk(ports[arm], script, connections, 2.0, args.wrk_threads, procs[arm].pid)  # warm-up
                best: dict[str, Result] = {}
                for _ in range(args.rounds):
                    for arm in ("naive", "mlplat"):
                        r = wrk(ports[arm], script, connections, args.duration, args.wrk_threads, procs[arm].pid)
                        if arm not in best or r.rps > best[arm].rps:
                            best[arm] = r
            finally:
                for proc in procs.values():
                    stop(proc)
            m, n = best["mlplat"], best["naive"]
            ratio = m.rps / n.rps
            ok = ratio >= target and (not p99_matters or m.p99_ms <= n.p99_ms) and m.errors == 0 and n.errors == 0
            verdicts.append(ok)
            print(f"\n({case}) MLP 30→{'→'.join(map(str, hidden))}→2, 1 row/request, {connections} connections")
            print(f"  {'arm':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'server CPU ms/req':>18}")
            for arm, r in (("naive", n), ("mlplat", m)):
                print(f"  {arm:8} {r.rps:9.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:6d} {r.cpu_ms:18.3f}")
            print(f"  throughput ratio {ratio:.2f}x (target >= {target}x), p50 ratio {m.p50_ms / n.p50_ms:.2f}, "
                  f"p99 ratio {m.p99_ms / n.p99_ms:.2f}{' (target <= 1)' if p99_matters else ''}: "
                  f"{'PASS' if ok else 'MISS'}")
            print(f"  server CPU per request: mlplat {m.cpu_ms / n.cpu_ms:.2f}x naive's "
                  f"(throughput a dedicated core would give: {n.cpu_ms / m.cpu_ms:.2f}x)")
    print(f"\nrun time {time.perf_counter() - began:.0f} s; targets met: {sum(verdicts)}/{len(verdicts)}")


if __name__ == "__main__":
    main()
