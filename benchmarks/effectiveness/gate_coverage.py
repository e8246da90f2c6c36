"""Gate coverage on corrupted data (issue 17, item 6): does the validate step name each corruption?

A clean tabular dataset (numeric and categorical features, a label that depends on num0, num1 and
the category) is drawn twice from the same distribution: batch 0 is the previous run, whose
`schema.json` is the reference; batch 1 is the new data, corrupted one way at a time:
  string_in_numeric   one cell of num2 is "abc"
  dropped_column      num3 is gone
  scaled_column       num1 x 1000 (a unit change)
  shuffled_column     num0 permuted across rows (its distribution is unchanged; its relation to the label is not)
  constant_column     num4 is 7.0 everywhere
  duplicated_rows     25 % of the rows appear twice
  label_leak          a new column: the label's class index plus a little noise
Each corrupted CSV goes through the real ingest and validate steps (the `tabular` validator), (a) with
`schema_path` = the reference and (b) alone. "Named" means a check that did not pass names the corruption
(its check and column); "blocks" whether that check fails the gate (severity fail) or only warns.
Targets: with the reference every corruption is named; alone, those a single batch can show
(string_in_numeric, constant_column, duplicated_rows, label_leak); the clean batch 1 is named by nothing
blocking in either mode (the control). Each line prints PASS/MISS.
Measured (3,000 rows): all 16 lines PASS, 13 s. Before schema.association and the one-feature label_leak
check, 3 lines missed: the shuffled column (with the reference) and the leaking column (both modes).
Run: .venv/bin/python benchmarks/effectiveness/gate_coverage.py [--rows N]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

Corruption = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def clean_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"num{i}": rng.normal(10 * i, 1 + i, n).round(4) for i in range(6)})
    frame["plan"] = rng.choice(["basic", "plus", "pro"], n)
    score = (frame["num0"] + 0.5 * (frame["num1"] - 10) / 2 + frame["plan"].map({"basic": -0.7, "plus": 0.0, "pro": 0.7})
             + rng.normal(0, 0.6, n))
    frame["label"] = np.where(score > np.median(score), "yes", "no")
    return frame


def _string_in_numeric(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.astype({"num2": object})
    out.loc[int(rng.integers(len(out))), "num2"] = "abc"
    return out


def _shuffled(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return frame.assign(num0=rng.permutation(frame["num0"].to_numpy()))


def _duplicated(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    again = frame.iloc[rng.choice(len(frame), len(frame) // 4, replace=False)]
    return pd.concat([frame, again], ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)


def _label_leak(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return frame.assign(leak=(frame["label"] == "yes").astype(float) + rng.normal(0, 0.05, len(frame)))


# name -> (corruption, the checks that name it, the column they name (None: the dataset), detectable alone)
CORRUPTIONS: dict[str, tuple[Corruption, tuple[str, ...], str | None, bool]] = {
    "string_in_numeric": (_string_in_numeric, ("schema.parse",), "num2", True),
    "dropped_column": (lambda f, _: f.drop(columns="num3"), ("schema.columns",), "num3", False),
    "scaled_column": (lambda f, _: f.assign(num1=f["num1"] * 1000), ("schema.range", "schema.shift"), "num1", False),
    "shuffled_column": (_shuffled, ("schema.association",), "num0", False),
    "constant_column": (lambda f, _: f.assign(num4=7.0), ("constant",), "num4", True),
    "duplicated_rows": (_duplicated, ("duplicates",), None, True),
    "label_leak": (_label_leak, ("label_leak",), "leak", True),
}


def validate(frame: pd.DataFrame, work: Path, reference: Path | None) -> tuple[list[Any], Path]:
    """The real ingest + validate steps on `frame` written as a CSV; returns the checks and the schema file."""
    import yaml
    from mlplat import steps
    from mlplat.spec import load_spec, resolve

    work.mkdir(parents=True, exist_ok=True)
    frame.to_csv(work / "data.csv", index=False)
    params: dict[str, Any] = {"label_noise": {"enabled": False}, "plot_columns": 0}
    if reference:
        params["schema_path"] = str(reference)
    spec = {"name": "coverage", "seed": 0, "dataset": {"source": "data.csv", "label": "label"},
            "steps": {"validate": {"plugin": "tabular", "params": params}, "train": {"plugin": "mlp"}}}
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    resolved = resolve(load_spec(work / "spec.yaml"))
    steps.ingest(resolved, work, work / "data")
    report = steps.validate(resolved, work / "data", work / "validate")
    return report.checks, work / "validate" / "schema.json"


def naming(checks: list[Any], names: tuple[str, ...], column: str | None) -> list[Any]:
    return [c for c in checks if not c.passed and c.check in names and (column is None or c.column == column)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, reference = validate(clean_frame(args.rows, seed=0), root / "reference", None)
        batch = clean_frame(args.rows, seed=1)
        lines, misses = [], 0
        for mode, ref in (("reference", reference), ("alone", None)):
            checks, _ = validate(batch, root / f"clean-{mode}", ref)
            blocking = [c.check for c in checks if not c.passed and c.severity == "fail"]
            warned = sorted({c.check for c in checks if not c.passed and c.severity != "fail"})
            misses += bool(blocking)
            verdict = f"blocked by {', '.join(blocking)}" if blocking else "nothing blocks"
            lines.append(f"{'MISS' if blocking else 'PASS'}  {'clean batch (control)':20s} {mode:9s} "
                         f"{verdict}; warnings: {', '.join(warned) or 'none'}")
        for name, (corrupt, names, column, alone) in CORRUPTIONS.items():
            frame = corrupt(batch, np.random.default_rng(7))
            for mode, ref in (("reference", reference), ("alone", None)):
                checks, _ = validate(frame, root / f"{name}-{mode}", ref)
                found = naming(checks, names, column)
                expected = mode == "reference" or alone
                status = "PASS" if found or not expected else "MISS"
                misses += status == "MISS"
                what = (f"named by {found[0].check} ({'blocks' if any(c.severity == 'fail' for c in found) else 'warns'}): "
                        f"{found[0].message}") if found else "not named" + ("" if expected else " (needs a reference)")
                lines.append(f"{status}  {name:20s} {mode:9s} {what}")
    print(f"gate coverage, {args.rows} rows per batch; reference = batch 0's schema.json")
    print("\n".join(lines))
    print(f"{'PASS' if not misses else 'MISS'} all targets ({misses} missed)")


if __name__ == "__main__":
    main()
