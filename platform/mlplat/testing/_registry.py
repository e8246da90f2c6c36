"""The kit's only contact with the registry's API: after a registry change, switch these lines only."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mlplat import registry
from mlplat.registry import PluginSpec, StageKind


def plugin_names(kind: StageKind | str) -> list[str]:
    """Every discovered plugin of one kind, sorted."""
    return sorted(registry.discover(StageKind(kind)))


def spec_of(kind: StageKind | str, name: str) -> PluginSpec:
    """A discovered plugin's spec (its factory is not imported yet)."""
    return registry.spec_of(StageKind(kind), name)


def create(spec: PluginSpec, config: BaseModel) -> Any:
    """The plugin object its factory builds from a validated config."""
    return spec.create(config)
