"""Search spaces for the tune step: the YAML model, its validation, and what samplers need.

A space maps trainer config fields to distributions, in order:

    lr:      {type: float, low: 1.0e-4, high: 0.1, log: true}
    layers:  {type: int, low: 1, high: 3}
    act:     {type: categorical, choices: [relu, gelu]}
    dropout: {type: float, low: 0.0, high: 0.5, when: {layers: {gt: 1}}}

`when` makes a param conditional on params declared before it (define-by-run, as Optuna
samples). Categorical choices may be any JSON value (e.g. layer-width lists); samplers only
take scalars, so such choices travel as their JSON text (`encode_choice`/`decode_choice`).
The space is checked against the trainer's pydantic config model before anything runs, so a
typo or an out-of-range bound fails with the param's path, e.g.
`steps.tune.search_space.lr: ...`.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from mlplat.errors import SpecError

SPACE_PATH = "steps.tune.search_space"
Scalar = bool | int | float | str | None

CONDITION_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "in": lambda value, options: value in options,
    "not_in": lambda value, options: value not in options,
}
Condition = dict[str, dict[Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "not_in"], Any]]


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Condition = Field(default_factory=dict, description="{param: {op: value}}; all must hold")


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    grid_points: int = Field(4, ge=2, le=100, description="values per param for the grid tuner")

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        return self

    def grid(self) -> list[float]:
        n = self.grid_points
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            points = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        else:
            points = [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]
        # round-off must not push an end point outside [low, high]: samplers check the bounds
        return [float(min(max(round(v, 12), self.low), self.high)) for v in points]


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False
    grid_points: int | None = Field(None, ge=2, le=100, description="grid tuner: values to take (default: every step)")

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log scale needs low >= 1 and step 1")
        return self

    def grid(self) -> list[int]:
        values = list(range(self.low, self.high + 1, self.step))
        if self.grid_points is None or self.grid_points >= len(values):
            return values
        picks = [round(i * (len(values) - 1) / (self.grid_points - 1)) for i in range(self.grid_points)]
        return [values[i] for i in sorted(set(picks))]


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalParam:
        encoded = [encode_choice(c) for c in self.choices]
        if len(set(encoded)) != len(encoded):
            raise ValueError("choices must be distinct")
        return self

    def grid(self) -> list[Any]:
        return list(self.choices)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(RootModel[dict[str, ParamSpec]]):
    """Ordered param name -> distribution. Conditions may only look at earlier params."""

    @model_validator(mode="after")
    def _conditions_look_back(self) -> SearchSpace:
        seen: list[str] = []
        for name, param in self.root.items():
            for ref, tests in param.when.items():
                if ref == name:
                    raise ValueError(f"{name}: a param cannot be conditional on itself")
                if ref not in seen:
                    raise ValueError(f"{name}: condition refers to {ref!r}, which must be declared before it")
                for op, value in tests.items():
                    if op in ("in", "not_in") and not isinstance(value, list):
                        raise ValueError(f"{name}: condition {ref}.{op} needs a list")
            seen.append(name)
        return self

    @property
    def params(self) -> dict[str, FloatParam | IntParam | CategoricalParam]:
        return self.root

    def active(self, name: str, chosen: Mapping[str, Any]) -> bool:
        """Whether `name` is sampled given the values chosen so far (inactive parents make it inactive)."""
        for ref, tests in self.root[name].when.items():
            if ref not in chosen:
                return False
            if not all(CONDITION_OPS[op](chosen[ref], value) for op, value in tests.items()):
                return False
        return True

    def sample(self, suggest: Callable[[str, FloatParam | IntParam | CategoricalParam], Any]) -> dict[str, Any]:
        """Walk the space in order, calling `suggest(name, param)` for each active param."""
        chosen: dict[str, Any] = {}
        for name, param in self.root.items():
            if self.active(name, chosen):
                chosen[name] = suggest(name, param)
        return chosen

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the params' grid values, over the params active in it: a conditional
        param only multiplies the points where its condition holds, so no two points differ only
        in a value the trainer would not use."""
        points: list[dict[str, Any]] = [{}]
        for name, param in self.root.items():
            expanded: list[dict[str, Any]] = []
            for point in points:
                expanded += [{**point, name: value} for value in param.grid()] if self.active(name, point) else [point]
            points = expanded
        return points

    def drop_inactive(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only the params whose conditions hold (for externally chosen values, e.g. Katib's)."""
        kept: dict[str, Any] = {}
        for name in self.root:
            if name in params and self.active(name, kept):
                kept[name] = params[name]
        return kept


def encode_choice(value: Any) -> Scalar:
    """Samplers store scalars; other JSON values (lists, dicts) travel as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, separators=(",", ":"))


def decode_choice(param: CategoricalParam, stored: Any) -> Any:
    for choice in param.choices:
        if encode_choice(choice) == stored:
            return choice
    raise ValueError(f"{stored!r} is not one of {param.choices}")


def parse_search_space(data: Mapping[str, Any] | SearchSpace, path: str = SPACE_PATH) -> SearchSpace:
    """Parse a raw `search_space` block; errors name the param, e.g. `steps.tune.search_space.lr.low`."""
    if isinstance(data, SearchSpace):
        return data
    try:
        return SearchSpace.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # discriminated unions put the type tag in the location; drop it so the path reads like the YAML
            loc = [str(p) for p in error["loc"] if p not in ("float", "int", "categorical")]
            message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            if error["type"] == "union_tag_invalid":
                message = "type must be one of: float, int, categorical"
            problems.append((".".join([path, *loc]), message.removeprefix("Value error, ")))
        raise SpecError(problems) from None


def check_against_config(space: SearchSpace, config_model: type[BaseModel], base: Mapping[str, Any],
                         path: str = SPACE_PATH) -> None:
    """Every param must be a field of the trainer config, and every value the space can produce
    (bounds, grid points, choices) must pass the config's own validation."""
    problems: list[tuple[str, str]] = []
    fields = config_model.model_fields
    for name, param in space.params.items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            problems.append((f"{path}.{name}", f"not a parameter of the trainer config {config_model.__name__} (known: {known})"))
            continue
        # bounds plus the grid points (in-range values between valid bounds pass any monotone constraint)
        values = list(param.choices) if isinstance(param, CategoricalParam) else [param.low, param.high, *param.grid()[:50]]
        for value in values:
            try:
                config_model.model_validate({**base, name: value})
            except ValidationError as exc:
                messages = "; ".join(e["msg"] for e in exc.errors() if e["loc"][:1] == (name,)) or str(exc.errors()[0]["msg"])
                problems.append((f"{path}.{name}", f"value {value!r} is invalid for the trainer: {messages}"))
                break
    if problems:
        raise SpecError(problems)
