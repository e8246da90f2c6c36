"""Plugin discovery through entry points.

An entry point resolves to a light `PluginSpec` (name, kind, config model, needs, a
lazy factory path). Nothing heavy is imported until `PluginSpec.create()` is called,
so listing plugins costs milliseconds. Built-in plugins are found exactly like
third-party ones: the core never imports them by name.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from mlplat.errors import PluginUnavailable, SpecError


class StageKind(str, enum.Enum):
    VALIDATOR = "validator"
    AUGMENTER = "augmenter"
    TRAINER = "trainer"
    TUNER = "tuner"
    EXPLAINER = "explainer"
    DRIFT_DETECTOR = "drift_detector"

    @property
    def group(self) -> str:
        """The entry-point group that offers plugins of this kind, e.g. `mlplat.trainers`."""
        return f"mlplat.{self.value}s"


@dataclass(frozen=True)
class PluginSpec:
    """What an entry point resolves to: metadata plus a lazy path to the implementation.

    `factory` is "module:attribute"; the attribute is called with the validated config
    and returns an object that satisfies the kind's contract in `mlplat.contracts`.
    """

    name: str
    kind: StageKind
    config_model: type[BaseModel]
    factory: str
    summary: str = ""
    needs: frozenset[str] = field(default_factory=frozenset)  # e.g. {"gpu"}: runners use it for resources

    def parse_config(self, params: Mapping[str, Any] | None, path: str = "params") -> BaseModel:
        """Validate params against the config model; errors name the offending field."""
        try:
            return self.config_model.model_validate(dict(params or {}))
        except ValidationError as exc:
            raise SpecError(config_problems(exc, path)) from None

    def load(self) -> Any:
        module_name, _, attribute = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise PluginUnavailable(f"{self.kind.value} plugin {self.name!r} failed to load {self.factory}: {exc}") from exc

    def create(self, params: Mapping[str, Any] | BaseModel | None = None, path: str = "params") -> Any:
        config = params if isinstance(params, BaseModel) else self.parse_config(params, path)
        return self.load()(config)


def config_problems(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """Turn pydantic errors into (dotted path, message) pairs under `prefix`."""
    problems = []
    for error in exc.errors():
        parts = [prefix, *(str(p) for p in error["loc"])]
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append((".".join(p for p in parts if p), message))
    return problems


@dataclass(frozen=True)
class Discovered:
    spec: PluginSpec
    distribution: str
    entry_point: str


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown distribution>"


def discover(kind: StageKind) -> dict[str, Discovered]:
    """All plugins of one kind, by name. Two distributions offering one name is an error.

    Conflicts are found from entry-point metadata alone, before any plugin module is imported.
    """
    offered: dict[str, tuple[EntryPoint, str]] = {}
    for ep in entry_points(group=kind.group):
        dist = _distribution_name(ep)
        if ep.name in offered:
            seen, seen_dist = offered[ep.name]
            if (seen_dist, seen.value) == (dist, ep.value):
                continue  # the same distribution seen twice on sys.path
            raise PluginUnavailable(
                f"{kind.value} plugin {ep.name!r} is offered by two distributions: "
                f"{seen_dist} ({seen.value}) and {dist} ({ep.value}); uninstall one of them"
            )
        offered[ep.name] = (ep, dist)
    found: dict[str, Discovered] = {}
    for name, (ep, dist) in offered.items():
        try:
            spec = ep.load()
        except Exception as exc:  # name the broken plugin instead of a bare traceback
            raise PluginUnavailable(f"entry point {ep.name} = {ep.value} in {dist} failed to load: {exc}") from exc
        if not isinstance(spec, PluginSpec) or spec.kind is not kind or spec.name != name:
            raise PluginUnavailable(
                f"entry point {ep.name} = {ep.value} in {dist} must resolve to a PluginSpec "
                f"of kind {kind.value!r} named {name!r}"
            )
        found[name] = Discovered(spec, dist, ep.value)
    return found


def get(kind: StageKind | str, name: str) -> PluginSpec:
    """The plugin spec for `name`; an unknown name lists the available ones."""
    kind = StageKind(kind)
    available = discover(kind)
    if name not in available:
        names = ", ".join(sorted(available)) or "none installed"
        raise PluginUnavailable(f"unknown {kind.value} plugin {name!r}; available: {names}")
    return available[name].spec


def discover_all() -> dict[StageKind, dict[str, Discovered]]:
    return {kind: discover(kind) for kind in StageKind}
