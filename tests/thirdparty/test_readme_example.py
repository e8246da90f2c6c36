"""The README's "Writing a plugin" shows the example package in tests/thirdparty/mlplat_example exactly,
and all of it, so the page cannot drift from the code the suite runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "thirdparty" / "mlplat_example"


def readme_blocks() -> dict[str, str]:
    """path -> body of each fenced block in the section whose first line is `# <path>`."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Writing a plugin")
    section = readme[start:readme.index("\n## ", start)]
    return dict(re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", section, flags=re.S))


def test_readme_shows_every_file_of_the_example_package_verbatim() -> None:
    files = {p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    blocks = readme_blocks()
    assert set(blocks) == files
    for path, body in blocks.items():
        assert body == (EXAMPLE / path).read_text(), f"README's {path} differs from {EXAMPLE / path}"


def test_the_readme_example_is_under_60_lines() -> None:
    lines = sum(len(body.splitlines()) + 1 for body in readme_blocks().values())  # + the `# path` line
    assert lines < 60, lines
