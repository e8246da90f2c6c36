"""`mlplat submit`: compile a spec and start a run on a Kubeflow Pipelines cluster.

Everything up to the client call is `prepare` (tested here); `submit` is the thin call.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlplat.errors import MlplatError, UsageError
from mlplat.spec import PipelineSpec


@dataclass(frozen=True)
class Submission:
    """Keyword arguments of kfp.Client.create_run_from_pipeline_package."""

    pipeline_file: str
    run_name: str
    experiment_name: str
    arguments: dict[str, Any]


def check_host(host: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", host):
        raise UsageError(f"--host: expected the KFP API URL, e.g. http://localhost:8080 or https://kubeflow.example.com/pipeline; got {host!r}")
    return host.rstrip("/")


def prepare(spec: PipelineSpec, workdir: Path, experiment: str | None = None) -> Submission:
    """Compile the spec to workdir/<name>.yaml and name the run; no network."""
    from mlplat.kfp.compiler import compile_spec

    package = compile_spec(spec, workdir / f"{spec.name}.yaml")
    run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    # On a cluster relative dataset paths resolve inside the image; there is no local run store. Data at URIs
    # is fingerprinted here (metadata for object stores), so ingest's cache key names the data as it is now;
    # a local file or a scikit-learn dataset is the cluster's own copy, which this machine cannot fingerprint.
    from mlplat.sources import is_remote
    from mlplat.steps import data_fingerprint

    ds = spec.dataset
    located = [s for s in (ds.source, ds.validation_source, ds.test_source) if s]
    arguments = {"data_fingerprint": data_fingerprint(spec, workdir)} if all(map(is_remote, located)) else {}
    return Submission(str(package), run_name, experiment or spec.name, arguments)


def submit(submission: Submission, host: str, client_factory: Any = None) -> str:
    """Start the run; returns its id. The only line that talks to the cluster."""
    if client_factory is None:
        from kfp import Client as client_factory
    try:
        result = client_factory(host=check_host(host)).create_run_from_pipeline_package(**asdict(submission))
    except Exception as exc:  # the client raises many types (HTTP, auth, connection); name the host
        raise MlplatError(f"could not submit to {host}: {type(exc).__name__}: {exc}") from exc
    return str(result.run_id)
