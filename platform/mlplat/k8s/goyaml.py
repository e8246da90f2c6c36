"""YAML as the cluster reads it: kubectl and the API machinery decode YAML with go-yaml, not PyYAML.

PyYAML and go-yaml disagree on plain (unquoted) scalars. PyYAML reads `1e-06` as a string
(its YAML 1.1 float needs a dot), so PyYAML's dumper writes the string `"1e-06"` unquoted,
and go-yaml then reads a float: Katib's webhook denies a `feasibleSpace.min` that is not a
string. go-yaml v2 (sigs.k8s.io/yaml, kubectl) resolves YAML 1.1 booleans (`yes`, `on`, `y`),
go-yaml v3 the YAML 1.2 core schema plus 1.1 octals; both strip `_` from numbers and parse
integers with Go's base-0 rules. `go_yaml_kind` is the union of both resolvers (resolve.go of
gopkg.in/yaml.v2 and v3), and `dump_all` quotes every string that either would not read as a
string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

# go-yaml's resolve table: the words both versions resolve, and the YAML 1.1 words only v2 does
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS_12 = {"true", "True", "TRUE", "false", "False", "FALSE"}
_BOOLS_11 = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"}
_SPECIAL_FLOATS = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")  # resolve.go yamlStyleFloat
# strconv.ParseInt(s, 0, 64) after go-yaml removed the underscores, plus its own 0b/-0b/0o prefixes
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")


def go_yaml_kind(plain: str) -> str:
    """What go-yaml (v2 or v3) makes of a plain scalar: "null", "bool", "int", "float", "merge" or "str"."""
    if plain in _NULLS:
        return "null"
    if plain in _BOOLS_12 or plain in _BOOLS_11:
        return "bool"
    if plain == "<<":
        return "merge"
    if plain in _SPECIAL_FLOATS:
        return "float"
    digits = plain.replace("_", "")
    if _GO_INT.match(digits):
        return "int"
    if _YAML_STYLE_FLOAT.match(digits):
        return "float"
    return "str"


def reads_as_string(text: str) -> bool:
    """True when `text`, written as a plain scalar, is a string for PyYAML and for go-yaml alike."""
    resolved = yaml.SafeLoader.resolve(yaml.SafeLoader, yaml.ScalarNode, text, (True, False))
    return resolved == "tag:yaml.org,2002:str" and go_yaml_kind(text) == "str"


class GoSafeDumper(yaml.SafeDumper):
    """SafeDumper that quotes the strings go-yaml would read as another type, and writes multi-line text as `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if reads_as_string(value) else "'")


GoSafeDumper.add_representer(str, _represent_str)


def dump(doc: Any, **options: Any) -> str:
    return yaml.dump(doc, Dumper=GoSafeDumper, sort_keys=False, **options)


def dump_all(docs: list[Any], **options: Any) -> str:
    return yaml.dump_all(docs, Dumper=GoSafeDumper, sort_keys=False, **options)


_PYYAML_KIND = {"tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:bool": "bool", "tag:yaml.org,2002:int": "int",
                "tag:yaml.org,2002:float": "float", "tag:yaml.org,2002:str": "str", "tag:yaml.org,2002:merge": "merge"}


def _scalars(node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.ScalarNode]]:
    if isinstance(node, yaml.ScalarNode):
        yield path, node
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _scalars(item, f"{path}[{i}]")
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(value, f"{path}.{key.value}" if path else str(key.value))


def typing_mismatches(text: str) -> list[tuple[str, str]]:
    """(path, problem) for every plain scalar whose type differs between PyYAML and go-yaml, in every document.

    PyYAML's reading is what the Python code meant (it dumped the value); go-yaml's is what the cluster gets."""
    problems = []
    for index, document in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
        if document is None:
            continue
        for path, node in _scalars(document, ""):
            if node.style is not None or node.tag not in _PYYAML_KIND:  # quoted, block, or explicitly tagged
                continue
            ours, go = _PYYAML_KIND[node.tag], go_yaml_kind(node.value)
            if ours == "str" and go != "str" or ours != "str" and go == "str":
                problems.append((f"doc {index}: {path}", f"{node.value!r} is a {ours} for PyYAML but a {go} for go-yaml"))
    return problems
