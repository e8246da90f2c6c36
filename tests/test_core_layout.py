"""Layout guards: platform/ is a source root, and the CLI stays light."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_platform_is_not_a_package() -> None:
    assert not (REPO / "platform" / "__init__.py").exists()


def test_import_platform_is_still_the_standard_library_with_repo_root_on_path() -> None:
    code = "import platform, sys; print(platform.__file__); print(platform.python_version())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "site-packages" not in out[0] and not out[0].startswith(str(REPO)), out[0]
    assert out[1] == ".".join(map(str, sys.version_info[:3]))


def _modules_after_cli(*args: str) -> set[str]:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom mlplat.cli import app\n"
        f"result = CliRunner().invoke(app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'kserve', 'kfp', 'evidently', 'alibi', 'sklearn'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_help_imports_no_heavy_library() -> None:
    assert _modules_after_cli("--help") == set()


def test_plugins_list_imports_no_heavy_library_and_lists_builtins() -> None:
    assert _modules_after_cli("plugins", "list") == set()
    out = subprocess.run([sys.executable, "-m", "mlplat", "plugins", "list"], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "200", "PATH": ""})
    assert "tabular" in out.stdout and "mlp" in out.stdout
