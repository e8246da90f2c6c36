"""mlplat.testing: a test kit for plugin authors, shipped with mlplat.

- `check_plugin(kind, name, params=None)`: run a discovered plugin through its kind's contract on
  tiny data; a broken rule raises `ConformanceError` (an AssertionError) naming the plugin and rule.
- Fixtures as plain functions: `tiny_splits()`, `tiny_image_splits()` (8x8 images, what the `cnn`
  trainer takes), `tiny_image_file_splits(dir)` (PNG files, what `dataset.image` ingests),
  `step_context(work_dir, splits)`, `model_double(splits)` (a numpy `ModelHandle`).
- `make_distribution(root, name, entry_points, modules)` and `project_distribution(project_dir, root)`:
  fake installed distributions, so a test can add plugins to discovery without pip.
- A pytest plugin (`mlplat.testing.pytest_plugin`, registered through the `pytest11` entry point)
  with the fixtures `mlplat_tiny_splits`, `mlplat_tiny_image_splits`, `mlplat_step_context`,
  `mlplat_model_double`, `mlplat_distribution` and `mlplat_project`.

Importing the kit imports no torch; only trainer checks and a double's `network` do.
"""

from mlplat.testing.checks import ConformanceError, check_config, check_plugin, tiny_params
from mlplat.testing.distribution import make_distribution, project_distribution
from mlplat.testing.fixtures import (
    IMAGE_SHAPE,
    LinearModelDouble,
    model_double,
    step_context,
    tiny_image_file_splits,
    tiny_image_splits,
    tiny_splits,
)

__all__ = [
    "IMAGE_SHAPE",
    "ConformanceError",
    "LinearModelDouble",
    "check_config",
    "check_plugin",
    "make_distribution",
    "model_double",
    "project_distribution",
    "step_context",
    "tiny_image_file_splits",
    "tiny_image_splits",
    "tiny_params",
    "tiny_splits",
]
