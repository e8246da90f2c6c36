"""The Kubeflow Pipelines door: compile a spec to KFP v2 IR, run it with kfp.local, submit it.

- `step`: `python -m mlplat.kfp.step KIND ...`, the process a component runs; it calls the
  same `mlplat.steps` functions as the in-process runner.
- `runtime`: what a component does around that process (artifact paths in, UI metadata out).
- `components`: one generic lightweight component per stage kind.
- `compiler`: spec → pipeline (gates as `dsl.If`, resources, retries, caching, node selectors).
- `local`: `mlplat run --runner kfp-local`; `submit`: `kfp.Client`. The Trainer v2 TrainJob
  generator lives with the other Kubernetes generators in `mlplat.k8s.trainjob`.

Modules import kfp inside functions or at their top only where kfp is the point, so the CLI
stays light.
"""
