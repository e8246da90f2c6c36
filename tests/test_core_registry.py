"""Plugin discovery: entry points only, clear errors, third-party plugins on equal terms."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_SPEC
from mlplat import registry
from mlplat.errors import PluginUnavailable, SpecError
from mlplat.registry import StageKind
from mlplat.spec import parse_spec, resolve

EXAMPLE_PROJECT = REPO / "tests" / "thirdparty" / "mlplat_example"


# The light spec module an entry point names, and the implementation its factory loads lazily.
LINEAR_SPEC = '''
from pydantic import BaseModel, Field
from mlplat.registry import PluginSpec, StageKind


class LinearConfig(BaseModel):
    epochs: int = Field(30, ge=1)


SPEC = PluginSpec("linear", StageKind.TRAINER, LinearConfig, "thirdparty_linear_impl:LinearTrainer", "softmax regression")
'''

LINEAR_TRAINER = '''
class LinearTrainer:
    """Softmax regression: a third-party trainer written only against mlplat's contract."""

    def __init__(self, config):
        self.config = config

    def build_network(self, architecture):
        import torch
        return torch.nn.Linear(architecture["in_features"], architecture["n_classes"])

    def fit(self, data, context):
        import torch
        from mlplat.contracts.trainer import TrainedModel
        torch.manual_seed(context.seed)
        arch = {"in_features": data.info.n_features, "n_classes": data.info.n_classes}
        net = self.build_network(arch)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        X, y = torch.from_numpy(data.train.X), torch.from_numpy(data.train.y)
        for epoch in range(self.config.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(X), y)
            loss.backward()
            opt.step()
            context.on_epoch(epoch, {"train_loss": float(loss)})
        with torch.no_grad():
            acc = float((net(torch.from_numpy(data.validation.X)).argmax(1).numpy() == data.validation.y).mean())
        return TrainedModel(net, arch, metrics={"val_accuracy": acc})
'''
LINEAR_MODULES = {"thirdparty_linear": LINEAR_SPEC, "thirdparty_linear_impl": LINEAR_TRAINER}


@pytest.fixture
def third_party(mlplat_distribution) -> Path:
    """The linear trainer as an installed distribution, imported afresh by each test."""
    return mlplat_distribution("thirdparty-linear", {"mlplat.trainers": {"linear": "thirdparty_linear:SPEC"}}, LINEAR_MODULES)


def test_builtins_are_found_through_entry_points() -> None:
    trainers = registry.discover(StageKind.TRAINER)
    assert trainers["mlp"].distribution == "mlplat"
    assert trainers["mlp"].entry_point == "mlplat_plugins.torch_trainers:MLP_SPEC"


def test_unknown_plugin_lists_the_available_ones() -> None:
    with pytest.raises(PluginUnavailable, match=r"unknown trainer plugin 'nope'; available: .*mlp"):
        registry.spec_of("trainer", "nope")


def test_invalid_params_name_the_field() -> None:
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["train"]["params"] = {"epochs": 0, "bogus": 1}
    with pytest.raises(SpecError) as err:
        resolve(parse_spec(data))
    paths = {path for path, _ in err.value.problems}
    assert paths == {"steps.train.params.epochs", "steps.train.params.bogus"}
    assert "greater than or equal to 1" in str(err.value)


def test_two_distributions_offering_one_name_is_an_error_naming_both(mlplat_distribution) -> None:
    mlplat_distribution("shadow-mlp", {"mlplat.trainers": {"mlp": "shadow_mlp:SPEC"}},
                        {"shadow_mlp": "raise RuntimeError('must not be imported before the conflict is found')"})
    with pytest.raises(PluginUnavailable,
                       match=r"'mlp' .*is broken: offered by two distributions: .*(mlplat.*shadow-mlp|shadow-mlp.*mlplat)"):
        registry.spec_of("trainer", "mlp")
    assert "cnn" in registry.discover(StageKind.TRAINER)  # the clash breaks only the name it is about


def test_entry_point_must_resolve_to_a_matching_spec(mlplat_distribution) -> None:
    mlplat_distribution("wrong-kind", {"mlplat.tuners": {"oops": "wrong_kind:SPEC"}},
                        {"wrong_kind": "from thirdparty_linear import SPEC"})
    mlplat_distribution("thirdparty-linear", {}, LINEAR_MODULES)
    assert "oops" not in registry.discover(StageKind.TUNER) and "grid" in registry.discover(StageKind.TUNER)
    with pytest.raises(PluginUnavailable, match="must resolve to a PluginSpec of kind 'tuner' named 'oops'"):
        registry.spec_of(StageKind.TUNER, "oops")


def test_listing_does_not_import_the_implementation(third_party: Path) -> None:
    spec = registry.spec_of("trainer", "linear")
    assert spec.summary == "softmax regression" and spec.factory == "thirdparty_linear_impl:LinearTrainer"
    assert "thirdparty_linear" in sys.modules  # the light spec module the entry point names
    assert "thirdparty_linear_impl" not in sys.modules  # listing stops there
    assert type(spec.create({"epochs": 1})).__name__ == "LinearTrainer"
    assert "thirdparty_linear_impl" in sys.modules  # creating a plugin is what loads it


def test_third_party_trainer_replaces_builtin_by_configuration_alone(third_party: Path, tmp_path: Path) -> None:
    from mlplat.modeldir import LoadedModel
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore

    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["train"] = {"plugin": "linear", "params": {"epochs": 40}}  # the one-line swap
    result = run_pipeline(resolve(parse_spec(data)), REPO, RunStore(tmp_path / "runs"))
    manifest = json.loads((result.model_dir / "model.json").read_text())
    assert manifest["trainer"]["plugin"] == "linear"
    assert result.metrics["test"]["accuracy"] > 0.9
    model = LoadedModel.load(result.model_dir)  # serving rebuilds it through the third-party plugin
    assert type(model.network).__name__ == "Linear"


def test_third_party_augmenter_package_runs_in_a_pipeline(mlplat_project, tmp_path: Path) -> None:
    """The example package in tests/thirdparty (the README's), selected by name in a spec, runs in-process."""
    import pandas as pd
    from mlplat.data import Splits
    from mlplat.runner import run_pipeline
    from mlplat.runs import RunStore

    mlplat_project(EXAMPLE_PROJECT)
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["augment"] = [{"plugin": "clip_outliers", "params": {"quantile": 0.2}}]
    result = run_pipeline(resolve(parse_spec(data)), REPO, RunStore(tmp_path / "runs"))
    augment_dir = result.run.dir / "steps" / "augment"
    assert [row["augmenter"] for row in json.loads((augment_dir / "augment.json").read_text())] == ["input", "clip_outliers"]
    ingested = Splits.load(result.run.dir / "steps" / "ingest").train.features
    augmented = pd.read_parquet(augment_dir / "train.parquet")[ingested.columns]
    assert (augmented.max() <= ingested.quantile(0.8) + 1e-9).all() and (augmented.min() >= ingested.quantile(0.2) - 1e-9).all()
    assert result.metrics["test"]["accuracy"] > 0.8


BROKEN_VALIDATOR = {"broken_validator": "raise ImportError('no module named sklearnx')"}


def test_a_broken_entry_point_breaks_only_the_runs_that_select_it(mlplat_distribution) -> None:
    import os
    import subprocess

    info = mlplat_distribution("broken-validator", {"mlplat.validators": {"strict": "broken_validator:SPEC"}}, BROKEN_VALIDATOR)
    path = os.pathsep.join(p for p in (str(info.parent), os.environ.get("PYTHONPATH", "")) if p)
    listing = subprocess.run([sys.executable, "-m", "mlplat", "plugins", "list"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": path, "COLUMNS": "300"})
    assert listing.returncode == 0, listing.stderr
    assert "strict" in listing.stdout and "broken" in listing.stdout and "sklearnx" in listing.stdout
    assert "tabular" in listing.stdout
    resolve(parse_spec(TINY_SPEC))  # the built-in validator still resolves
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["validate"] = {"plugin": "strict"}
    with pytest.raises(SpecError) as err:
        resolve(parse_spec(data))
    assert err.value.exit_code == 2
    assert err.value.problems[0][0] == "steps.validate.plugin"
    assert "'strict'" in str(err.value) and "broken-validator" in str(err.value) and "sklearnx" in str(err.value)


def test_resolve_imports_the_factory_so_a_typo_fails_before_any_work(mlplat_distribution) -> None:
    spec_module = LINEAR_SPEC.replace("thirdparty_linear_impl:LinearTrainer", "thirdparty_linear_impl:LinearTrainr")
    mlplat_distribution("typo-linear", {"mlplat.trainers": {"linear": "thirdparty_linear:SPEC"}},
                        {"thirdparty_linear": spec_module, "thirdparty_linear_impl": LINEAR_TRAINER})
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"]["train"] = {"plugin": "linear"}
    with pytest.raises(SpecError) as err:
        resolve(parse_spec(data))
    message = str(err.value)
    assert "steps.train.plugin" in message and "LinearTrainr" in message and "typo-linear" in message


def test_plugins_show_prints_the_config_without_importing_torch() -> None:
    import os
    import subprocess

    code = ("import sys; from typer.testing import CliRunner; from mlplat.cli import app; "
            "r = CliRunner().invoke(app, ['plugins', 'show', 'trainer', 'mlp'], terminal_width=300); "
            "print(r.output); print('TORCH', 'torch' in sys.modules); sys.exit(r.exit_code)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    assert "TORCH False" in shown.stdout
    assert "early_stopping_patience" in shown.stdout and "epochs without val improvement" in shown.stdout
    assert "mlplat_plugins.torch_trainers" in shown.stdout  # where it comes from
    assert "tune metrics (regression): val_rmse (minimize)" in shown.stdout  # per task (PluginSpec.tune_metrics_for)
    unknown = subprocess.run([sys.executable, "-m", "mlplat", "plugins", "show", "nokind", "x"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "not a stage kind" in unknown.stderr


FAILING_TRAINER = LINEAR_TRAINER + '''
    def fit(self, data, context):
        raise RuntimeError("the GPU caught fire")

    def build_network(self, architecture):
        raise NotImplementedError
'''
DICT_VALIDATOR_SPEC = '''
from pydantic import BaseModel
from mlplat.registry import PluginSpec, StageKind

class Nothing(BaseModel):
    pass


SPEC = PluginSpec("dicty", StageKind.VALIDATOR, Nothing, "dict_validator:DictValidator")


class DictValidator:
    def __init__(self, config):
        pass

    def validate(self, splits, context):
        return {"passed": True}
'''


def test_a_plugin_that_raises_exits_1_naming_step_plugin_and_distribution(mlplat_distribution, tmp_path: Path) -> None:
    import os
    import subprocess

    import yaml

    info = mlplat_distribution("fiery-linear", {"mlplat.trainers": {"linear": "thirdparty_linear:SPEC"}},
                               {"thirdparty_linear": LINEAR_SPEC, "thirdparty_linear_impl": FAILING_TRAINER})
    data = json.loads(json.dumps(TINY_SPEC))
    data["steps"] = {"train": {"plugin": "linear"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(info.parent), os.environ.get("PYTHONPATH", "")) if p)}
    command = [sys.executable, "-m", "mlplat", "run", str(tmp_path / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")]
    plain = subprocess.run(command, capture_output=True, text=True, env=env)
    assert plain.returncode == 1, plain.stderr
    assert "step train" in plain.stderr and "'linear'" in plain.stderr and "fiery-linear" in plain.stderr
    assert "the GPU caught fire" in plain.stderr and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "mlplat", "--debug", *command[3:]], capture_output=True, text=True, env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RuntimeError" in debug.stderr


def test_a_wrong_return_type_is_a_plugin_error_naming_the_expected_type(mlplat_distribution, tmp_path: Path) -> None:
    from mlplat.errors import PluginError
    from mlplat.testing import step_context, tiny_splits

    mlplat_distribution("dict-validator", {"mlplat.validators": {"dicty": "dict_validator:SPEC"}},
                        {"dict_validator": DICT_VALIDATOR_SPEC})
    validator = registry.create(StageKind.VALIDATOR, "dicty", {}, step="validate")
    splits = tiny_splits()
    with pytest.raises(PluginError, match=r"step validate, plugin 'dicty', from dict-validator: validate\(\) returned dict; "
                                          r"the validator contract expects ValidationReport"):
        validator.validate(splits, step_context(tmp_path, splits))


REFUSING_VALIDATOR_SPEC = '''
from pydantic import BaseModel
from mlplat.errors import SpecError
from mlplat.registry import PluginSpec, StageKind

class Nothing(BaseModel):
    pass


SPEC = PluginSpec("picky", StageKind.VALIDATOR, Nothing, "picky_validator:PickyValidator")


class PickyValidator:
    def __init__(self, config):
        pass

    def validate(self, splits, context):
        raise SpecError([("threshold", "must be set for this dataset")])
'''


def test_a_plugin_refusing_its_param_is_named_by_the_spec_path(mlplat_distribution, tmp_path: Path) -> None:
    from mlplat.testing import step_context, tiny_splits

    mlplat_distribution("picky-validator", {"mlplat.validators": {"picky": "picky_validator:SPEC"}},
                        {"picky_validator": REFUSING_VALIDATOR_SPEC})
    validator = registry.create(StageKind.VALIDATOR, "picky", {}, step="validate")
    splits = tiny_splits()
    with pytest.raises(SpecError) as refused:
        validator.validate(splits, step_context(tmp_path, splits))
    assert refused.value.problems == [("steps.validate.params.threshold", "must be set for this dataset")]
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(("fields", "refusal"), [
    ('needs=frozenset({"gpu"})', r"unknown needs \['gpu'\]"),
    ('needs=frozenset({"step:validaet"})', r"unknown needs \['step:validaet'\]"),
    ('tune_metrics={"val_accuracy": "maximize"}', "only trainers declare tune_metrics"),
    ('katib_algorithm="tpe"', "only tuners declare a katib_algorithm"),
    ('task_tune_metrics={"regression": {"val_rmse": "minimize"}}', "only trainers declare tune_metrics"),
    ('tasks=frozenset({"ranking"})', r"tasks must be a non-empty subset of classification, regression; got \['ranking'\]"),
])
def test_undeclared_contract_fields_make_the_entry_point_broken(mlplat_distribution, fields: str, refusal: str) -> None:
    source = REFUSING_VALIDATOR_SPEC.replace('"picky_validator:PickyValidator")', f'"picky_validator:PickyValidator", {fields})')
    mlplat_distribution("odd-validator", {"mlplat.validators": {"picky": "picky_validator:SPEC"}}, {"picky_validator": source})
    found, broken = registry.scan(StageKind.VALIDATOR)
    assert "picky" not in found and "tabular" in found
    assert broken["picky"].error.startswith("failed to load: ValueError") and re.search(refusal, broken["picky"].error)


def test_declared_contract_fields_are_typed_spec_fields() -> None:
    mlp = registry.spec_of(StageKind.TRAINER, "mlp")
    assert dict(mlp.tune_metrics) == {"val_accuracy": "maximize", "val_loss": "minimize"}
    assert mlp.tune_trial_params["cv_folds"] == 0
    assert registry.spec_of(StageKind.TUNER, "bayesian").katib_algorithm == "tpe"
    with pytest.raises(TypeError):
        mlp.tune_metrics["val_loss"] = "maximize"  # type: ignore[index]
    # per task: a regression's metrics are its own; with no task, those of every task the trainer works for
    assert mlp.tune_metrics_for("classification") == dict(mlp.tune_metrics)
    assert mlp.tune_metrics_for("regression") == {"val_rmse": "minimize", "val_mae": "minimize", "val_r2": "maximize",
                                                  "val_loss": "minimize"}
    assert set(mlp.tune_metrics_for()) == {"val_accuracy", "val_loss", "val_rmse", "val_mae", "val_r2"}
    with pytest.raises(TypeError):
        mlp.task_tune_metrics["regression"]["val_r2"] = "minimize"  # type: ignore[index]
