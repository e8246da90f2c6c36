"""`mlplat publish MODEL_DIR STORE`: put a model directory into a model store (what a TrainJob's last step runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import console


def publish(
    model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="A model directory (model.json, weights, ...)"),
    store: str = typer.Argument(..., metavar="STORE", help="Model store URI: s3://BUCKET/PATH, gs://..., pvc://CLAIM/PATH, a path"),
    version: str = typer.Option(..., "--version", help="The version to publish as (letters, digits, '.', '_', '-'); never rewritten"),
) -> None:
    """Publish MODEL_DIR to STORE as VERSION atomically, then point the store's `latest` at it."""
    from mlplat.modeldir import ModelDir
    from mlplat.modelstore import ModelStore

    ModelDir(model_dir).read()  # a directory that does not load is refused before anything is uploaded
    console.print(f"published {ModelStore(store).publish(model_dir, version)} (latest in {store})")
