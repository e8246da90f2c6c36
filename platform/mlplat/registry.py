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
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from mlplat.errors import MlplatError, PluginError, PluginUnavailable, SpecError

Direction = Literal["maximize", "minimize"]


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
    # What the plugin asks of the rest of the spec, checked at resolve time: "image" (an image dataset: pixel
    # columns or image files), "image_files" (image files only: dataset.image, mlplat.images) or "step:NAME"
    # (a NAME step in the plan, e.g. the validator's findings). Anything else is refused.
    needs: frozenset[str] = field(default_factory=frozenset)
    # whether the plugin works on image-file datasets (split tables of image references, mlplat.images); a
    # plugin that does not is refused at resolve time for such a spec, with the reason (tuners need not say)
    handles_images: bool = False
    extra: str | None = None  # the distribution's extra that installs the implementation's libraries, e.g. "alibi"
    # trainers: the metrics they report that a tuner may optimize, with the better direction
    tune_metrics: Mapping[str, Direction] = field(default_factory=dict, hash=False)
    # trainers: the same per task (mlplat.tasks.TASKS) where a task's metrics differ; a task not listed here
    # takes `tune_metrics` if it is a classification, and none (cannot be tuned) otherwise
    task_tune_metrics: Mapping[str, Mapping[str, Direction]] = field(default_factory=dict, hash=False)
    # trainers: params every tune trial overrides (a trial needs one score: no CV band, no checkpoints)
    tune_trial_params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # tuners: the Katib suggestion algorithm that runs the same search on a cluster (None: no Katib equivalent)
    katib_algorithm: str | None = None
    # the tasks (mlplat.tasks.TASKS) the plugin works for; a spec of another task is refused at resolve time
    tasks: frozenset[str] = field(default_factory=lambda: frozenset({"classification", "regression"}))

    def __post_init__(self) -> None:
        from mlplat.plan import NODES  # the plan's node names are the steps a plugin may need
        from mlplat.tasks import TASKS

        steps = {node.name for node in NODES}
        unknown = sorted(n for n in self.needs if n not in ("image", "image_files") and not (n.startswith("step:") and n[5:] in steps))
        if unknown:
            raise ValueError(f"{self.kind.value} plugin {self.name!r}: unknown needs {unknown}; "
                             f"declare 'image', 'image_files' or 'step:NAME' with NAME one of {', '.join(sorted(steps))}")
        if (self.tune_metrics or self.task_tune_metrics) and self.kind is not StageKind.TRAINER:
            raise ValueError(f"{self.kind.value} plugin {self.name!r}: only trainers declare tune_metrics")
        unknown_tasks = sorted((set(self.tasks) | set(self.task_tune_metrics)) - set(TASKS))
        if unknown_tasks or not self.tasks:
            raise ValueError(f"{self.kind.value} plugin {self.name!r}: tasks must be a non-empty subset of "
                             f"{', '.join(TASKS)}; got {unknown_tasks or 'none'}")
        if self.katib_algorithm is not None and self.kind is not StageKind.TUNER:
            raise ValueError(f"{self.kind.value} plugin {self.name!r}: only tuners declare a katib_algorithm")
        every = [*self.tune_metrics.items(), *(item for m in self.task_tune_metrics.values() for item in m.items())]
        bad = {m: d for m, d in every if d not in ("maximize", "minimize")}
        if bad:
            raise ValueError(f"{self.kind.value} plugin {self.name!r}: tune_metrics directions must be maximize|minimize: {bad}")
        # read-only views: a spec is shared by every run in the process
        object.__setattr__(self, "tune_metrics", MappingProxyType(dict(self.tune_metrics)))
        object.__setattr__(self, "tune_trial_params", MappingProxyType(dict(self.tune_trial_params)))
        object.__setattr__(self, "task_tune_metrics", MappingProxyType(
            {task: MappingProxyType(dict(metrics)) for task, metrics in self.task_tune_metrics.items()}))
        object.__setattr__(self, "tasks", frozenset(self.tasks))

    def tune_metrics_for(self, task: str | None = None) -> dict[str, Direction]:
        """The metrics a tuner may optimize for `task`, with their direction; with no task (not known before
        the data is read) those of every task the plugin works for."""
        from mlplat.tasks import TASKS

        if task is None:
            return {name: direction for t in TASKS if t in self.tasks for name, direction in self.tune_metrics_for(t).items()}
        if task in self.task_tune_metrics:
            return dict(self.task_tune_metrics[task])
        return dict(self.tune_metrics) if task == "classification" else {}

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
        except ModuleNotFoundError as exc:
            if self.extra and exc.name and not exc.name.startswith(module_name.split(".")[0]):
                from mlplat.extras import install_hint

                distribution = _distribution_of(module_name)
                raise PluginUnavailable(f"{self.kind.value} plugin {self.name!r} needs {exc.name}, which is not installed: "
                                        f"{install_hint(self.extra, distribution)}") from exc
            raise PluginUnavailable(f"{self.kind.value} plugin {self.name!r} failed to load {self.factory}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        except (ImportError, AttributeError) as exc:
            raise PluginUnavailable(f"{self.kind.value} plugin {self.name!r} failed to load {self.factory}: "
                                    f"{type(exc).__name__}: {exc}") from exc

    def create(self, params: Mapping[str, Any] | BaseModel | None = None, path: str = "params") -> Any:
        config = params if isinstance(params, BaseModel) else self.parse_config(params, path)
        return self.load()(config)


def _distribution_of(module_name: str) -> str:
    """The installed distribution that ships `module_name`'s top-level package ("mlplat" when unknown)."""
    from importlib.metadata import packages_distributions

    names = packages_distributions().get(module_name.split(".")[0], [])
    return names[0] if names else "mlplat"


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


@dataclass(frozen=True)
class Broken:
    """An entry point that cannot be used: it fails to import, names the wrong object, or clashes with another."""

    kind: StageKind
    name: str
    distribution: str
    entry_point: str
    error: str

    def unavailable(self) -> PluginUnavailable:
        return PluginUnavailable(f"{self.kind.value} plugin {self.name!r} ({self.entry_point} in {self.distribution}) "
                                 f"is broken: {self.error}")


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown distribution>"


def scan(kind: StageKind) -> tuple[dict[str, Discovered], dict[str, Broken]]:
    """Every plugin of one kind: the usable ones and the broken ones, by name.

    A broken entry point is recorded, not raised, so it breaks only the runs that select it. Two
    distributions offering one name make that name broken, found from metadata before any import.
    """
    offered: dict[str, list[tuple[EntryPoint, str]]] = {}
    for ep in entry_points(group=kind.group):
        dist = _distribution_name(ep)
        seen = offered.setdefault(ep.name, [])
        if all((d, e.value) != (dist, ep.value) for e, d in seen):  # the same distribution twice on sys.path
            seen.append((ep, dist))
    found: dict[str, Discovered] = {}
    broken: dict[str, Broken] = {}
    for name, offers in offered.items():
        ep, dist = offers[0]
        if len(offers) > 1:
            (_, first), (other_ep, other) = offers[0], offers[1]
            broken[name] = Broken(kind, name, f"{first}, {other}", ep.value,
                                  f"offered by two distributions: {first} ({ep.value}) and {other} ({other_ep.value}); "
                                  "uninstall one of them")
            continue
        try:
            spec = ep.load()
        except Exception as exc:  # a third-party import error must not break the other plugins
            broken[name] = Broken(kind, name, dist, ep.value, f"failed to load: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(spec, PluginSpec) or spec.kind is not kind or spec.name != name:
            broken[name] = Broken(kind, name, dist, ep.value,
                                  f"must resolve to a PluginSpec of kind {kind.value!r} named {name!r}")
            continue
        found[name] = Discovered(spec, dist, ep.value)
    return found, broken


def discover(kind: StageKind) -> dict[str, Discovered]:
    """The usable plugins of one kind, by name (`scan` also gives the broken ones)."""
    return scan(kind)[0]


def lookup(kind: StageKind | str, name: str) -> Discovered:
    """A usable plugin with its distribution; an unknown name lists the available ones, a broken one says why."""
    kind = StageKind(kind)
    available, broken = scan(kind)
    if name in broken:
        raise broken[name].unavailable()
    if name not in available:
        names = ", ".join(sorted(available)) or "none installed"
        raise PluginUnavailable(f"unknown {kind.value} plugin {name!r}; available: {names}")
    return available[name]


def spec_of(kind: StageKind | str, name: str) -> PluginSpec:
    """The plugin spec for `name` (see `lookup`)."""
    return lookup(kind, name).spec


def get(kind: StageKind | str, name: str) -> PluginSpec:
    """Deprecated name of `spec_of` (it returns a spec, not a plugin)."""
    import warnings

    warnings.warn("mlplat.registry.get is renamed spec_of", DeprecationWarning, stacklevel=2)
    return spec_of(kind, name)


def discover_all() -> dict[StageKind, tuple[dict[str, Discovered], dict[str, Broken]]]:
    return {kind: scan(kind) for kind in StageKind}


def _contract(kind: StageKind) -> tuple[type, dict[str, type | tuple[type, ...]]]:
    """The kind's Protocol and, per contract method, the type its result must have (imported lazily: light discovery)."""
    from mlplat.contracts.augmenter import Augmenter
    from mlplat.contracts.drift_detector import DriftDetector, DriftResult
    from mlplat.contracts.explainer import Explainer, ExplainerState
    from mlplat.contracts.trainer import TrainedModel, Trainer
    from mlplat.contracts.tuner import Tuner, TuneResult
    from mlplat.contracts.validator import ValidationReport, Validator
    from mlplat.data import Table

    contracts: dict[StageKind, tuple[type, dict[str, type | tuple[type, ...]]]] = {
        StageKind.VALIDATOR: (Validator, {"validate": ValidationReport}),
        StageKind.AUGMENTER: (Augmenter, {"augment": Table}),
        StageKind.TRAINER: (Trainer, {"fit": TrainedModel, "inherited_preprocessing": (dict, type(None))}),
        StageKind.TUNER: (Tuner, {"tune": TuneResult}),
        StageKind.EXPLAINER: (Explainer, {"fit": ExplainerState}),
        StageKind.DRIFT_DETECTOR: (DriftDetector, {"fit": dict, "detect": DriftResult}),
    }
    return contracts[kind]


_FROM_CALLER = "_mlplat_from_caller"


def _tagging_context(value: Any) -> Any:
    """A StepContext whose on_epoch marks what it raises, so the guard passes the caller's own exceptions through."""
    from dataclasses import replace

    from mlplat.contracts.context import StepContext

    if not isinstance(value, StepContext):
        return value
    callback = value.on_epoch

    def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
        try:
            callback(epoch, metrics)
        except Exception as exc:
            setattr(exc, _FROM_CALLER, True)
            raise

    return replace(value, on_epoch=on_epoch)


class GuardedPlugin:
    """A created plugin as the core calls it: contract methods that raise, or return the wrong type, become a
    `PluginError` naming the step, plugin and distribution; everything else is the plugin's own attribute."""

    def __init__(self, target: Any, found: Discovered, step: str, path: str = "params") -> None:
        self._target, self._found, self._step, self._path = target, found, step, path
        self._returns = _contract(found.spec.kind)[1]

    def _error(self, message: str) -> PluginError:
        return PluginError(message, step=self._step, plugin=self._found.spec.name, distribution=self._found.distribution)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        expected = self._returns.get(name)
        if expected is None or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(_tagging_context(a) for a in args)
            kwargs = {k: _tagging_context(v) for k, v in kwargs.items()}
            try:
                result = value(*args, **kwargs)
            except SpecError as exc:
                raise _under(self._path, exc) from exc
            except MlplatError:
                raise  # already says what is wrong (a usage error in the plugin's params, a failed gate)
            except ModuleNotFoundError as exc:
                if not self._found.spec.extra:
                    raise self._error(f"{name}() raised ModuleNotFoundError: {exc}") from exc
                from mlplat.extras import install_hint

                raise self._error(f"{name}() needs {exc.name}, which is not installed: "
                                  f"{install_hint(self._found.spec.extra, self._found.distribution)}") from exc
            except Exception as exc:
                if getattr(exc, _FROM_CALLER, False):
                    raise  # the runner's own callback raised it (a pruned trial, an interruption): not the plugin's failure
                raise self._error(f"{name}() raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, expected):
                names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
                raise self._error(f"{name}() returned {type(result).__name__}; the {self._found.spec.kind.value} contract "
                                  f"expects {names}")
            return result

        return call


def create(kind: StageKind | str, name: str, params: Mapping[str, Any] | BaseModel | None = None, *, step: str,
           path: str | None = None) -> Any:
    """Look the plugin up, validate its params, create it and check it against its kind's Protocol; returns it guarded.

    `path` is where the params live in the spec (default `steps.<step>.params`): a plugin that refuses one of its
    params raises `SpecError([(field, message)])`, and the guard names the field under that path."""
    path = path or f"steps.{step}.params"
    found = lookup(kind, name)
    try:
        made = found.spec.create(params, path)
    except SpecError as exc:
        raise exc if exc.problems and exc.problems[0][0].startswith(path) else _under(path, exc) from exc
    except MlplatError:
        raise
    except Exception as exc:
        raise PluginError(f"creating it raised {type(exc).__name__}: {exc}", step=step, plugin=name,
                          distribution=found.distribution) from exc
    protocol = _contract(found.spec.kind)[0]
    if not isinstance(made, protocol):
        missing = [m for m in dir(protocol) if not m.startswith("_") and not hasattr(made, m)]
        raise PluginError(f"its factory returned {type(made).__name__}, which lacks {', '.join(missing) or 'the contract'} "
                          f"of the {found.spec.kind.value} contract", step=step, plugin=name, distribution=found.distribution)
    return GuardedPlugin(made, found, step, path)


def _under(path: str, exc: SpecError) -> SpecError:
    """A plugin's refusal of one of its own params (`SpecError([("device", ...)])`), named by its spec path."""
    return SpecError([(f"{path}.{field}" if field else path, message) for field, message in exc.problems], exc.source)
