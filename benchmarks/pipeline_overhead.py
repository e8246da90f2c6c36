"""Pipeline overhead: the demo pipeline in-process vs through kfp.local, run as a user would.

Each runner runs in a fresh `python -m mlplat run` process (imports included, as for a user).
Figures:
- wall time of each run and the ratio kfp.local / in-process (the baseline, same machine, same run);
- in-process orchestration overhead: the runner's span (run.json started_at..finished_at) minus
  the summed step times, as % of step compute (target < 10 %);
- the same split for kfp.local, where the gap is kfp.local's executor processes and artifact I/O.

    .venv/bin/python benchmarks/pipeline_overhead.py [--spec pipelines/demo.yaml]

Measured 2026-12-01 on the idle 2-core dev VM, demo.yaml, 37 s: in-process 11.69 s wall (runner span
9.79 s, steps 9.78 s: orchestration overhead 0.14 % of step compute, target < 10 %: met);
kfp.local 25.73 s (step compute 17.16 s, 45 % in kfp.local's executor processes and artifact I/O),
ratio 2.20x; identical test metrics. breast_cancer.yaml: 6.28 s vs 10.98 s (1.75x), overhead 0.17 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(spec: Path, runs_dir: Path, runner: str) -> dict[str, float | dict[str, float]]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlplat", "run", str(spec), "--runner", runner, "--runs-dir", str(runs_dir)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - started
    [run_dir] = [p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()]
    record = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = metrics["step_seconds"]
    return {"wall": wall, "span": record["finished_at"] - record["started_at"], "steps": sum(steps.values()),
            "per_step": steps, "test": metrics["test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "pipelines/demo.yaml", help="pipeline spec [default: the demo pipeline]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = run(args.spec, Path(tmp) / "in-process", "in-process")
        kfp = run(args.spec, Path(tmp) / "kfp-local", "kfp-local")
    print(f"pipeline: {args.spec.name}")
    print(f"{'runner':<12}{'wall s':>9}{'runner span s':>15}{'step compute s':>16}{'overhead':>10}")
    for name, r in (("in-process", base), ("kfp.local", kfp)):
        overhead = (r["span"] - r["steps"]) / r["steps"]
        print(f"{name:<12}{r['wall']:>9.2f}{r['span']:>15.2f}{r['steps']:>16.2f}{overhead:>9.1%}")
    def kfp_step(name: str) -> str:  # kfp.local's publish is a component without a timed step process
        return f"{kfp['per_step'][name]:.2f}" if name in kfp["per_step"] else "-"

    print("per step (s), in-process / kfp.local:  " +
          "  ".join(f"{k}: {v:.2f} / {kfp_step(k)}" for k, v in base["per_step"].items()))
    print(f"kfp.local / in-process wall ratio: {kfp['wall'] / base['wall']:.2f}x")
    in_process_overhead = (base["span"] - base["steps"]) / base["steps"]
    print(f"in-process orchestration overhead: {in_process_overhead:.2%} of step compute "
          f"({'meets' if in_process_overhead < 0.10 else 'MISSES'} the < 10% target)")
    print(f"same test metrics: {base['test'] == kfp['test']}")


if __name__ == "__main__":
    main()
