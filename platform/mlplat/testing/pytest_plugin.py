"""pytest fixtures for plugin tests; pytest loads this module through mlplat's `pytest11` entry point.

The entry point's name is this module's path, so `-p mlplat.testing.pytest_plugin` (or a
`pytest_plugins` line) next to an installed entry point registers it once, not twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mlplat.contracts import StepContext
from mlplat.data import Splits
from mlplat.testing.distribution import make_distribution, project_distribution
from mlplat.testing.fixtures import LinearModelDouble, model_double, step_context, tiny_image_splits, tiny_splits

DistributionFactory = Callable[..., Path]


@pytest.fixture
def mlplat_tiny_splits() -> Splits:
    """tiny_splits(): 60 rows, 3 classes, 4 float features, split 50/25/25 (fresh per test: mutate freely)."""
    return tiny_splits()


@pytest.fixture
def mlplat_tiny_image_splits() -> Splits:
    """tiny_image_splits(): 60 8x8 one-channel images as pixel columns, image_shape [1, 8, 8]."""
    return tiny_image_splits()


@pytest.fixture
def mlplat_step_context(tmp_path: Path, mlplat_tiny_splits: Splits) -> StepContext:
    """A StepContext for mlplat_tiny_splits, working in tmp_path; call step_context() for other fields."""
    return step_context(tmp_path / "step", mlplat_tiny_splits)


@pytest.fixture
def mlplat_model_double(mlplat_tiny_splits: Splits) -> LinearModelDouble:
    """A numpy ModelHandle for mlplat_tiny_splits (see mlplat.testing.LinearModelDouble)."""
    return model_double(mlplat_tiny_splits)


def _forget_modules(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    """Drop these modules (and their submodules) from sys.modules now and after the test, so each test
    imports the fake distribution afresh and none leaks into the next."""
    for module in [m for m in sys.modules if m.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, module, raising=False)


@pytest.fixture
def mlplat_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DistributionFactory:
    """make_distribution(...) into tmp_path, on sys.path for this test only:
    `mlplat_distribution("my-dist", {"mlplat.trainers": {"linear": "my_linear:SPEC"}}, {"my_linear": source})`."""
    root = tmp_path / "site-packages"

    def install(name: str, entry_points: Mapping[str, Mapping[str, str]], modules: Mapping[str, str] | None = None,
                version: str = "1.0") -> Path:
        info = make_distribution(root, name, entry_points, modules, version)
        _forget_modules(monkeypatch, list(modules or {}))
        monkeypatch.syspath_prepend(str(root))
        return info

    return install


@pytest.fixture
def mlplat_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Path]:
    """Make a source project (a folder with pyproject.toml and its packages) discoverable for this test,
    as `pip install -e` would: `mlplat_project(Path(__file__).parents[1])`. Returns its dist-info."""

    def install(project_dir: Path, source_root: Path | None = None) -> Path:
        source_root = Path(source_root or project_dir)
        root = tmp_path / "site-packages"
        info = project_distribution(Path(project_dir), root)
        packages = [p.name for p in source_root.iterdir() if (p / "__init__.py").is_file()]
        _forget_modules(monkeypatch, packages)
        monkeypatch.syspath_prepend(str(source_root))
        monkeypatch.syspath_prepend(str(root))
        return info

    return install
