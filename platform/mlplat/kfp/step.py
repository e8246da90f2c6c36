"""`python -m mlplat.kfp.step KIND ...`: run one pipeline step inside a container.

A KFP component launches this process with its artifact paths. It rebuilds the resolved
spec from JSON, applies the component's plugin name and params (what the Kubeflow UI shows
is what runs), and calls the step function from `mlplat.steps`, the one the in-process
runner calls, so both produce the same results. Steps that amend a model directory
(evaluate, explain, drift) copy their input model first: KFP artifacts are immutable.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mlplat.errors import GateFailed
from mlplat.plan import MODEL, STEP_PROCESS_KINDS, GateResult, node
from mlplat.spec import PipelineSpec, StepSpec

KINDS = STEP_PROCESS_KINDS
STEP_JSON = "step.json"  # {"kind", "seconds"}: what the kfp-local runner reports as step time


def spec_for_step(spec_json: str, kind: str, plugin: str = "", params_json: str = "") -> PipelineSpec:
    """The resolved spec with this step's plugin and params taken from the component's parameters."""
    spec = PipelineSpec.model_validate_json(spec_json)
    target = node(kind)
    configured = target.configured(spec)
    if not params_json or configured is None or target.field is None:
        return spec
    params = json.loads(params_json)
    if isinstance(configured, list):  # a chain (augment) runs as one task: plugins comma-joined, params a list
        setattr(spec.steps, target.field, [StepSpec(plugin=name, params=p)
                                               for name, p in zip(plugin.split(","), params, strict=True)])
    elif isinstance(configured, StepSpec):
        configured.plugin, configured.params = plugin, params
    else:  # a step without a plugin (evaluate): params only
        configured.params = type(configured.params).model_validate(params)
    return spec


def step_parameters(spec: PipelineSpec, kind: str) -> tuple[str, str]:
    """(plugin, params JSON) a component gets for this step; the inverse of `spec_for_step`."""
    configured = node(kind).configured(spec)
    if configured is None:
        return "", ""
    if isinstance(configured, list):
        return ",".join(s.plugin for s in configured), json.dumps([s.params for s in configured], sort_keys=True)
    if isinstance(configured, StepSpec):
        return configured.plugin, json.dumps(configured.params, sort_keys=True)
    return "", json.dumps(configured.params.model_dump(mode="json"), sort_keys=True)


def run_step(kind: str, spec: PipelineSpec, out: Path, data: Path | None = None, findings: Path | None = None,
             best_params: Path | None = None, model: Path | None = None, model_out: Path | None = None,
             data_root: Path | None = None, data_fingerprint: str = "") -> Any:
    """Call the step function for `kind` with artifact paths; write step.json with its wall time.
    Returns the step function's result (validate: its report, which `--require-passed` gates on)."""
    from mlplat import steps

    out.mkdir(parents=True, exist_ok=True)
    result: Any = None
    started = time.perf_counter()
    if MODEL in node(kind).inputs and MODEL in node(kind).outputs:  # amends the model (evaluate, explain, drift)
        assert model is not None and model_out is not None, f"{kind} needs --model and --model-out"
        from mlplat.modeldir import copy_model_dir

        copy_model_dir(model, model_out)
    if kind == "ingest":
        steps.ingest(spec, data_root or Path.cwd(), out, data_fingerprint)
    elif kind == "validate":
        result = steps.validate(spec, _need(data, "data"), out)
    elif kind == "augment":
        steps.augment(spec, _need(data, "data"), out, findings / steps.FINDINGS_JSON if findings else None)
    elif kind == "tune":
        steps.tune(spec, _need(data, "data"), out)
    elif kind == "train":
        staged = steps.train(spec, _need(data, "data"), out, best_params / steps.BEST_PARAMS_JSON if best_params else None,
                             findings / "schema.json" if findings else None)
        if model_out is not None:
            _move_model(staged, model_out)
    elif kind == "evaluate":
        steps.evaluate(spec, _need(data, "data"), _need(model_out, "model-out"), out)
    elif kind == "explain":
        steps.explain(spec, _need(data, "data"), _need(model_out, "model-out"), out)
    elif kind == "drift":
        steps.drift(spec, _need(model_out, "model-out"), out)
    else:
        raise ValueError(f"unknown step kind {kind!r}; expected one of {', '.join(KINDS)}")
    (out / STEP_JSON).write_text(json.dumps({"kind": kind, "seconds": time.perf_counter() - started}))
    return result


def _need(path: Path | None, name: str) -> Path:
    if path is None:
        raise ValueError(f"--{name} is required for this step")
    return path


def _move_model(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlplat.kfp.step", description="Run one mlplat pipeline step.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--spec", required=True, help="resolved pipeline spec as JSON")
    p.add_argument("--plugin", default="", help="plugin name (comma-joined for augment)")
    p.add_argument("--params", default="", help="plugin params as JSON (a list for augment)")
    p.add_argument("--out", required=True, type=Path, help="the step's working directory (an artifact)")
    for name in ("data", "findings", "best-params", "model", "model-out", "data-root"):
        p.add_argument(f"--{name}", type=Path, default=None)
    p.add_argument("--data-fingerprint", default="", help="ingest only: the data the run was started with (see mlplat.sources)")
    p.add_argument("--require-passed", action="store_true",
                   help="validate only: exit 1 when the gate fails (a TrainJob has no dsl.If to skip training)")
    return p


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    # plugins' context.log lines: the container's stderr is what the Kubeflow UI shows as the step's logs
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    if args.require_passed and args.kind != "validate":
        cli.error("--require-passed works with the validate step only")
    spec = spec_for_step(args.spec, args.kind, args.plugin, args.params)
    rank = _maybe_join_process_group()
    out, model_out = args.out, args.model_out
    if rank:  # every DDP rank trains; only rank 0 writes the step's outputs
        out, model_out = out / f".rank{rank}", None
    result = run_step(args.kind, spec, out, args.data, args.findings, args.best_params, args.model, model_out, args.data_root,
                      args.data_fingerprint)
    if args.require_passed and not result.passed:  # exit 1, with the blocking checks on stderr
        gate = GateResult("validation", False, [c.reason for c in result.blocking], str(out / "report.html"))
        print(GateFailed(gate.gate, gate.reasons, gate.report), file=sys.stderr)
        return 1
    return 0


def _maybe_join_process_group() -> int:
    """Under torchrun (a Trainer v2 TrainJob) join the process group so the trainer runs DDP; returns the rank."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


if __name__ == "__main__":
    sys.exit(main())
