"""`mlplat datasets make-shapes DIR`: the generated image set (mlplat.datasets.shapes) as a folder of PNGs."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import console
from mlplat.errors import UsageError

app = typer.Typer(help="Datasets generated here (nothing is downloaded).", no_args_is_help=True)


@app.command("make-shapes")
def make_shapes(
    directory: Path = typer.Argument(..., metavar="DIR", help="Folder to write DIR/<class>/*.png into (the ImageFolder layout)"),
    per_class: int = typer.Option(200, "--per-class", help="Images per class"),
    seed: int = typer.Option(0, "--seed", help="The same seed writes the same files"),
) -> None:
    """Write 10 classes of 32x32 RGB shapes and textures, usable as `dataset.source: DIR` with `dataset.image`."""
    from mlplat.datasets.shapes import CLASSES, write_shapes

    if not 1 <= per_class <= 100_000:
        raise UsageError(f"--per-class: must be between 1 and 100000, got {per_class}")
    files = write_shapes(directory, per_class=per_class, seed=seed)
    console.print(f"wrote {len(files)} images of {len(CLASSES)} classes to {directory}")
