"""`mlplat deploy`: a published model as a KServe InferenceService (kustomize directory)."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import RUNS_DIR_OPTION, console
from mlplat.k8s.inferenceservice import DEFAULT_IMAGE, DEFAULT_STORAGE_URI


def deploy(
    ref: str = typer.Argument(..., metavar="MODEL", help="Run id, `latest`, a run or model directory, or a model store URI "
                                                        "(s3://, gs://, pvc://: then storageUri is that model)"),
    output: Path = typer.Option(..., "-o", "--output", help="Directory for inferenceservice.yaml, podmonitor.yaml, kustomization.yaml"),
    runs_dir: Path = RUNS_DIR_OPTION,
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Image with mlplat installed (predictor and explainer)"),
    name: str = typer.Option(None, "--name", help="InferenceService name (default: the model's name as a DNS label); "
                                                  "request paths keep the model's own name (/v1/models/MODEL:predict)"),
    storage_uri: str = typer.Option(None, "--storage-uri",
                                    help="Where the cluster finds the model directory (KServe storage URI, mounted at /mnt/models); "
                                         f"default: MODEL's own URI for a store URI, else {DEFAULT_STORAGE_URI}"),
    monitor: bool = typer.Option(True, "--monitor/--no-monitor",
                                 help="Also write monitor.yaml: a monitor for this model reading the same storage URI "
                                      "(else the logger posts to the monitoring base's mlplat-monitor)"),
    storage_secret: str = typer.Option(None, "--storage-secret", metavar="SECRET",
                                       help="KServe's S3 Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional "
                                            "AWS_ENDPOINT_URL): the monitor's credentials for an s3:// storage URI"),
    service_account: str = typer.Option(None, "--service-account", metavar="NAME",
                                        help="Predictor and explainer service account (the one KServe finds the storage Secret on)"),
) -> None:
    """Write an InferenceService (predictor + explainer) for a published model; apply with `kubectl apply -k DIR`."""
    from mlplat.k8s.inferenceservice import Deployment, isvc_name, write
    from mlplat.modeldir import resolve_model
    from mlplat.modelstore import is_store_uri, model_uri

    manifest = resolve_model(ref, runs_dir).read()
    if storage_uri is None:  # a store URI names the model the cluster should load: its version, not `latest`
        storage_uri = model_uri(ref) if is_store_uri(ref) and not ref.startswith("file://") else DEFAULT_STORAGE_URI
    deployment = Deployment(name or isvc_name(manifest.name), image, storage_uri, monitor, storage_secret, service_account)
    for path in write(deployment, output):
        console.print(f"wrote {path}")
