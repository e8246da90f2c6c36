"""Fake installed distributions: put a plugin's entry points on sys.path without pip.

`importlib.metadata` finds a distribution through a `<name>-<version>.dist-info` folder (METADATA
and entry_points.txt) in any sys.path entry, so writing one is all an install means to discovery.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import tomllib


def make_distribution(root: Path, name: str, entry_points: Mapping[str, Mapping[str, str]],
                      modules: Mapping[str, str] | None = None, version: str = "1.0") -> Path:
    """Write a distribution `name` into `root`, as an installer would, and return its dist-info folder.

    - `entry_points`: group -> {entry-point name: "module:attribute"},
      e.g. {"mlplat.trainers": {"linear": "my_linear:SPEC"}}.
    - `modules`: module name -> source (dedented), written as `root/<module>.py`.

    Put `root` on sys.path (e.g. `monkeypatch.syspath_prepend(root)`) for mlplat to discover it.
    """
    info = Path(root) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{ep_name} = {target}" for ep_name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (Path(root) / f"{module}.py").write_text(textwrap.dedent(source))
    return info


def project_distribution(project_dir: Path, root: Path) -> Path:
    """A dist-info in `root` for the project whose pyproject.toml is in `project_dir`: its name,
    version and `[project.entry-points]`, as `pip install -e` would register them. The project's
    sources must also be importable (put `project_dir`, or its source root, on sys.path)."""
    pyproject = Path(project_dir) / "pyproject.toml"
    if not pyproject.is_file():
        raise FileNotFoundError(f"no pyproject.toml in {project_dir}")
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    if "name" not in project:
        raise ValueError(f"{pyproject}: [project] needs a name")
    return make_distribution(root, project["name"], project.get("entry-points", {}), version=str(project.get("version", "0")))
