"""`mlplat evaluate MODEL DATA`: score a published model on any labeled file, as the evaluate step does."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli.common import RUNS_DIR_OPTION, console


def evaluate(
    ref: str = typer.Argument(..., metavar="MODEL", help="Run id, `latest`, a run or model directory, or a model URI"),
    data: str = typer.Argument(..., metavar="DATA", help="Labeled CSV/Parquet file: a path or a URI (s3://, gs://, http(s)://)"),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Directory for metrics.json and report.md"),
    id_column: str | None = typer.Option(None, "--id", help="Column of row ids that predictions.csv names rows by"),
    runs_dir: Path = RUNS_DIR_OPTION,
) -> None:
    """Score a model on DATA (its feature and label columns): the evaluate step's metrics.json and report.md."""
    from mlplat.modeldir import resolve_model
    from mlplat.steps import METRICS_JSON, evaluate_file

    result = evaluate_file(resolve_model(ref, runs_dir), data, out, id_column=id_column)
    test = result["test"]
    console.print(f"{test['n']} rows: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items() if isinstance(v, float)))
    console.print(f"wrote {out / METRICS_JSON}, {out / 'report.md'}, {out / 'predictions.csv'}")
