"""`mlplat submit`: compile a spec and start a run on a Kubeflow Pipelines cluster.

Everything up to the client call is `prepare` (tested here); `submit` is the thin call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
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
        raise UsageError("--host: expected the KFP API URL, e.g. http://localhost:8080 or "
                         f"https://kubeflow.example.com/pipeline; got {host!r}")
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


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
TOKEN_ENV = "KF_PIPELINES_TOKEN"
FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELING"}


def read_token(token_file: Path | None, environ: Mapping[str, str],
               service_account_token: Path = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """The bearer token for multi-user Kubeflow: --token-file, else $KF_PIPELINES_TOKEN, else the pod's
    service-account token (running inside the cluster); None for a standalone KFP without auth."""
    if token_file is not None:
        if not token_file.is_file():
            raise UsageError(f"--token-file: {token_file} does not exist")
        token = token_file.read_text().strip()
        if not token:
            raise UsageError(f"--token-file: {token_file} is empty")
        return token
    if environ.get(TOKEN_ENV, "").strip():
        return environ[TOKEN_ENV].strip()
    if service_account_token.is_file():
        return service_account_token.read_text().strip() or None
    return None


def client(host: str, namespace: str | None = None, token: str | None = None, client_factory: Any = None) -> Any:
    """A kfp.Client for the host: on multi-user Kubeflow the profile namespace and the token go with every call."""
    if client_factory is None:
        from kfp import Client

        client_factory = Client
    return client_factory(host=check_host(host), namespace=namespace or "kubeflow", existing_token=token)


def submit(submission: Submission, host: str, namespace: str | None = None, token: str | None = None,
           client_factory: Any = None) -> str:
    """Start the run; returns its id. The only call that starts something on the cluster."""
    try:
        result = client(host, namespace, token, client_factory).create_run_from_pipeline_package(
            **asdict(submission), namespace=namespace)
    except Exception as exc:  # the client raises many types (HTTP, auth, connection); name the host
        raise MlplatError(f"could not submit to {host}: {type(exc).__name__}: {exc}") from exc
    return str(result.run_id)


def wait(run_id: str, host: str, namespace: str | None = None, token: str | None = None, timeout: float = 24 * 3600,
         client_factory: Any = None) -> str:
    """Follow the run to its end; returns SUCCEEDED or raises MlplatError (exit 1) naming its final state."""
    try:
        finished = client(host, namespace, token, client_factory).wait_for_run_completion(run_id, timeout)
    except Exception as exc:
        raise MlplatError(f"run {run_id} on {host}: could not follow it: {type(exc).__name__}: {exc}") from exc
    state = str(getattr(finished, "state", "") or "UNKNOWN").upper()
    if state != "SUCCEEDED":
        detail = getattr(finished, "error", None)
        raise MlplatError(f"run {run_id} on {host} ended {state}" + (f": {detail}" if detail else ""))
    return state


def upload(package: Path, host: str, namespace: str | None = None, token: str | None = None,
           client_factory: Any = None) -> str:
    """Upload a compiled pipeline (IR YAML) to KFP under its pipelineInfo name; returns the pipeline id."""
    import yaml

    try:
        info = next(yaml.safe_load_all(package.read_text()))["pipelineInfo"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
        raise UsageError(f"{package}: not a compiled KFP pipeline (IR YAML with pipelineInfo): {exc}") from None
    try:
        uploaded = client(host, namespace, token, client_factory).upload_pipeline(
            str(package), pipeline_name=info["name"], description=info.get("description"), namespace=namespace)
    except Exception as exc:
        raise MlplatError(f"could not upload {package} to {host}: {type(exc).__name__}: {exc}") from exc
    return str(uploaded.pipeline_id)
