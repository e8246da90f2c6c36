"""What a runner hands every plugin call besides its data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplat.data import DatasetInfo

EpochCallback = Callable[[int, Mapping[str, float]], None]


def _ignore_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    return None


STEP_LOGGER = "mlplat.step"  # plugins' context.log lines go to mlplat.step.<step>; runners attach the handlers


@dataclass
class StepContext:
    """Per-call context.

    - `work_dir`: the step's own directory for reports, checkpoints and scratch files.
    - `on_epoch`: trainers call it after every epoch with the epoch's metrics; runners use
      it for progress bars, tuners for pruning (it may raise to stop training).
    - `findings`: what earlier steps found, by step, e.g. the validator's label-noise
      suspects for a noise-handling augmenter.
    - `resume`: the run is being resumed (`mlplat run --resume`): continue from checkpoints.
    - `runs_root`: the run store's directory, for plugins that resolve run ids (warm start).
    - `log`: one line for the user. By default it goes to the `mlplat.step.<step>` logger, which the
      runners route to the run's log file (`runs/<id>/run.log`), the CLI's progress display, and a
      KFP step's stderr (the Kubeflow UI's logs).
    - `reports`: write human reports (HTML/PNG) into `work_dir`. A tuner's trials set it False:
      only their metrics are used, and plotting can cost more than training a small model.
    """

    step: str
    work_dir: Path
    info: DatasetInfo
    seed: int = 0
    on_epoch: EpochCallback = _ignore_epoch
    log: Callable[[str], None] = None  # type: ignore[assignment]  # set in __post_init__
    findings: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False
    runs_root: Path | None = None
    reports: bool = True

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = logging.getLogger(f"{STEP_LOGGER}.{self.step}").info
