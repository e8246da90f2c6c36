"""Dependencies split into extras: the table in mlplat.extras, pyproject.toml and the plugins agree, and a
missing library is reported as the extra to install."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib
from conftest import REPO
from mlplat.errors import PluginUnavailable
from mlplat.extras import EXTRA_MODULES, INCLUDES
from mlplat.registry import PluginSpec, StageKind, discover

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_each_extra_in_the_table_installs_its_modules_and_all_covers_every_extra() -> None:
    extras = PYPROJECT["optional-dependencies"]
    core = _names(PYPROJECT["dependencies"])
    dists_of = packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        assert extra in extras, f"pyproject.toml has no [{extra}] extra"
        for module in modules:
            dists = {d.lower().replace("_", "-") for d in dists_of.get(module.split(".")[0], [])}
            assert dists & _names(extras[extra]), f"[{extra}] does not install {module} (from {dists})"
            assert not dists & core, f"{module} is an extra's library but a core dependency"
    (all_extra,) = extras["all"]
    assert set(all_extra.split("[")[1].rstrip("]").split(",")) == set(EXTRA_MODULES)


def _module_level_imports(package: Path) -> set[str]:
    """Top-level names imported at module level (not inside functions) anywhere in a plugin package."""
    names: set[str] = set()
    for file in package.rglob("*.py"):
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("kind", list(StageKind))
def test_builtin_plugins_declare_the_extra_their_implementation_imports(kind: StageKind) -> None:
    for name, found in discover(kind).items():
        if found.distribution != "mlplat":
            continue
        package = REPO / "plugins" / Path(*found.spec.factory.split(":")[0].split(".")[:2])
        needed = {extra for extra, modules in EXTRA_MODULES.items() if _module_level_imports(package) & set(modules)}
        declared = {found.spec.extra} - {None}
        covered = declared | {included for extra in declared for included in INCLUDES.get(extra, ())}
        assert needed <= covered, f"{kind.value} {name}: imports {needed}, declares {declared}"
        assert declared <= set(EXTRA_MODULES), f"{kind.value} {name}: unknown extra {declared}"


def test_a_plugin_whose_library_is_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "needs_missing_lib.py").write_text("import mlplat_absent_library_xyz\nFactory = object\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = PluginSpec(name="needy", kind=StageKind.EXPLAINER, config_model=_Empty,  # type: ignore[arg-type]
                      factory="needs_missing_lib:Factory", extra="fancy")
    with pytest.raises(PluginUnavailable, match=r"needs mlplat_absent_library_xyz, which is not installed: pip install '.*\[fancy\]'"):
        spec.load()


class _Empty:  # a config model stand-in: load() never parses params
    pass


BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ['mlplat', *{args!r}]
from mlplat.cli import main
main()
"""


def _cli_without(blocked: set[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked, args=list(args))],
                          capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "", "PYTHONPATH": ":".join(sys.path)})


def test_serve_without_kserve_names_the_serve_extra(tmp_path: Path) -> None:
    assert importlib.util.find_spec("kserve") is not None  # the blocker, not this environment, takes it away
    out = _cli_without({"kserve"}, "serve", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert "pip install 'mlplat[serve]'" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_compile_without_kfp_names_the_kfp_extra(tmp_path: Path) -> None:
    out = _cli_without({"kfp"}, "compile", str(REPO / "pipelines" / "demo.yaml"), "--output", str(tmp_path / "x.yaml"))
    assert out.returncode == 2, out.stderr
    assert "pip install 'mlplat[kfp]'" in out.stdout + out.stderr


def test_plugins_list_works_without_any_extra() -> None:
    out = _cli_without({m for modules in EXTRA_MODULES.values() for m in modules}, "plugins", "list")
    assert out.returncode == 0, out.stderr
    assert "kernel_shap" in out.stdout and "mlp" in out.stdout
