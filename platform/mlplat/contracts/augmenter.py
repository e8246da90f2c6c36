"""Augmenter contract: turn a training table into a better one.

Augmenters only ever see the training split: validation and test data must stay real.
Rows they add are marked `synthetic=True` and keep `row_id = -1` (`""` beside text ids: `Table.with_synthetic`); rows they drop vanish;
rows they down-weight change `weights`. `context.findings` carries what the validator
found (e.g. `findings["validate"]["label_noise"]["row_ids"]`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mlplat.contracts.context import StepContext
from mlplat.data import Table


@runtime_checkable
class Augmenter(Protocol):
    def augment(self, train: Table, context: StepContext) -> Table:
        """Return a new training table; never mutate `train`."""
        ...
