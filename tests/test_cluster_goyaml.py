"""Every YAML the project emits, typed as go-yaml (kubectl, the API server) reads it.

PyYAML's own dumper writes the string "1e-06" unquoted, which go-yaml reads as a float; Katib then
denies the Experiment. `goyaml.typing_mismatches` composes the emitted text with PyYAML and checks
each plain scalar against go-yaml's resolver (YAML 1.1 as go-yaml v2, 1.2 core as v3)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlplat.k8s import goyaml

REPO = Path(__file__).resolve().parents[1]
EMITTED = sorted(p for p in (REPO / "manifests").rglob("*.yaml") if "overlays" not in p.parts)


@pytest.mark.parametrize("text, kind", [
    ("1e-06", "float"), ("1.0e-4", "float"), ("0.5", "float"), (".5", "float"), ("-.inf", "float"), (".NaN", "float"),
    ("42", "int"), ("0x1F", "int"), ("0o17", "int"), ("017", "int"), ("1_000", "int"), ("-0b101", "int"),
    ("yes", "bool"), ("On", "bool"), ("n", "bool"), ("FALSE", "bool"), ("~", "null"), ("", "null"), ("Null", "null"),
    ("1e", "str"), ("v1", "str"), ("0.0.1", "str"), ("2Gi", "str"), ("yes please", "str"), ("0x", "str"),
])
def test_go_yaml_resolution(text: str, kind: str) -> None:
    assert goyaml.go_yaml_kind(text) == kind


@pytest.mark.parametrize("value", ["1e-06", "yes", "on", "Y", "0o17", "1_000", "true", "null", "3", "0.25", "-.inf"])
def test_the_dumper_quotes_what_go_yaml_would_retype(value: str) -> None:
    text = goyaml.dump({"min": value, "list": [value]})
    assert goyaml.typing_mismatches(text) == []
    assert yaml.safe_load(text) == {"min": value, "list": [value]}


def test_plain_pyyaml_output_is_caught() -> None:
    """The checker fails on what yaml.safe_dump writes for Katib's old feasibleSpace and a YAML 1.1 word."""
    problems = goyaml.typing_mismatches(yaml.safe_dump({"feasibleSpace": {"min": "1e-06", "max": "0.01"}}))
    assert problems == [("doc 0: feasibleSpace.min", "'1e-06' is a str for PyYAML but a float for go-yaml")]
    assert goyaml.typing_mismatches("a: 'yes'\nb: y\n") == [("doc 0: b", "'y' is a str for PyYAML but a bool for go-yaml")]


@pytest.mark.parametrize("path", EMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_checked_in_manifest_keeps_its_types_for_go_yaml(path: Path) -> None:
    assert goyaml.typing_mismatches(path.read_text()) == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_rendered_overlay_keeps_its_types_for_go_yaml(overlay: str) -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
    assert goyaml.typing_mismatches(rendered) == []
