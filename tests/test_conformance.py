"""Conformance: every discovered plugin of every kind honours its contract (mlplat.testing.check_plugin).
New plugins, built-in or third-party, are picked up automatically; the checks themselves live in the kit
so that plugin authors run the same ones."""

from __future__ import annotations

import pytest
from mlplat import registry
from mlplat.registry import StageKind
from mlplat.testing import ConformanceError, check_plugin

EVERY_PLUGIN = [(kind, name) for kind in StageKind for name in sorted(registry.discover(kind))]


def test_every_kind_has_a_builtin_plugin() -> None:
    for kind in StageKind:
        builtin = [n for n, d in registry.discover(kind).items() if d.distribution == "mlplat"]
        assert builtin, f"no built-in {kind.value} plugin"


@pytest.mark.parametrize(("kind", "name"), EVERY_PLUGIN, ids=[f"{k.value}:{n}" for k, n in EVERY_PLUGIN])
def test_plugin_honours_its_contract(kind: StageKind, name: str) -> None:
    check_plugin(kind, name)


# Each broken plugin breaks one rule; the kit must name that rule (so the checks above can fail).
BROKEN_SPEC = '''
from pydantic import BaseModel
from mlplat.registry import PluginSpec, StageKind


class NoDefault(BaseModel):
    rate: float


class Empty(BaseModel):
    pass


NO_DEFAULT = PluginSpec("no_default", StageKind.AUGMENTER, NoDefault, "broken_impl:Identity")
NOT_AN_AUGMENTER = PluginSpec("not_an_augmenter", StageKind.AUGMENTER, Empty, "broken_impl:Nothing")
MUTATES = PluginSpec("mutates", StageKind.AUGMENTER, Empty, "broken_impl:Mutates")
DROPS_COLUMN = PluginSpec("drops_column", StageKind.AUGMENTER, Empty, "broken_impl:DropsColumn")
WRONG_BEST = PluginSpec("wrong_best", StageKind.TUNER, Empty, "broken_impl:FirstTrial")
UNNAMED = PluginSpec("unnamed", StageKind.EXPLAINER, Empty, "broken_impl:Unnamed")
'''

BROKEN_IMPL = '''
import numpy as np
from mlplat.contracts.explainer import ExplainerState
from mlplat.contracts.tuner import TuneResult


class Identity:
    def __init__(self, config):
        pass

    def augment(self, train, context):
        return train


class Nothing(Identity):
    augment = None


class Mutates(Identity):
    def augment(self, train, context):
        train.features.iloc[0, 0] = 1e6
        return train


class DropsColumn(Identity):
    def augment(self, train, context):
        return type(train)(train.features.iloc[:, 1:], train.labels, train.row_ids)


class FirstTrial(Identity):
    def tune(self, objective, space, context, direction="maximize"):
        params = [{"x": x, "width": 8} for x in (0.0, 0.3)]
        values = [objective(p, lambda epoch, value: None) for p in params]
        return TuneResult(params[0], values[0])


class Unnamed(Identity):
    def fit(self, model, background, context):
        return ExplainerState()

    def load(self, model, state):
        return self

    def explain(self, X):
        return [{"attributions": {f"feature_{i}": 0.0 for i in range(X.shape[1])}} for _ in X]
'''

BROKEN = {
    "augmenter": {"no_default": "broken_spec:NO_DEFAULT", "not_an_augmenter": "broken_spec:NOT_AN_AUGMENTER",
                  "mutates": "broken_spec:MUTATES", "drops_column": "broken_spec:DROPS_COLUMN"},
    "tuner": {"wrong_best": "broken_spec:WRONG_BEST"},
    "explainer": {"unnamed": "broken_spec:UNNAMED"},
}


@pytest.mark.parametrize(("kind", "name", "rule"), [
    ("augmenter", "no_default", r"augmenter plugin 'no_default': its config must build with defaults alone"),
    ("augmenter", "not_an_augmenter", r"returned Nothing, which lacks the Augmenter methods \(augment\)"),
    ("augmenter", "mutates", r"must not mutate their input"),
    ("augmenter", "drops_column", r"must keep the feature columns in order"),
    ("tuner", "wrong_best", r"best_value must be the max over the trials"),
    ("explainer", "unnamed", r"attributions must be keyed by every feature name"),
])
def test_a_broken_plugin_fails_naming_the_broken_rule(kind: str, name: str, rule: str, mlplat_distribution) -> None:
    mlplat_distribution("broken-plugins", {f"mlplat.{k}s": eps for k, eps in BROKEN.items()},
                        {"broken_spec": BROKEN_SPEC, "broken_impl": BROKEN_IMPL})
    with pytest.raises(ConformanceError, match=rule):
        check_plugin(kind, name)
