"""The Katib Experiment emitted from the tune step: validated against the Katib v1beta1 API models
(kubeflow-katib-api) and the admission rules, kept in sync with manifests/base/katib."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat.errors import SpecError
from mlplat.k8s import katib
from mlplat.search_space import parse_search_space
from mlplat.spec import load_spec, parse_spec, resolve

REPO = Path(__file__).resolve().parents[1]
TUNED = REPO / "pipelines" / "breast_cancer_tuned.yaml"
BASE = REPO / "manifests" / "base" / "katib"


@pytest.fixture(scope="module")
def tuned_spec() -> Any:
    return resolve(load_spec(TUNED), str(TUNED))


def with_tuner(spec: Any, plugin: str, **params: Any) -> Any:
    data = spec.model_dump(mode="json", by_alias=True)
    data["steps"]["tune"]["plugin"] = plugin
    data["steps"]["tune"]["params"] = {"n_trials": 8, "parallel": 2, **params}
    return resolve(parse_spec(data))


def test_the_experiment_validates_and_mirrors_the_tune_step(tuned_spec: Any) -> None:
    exp = katib.experiment(tuned_spec)
    katib.validate_experiment(exp)
    body, tune = exp["spec"], tuned_spec.steps.tune
    assert exp["apiVersion"] == "kubeflow.org/v1beta1" and exp["kind"] == "Experiment"
    assert body["algorithm"]["algorithmName"] == "tpe"
    assert body["parallelTrialCount"] == tune.params["parallel"] and body["maxTrialCount"] == tune.params["n_trials"]
    assert body["earlyStopping"]["algorithmName"] == "medianstop"
    assert body["objective"]["objectiveMetricName"] == "val_accuracy"
    params = {p["name"]: p for p in body["parameters"]}
    assert list(params) == list(tune.search_space)
    assert params["lr"]["feasibleSpace"]["distribution"] == "logUniform"
    assert params["width"]["parameterType"] == "categorical"
    container = body["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:5] == ["python", "-m", "mlplat", "tune", "trial"]
    assert "--param=lr=${trialParameters.lr}" in container["command"]
    assert "dropout" in exp["metadata"]["annotations"]["mlplat.io/conditional-params"]


@pytest.mark.parametrize("plugin, algorithm", [("grid", "grid"), ("random", "random"), ("bayesian", "tpe"),
                                               ("gp", "bayesianoptimization")])
def test_each_tuner_maps_to_its_katib_algorithm(tuned_spec: Any, plugin: str, algorithm: str) -> None:
    spec = with_tuner(tuned_spec, plugin, pruner="none")
    exp = katib.experiment(spec)
    katib.validate_experiment(exp)
    assert exp["spec"]["algorithm"]["algorithmName"] == algorithm
    assert "earlyStopping" not in exp["spec"]
    if plugin == "grid":  # exactly the local grid points
        space = parse_search_space(spec.steps.tune.search_space)
        lr = next(p for p in exp["spec"]["parameters"] if p["name"] == "lr")
        assert lr["parameterType"] == "discrete"
        assert [float(v) for v in lr["feasibleSpace"]["list"]] == space.params["lr"].grid()


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_local_only_pruners_become_median_stop(tuned_spec: Any, pruner: str) -> None:
    exp = katib.experiment(with_tuner(tuned_spec, "bayesian", pruner=pruner))
    katib.validate_experiment(exp)
    assert exp["spec"]["earlyStopping"]["algorithmName"] == "medianstop"
    assert pruner.replace("_", " ") in exp["metadata"]["annotations"]["mlplat.io/early-stopping"]


def test_a_loss_metric_is_minimized(tuned_spec: Any) -> None:
    data = tuned_spec.model_dump(mode="json", by_alias=True)
    data["steps"]["tune"]["metric"] = "val_loss"
    exp = katib.experiment(resolve(parse_spec(data)))
    katib.validate_experiment(exp)
    assert exp["spec"]["objective"]["type"] == "minimize" and exp["spec"]["objective"]["objectiveMetricName"] == "val_loss"
    assert katib.experiment(tuned_spec)["spec"]["objective"]["type"] == "maximize"  # val_accuracy


def test_committed_manifests_match_the_generator(tuned_spec: Any) -> None:
    docs = [yaml.safe_load(p.read_text()) for p in (BASE / "configmap.yaml", BASE / "experiment.yaml")]
    assert docs == katib.manifests(tuned_spec, TUNED.read_text()), \
        "regenerate: mlplat tune katib pipelines/breast_cancer_tuned.yaml -o manifests/base/katib"
    katib.validate_experiment(docs[1])
    assert yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"] == ["configmap.yaml", "experiment.yaml"]
    for overlay in ("dev", "prod"):
        kustomization = REPO / "manifests" / "overlays" / overlay / "kustomization.yaml"
        assert "../../base/katib" in yaml.safe_load(kustomization.read_text())["resources"]


def broken(exp: dict[str, Any], edit: Any) -> dict[str, Any]:
    exp = copy.deepcopy(exp)
    edit(exp)
    return exp


@pytest.mark.parametrize("edit, path, message", [
    (lambda e: e["spec"].update(parallelTrialCounts=3), "spec.parallelTrialCounts", "not a field"),
    (lambda e: e["spec"]["algorithm"].update(algorithmName="tpe2"), "spec.algorithm.algorithmName", "must be one of"),
    (lambda e: e["spec"]["parameters"][0].update(parameterType="float"), "spec.parameters[0].parameterType", "must be one of"),
    (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].update(min=0.1), "spec.parameters[0].feasibleSpace.min", "string"),
    (lambda e: e["spec"]["trialTemplate"]["trialParameters"].pop(0), "spec.trialTemplate.trialSpec",
     "${trialParameters.lr} is not declared"),
    (lambda e: e["spec"]["trialTemplate"].update(primaryContainerName="main"), "spec.trialTemplate.primaryContainerName", "no container"),
    (lambda e: e["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0].update(cmd=["x"]),
     "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].cmd", "PodTemplateSpec"),
    (lambda e: e["spec"]["earlyStopping"].update(algorithmName="hyperband"), "spec.earlyStopping.algorithmName", "must be one of"),
    (lambda e: e["metadata"].update(name="a" * 41), "metadata.name", "at most 40"),
    (lambda e: e["metadata"].update(name="1-tune"), "metadata.name", "DNS-1035"),
    (lambda e: e["spec"]["algorithm"]["algorithmSettings"].append({"name": "n_startup_trials", "value": "5"}),
     "spec.algorithm.algorithmSettings[1].name", "not a setting of tpe"),
    (lambda e: e["spec"]["algorithm"]["algorithmSettings"][0].update(value="-1"),
     "spec.algorithm.algorithmSettings[0].value", "integer >= 0"),
    (lambda e: e["spec"]["earlyStopping"]["algorithmSettings"][1].update(value="0"),
     "spec.earlyStopping.algorithmSettings[1].value", "integer >= 1"),
    (lambda e: e["spec"].update(maxTrialCount=0, parallelTrialCount=0), "spec.maxTrialCount", "greater than 0"),
    (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].update(distribution="loguniform"),
     "spec.parameters[0].feasibleSpace.distribution", "must be one of"),
    (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].update(min="tiny"), "spec.parameters[0].feasibleSpace", "double numbers"),
    (lambda e: e["spec"]["parameters"][4]["feasibleSpace"].update(max="2.5"), "spec.parameters[4].feasibleSpace", "int numbers"),
    (lambda e: e["spec"]["parameters"][2]["feasibleSpace"].update(min="1"), "spec.parameters[2].feasibleSpace",
     "not allowed for categorical"),
    (lambda e: e["spec"]["metricsCollectorSpec"].update(source={"fileSystemPath": {"path": "/m", "kind": "File"}}),
     "spec.metricsCollectorSpec.source", "StdOut"),
    (lambda e: e["spec"]["objective"].update(additionalMetricNames=["val_accuracy"]),
     "spec.objective.additionalMetricNames", "objectiveMetricName"),
])
def test_the_validator_rejects_broken_experiments(tuned_spec: Any, edit: Any, path: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        katib.validate_experiment(broken(katib.experiment(tuned_spec), edit))
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems


def test_a_long_spec_name_is_refused_before_katib_sees_it(tuned_spec: Any) -> None:
    data = tuned_spec.model_dump(mode="json", by_alias=True)
    data["name"] = "a-very-long-pipeline-name-for-katib-x"  # 37 + "-tune" > 40
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert any(p == "name" and "Katib" in m for p, m in info.value.problems), info.value.problems


def test_the_experiment_yaml_keeps_katib_strings_for_go_yaml(tuned_spec: Any) -> None:
    """`mlplat tune katib` validates the YAML it writes as go-yaml reads it, not only the dict."""
    from mlplat.k8s import goyaml

    text = "---\n".join(katib.to_yaml_docs(katib.manifests(tuned_spec, TUNED.read_text())))
    assert goyaml.typing_mismatches(text) == []
    exp = list(yaml.safe_load_all(text))[1]
    spaces = [p["feasibleSpace"] for p in exp["spec"]["parameters"]]
    assert all(isinstance(v, str) for fs in spaces for k, v in fs.items() if k in ("min", "max", "step"))
    assert all(isinstance(v, str) for fs in spaces for v in fs.get("list", []))
    assert "min: '1e-06'" in text


def test_the_overlays_label_their_namespaces_for_katib_injection() -> None:
    import shutil

    for overlay in ("dev", "prod"):
        directory = REPO / "manifests" / "overlays" / overlay
        namespace = yaml.safe_load((directory / "kustomization.yaml").read_text())["namespace"]
        if shutil.which("kubectl"):
            rendered = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout
            docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Namespace"]
        else:
            docs = [yaml.safe_load((directory / "namespace.yaml").read_text())]
        assert [d["metadata"]["name"] for d in docs] == [namespace]
        assert docs[0]["metadata"]["labels"]["katib.kubeflow.org/metrics-collector-injection"] == "enabled"


def test_katibs_stdout_collector_reads_the_trial_lines() -> None:
    """The lines `mlplat tune trial` prints, parsed with Katib's DefaultFilter and timestamp rule."""
    lines = ['2026-01-02T03:04:05Z params {"lr": 0.01, "width": 16}',
             "2026-01-02T03:04:06Z epoch 0: val_accuracy=0.812500",
             katib.metric_line("val_accuracy", 0.9375, when=1767323047.0),
             "no timestamp val_accuracy=0.5", "2026-01-02T03:04:08Z val_loss=0.3"]
    assert katib.parse_stdout_metrics(lines, ["val_accuracy"]) == [
        ("2026-01-02T03:04:06Z", "val_accuracy", "0.812500"), ("2026-01-02T03:04:07Z", "val_accuracy", "0.937500"),
        ("0001-01-01T00:00:00Z", "val_accuracy", "0.5")]


def test_trial_values_round_trip_through_katib_strings(tuned_spec: Any) -> None:
    space = parse_search_space(tuned_spec.steps.tune.search_space)
    for name, value in {"lr": 0.00123, "width": 64, "depth": 2}.items():
        param = space.params[name]
        assert katib.parse_trial_value(param, katib.katib_value(param, value), name) == value
    with pytest.raises(SpecError, match="not one of"):
        katib.parse_trial_value(space.params["width"], "17", "--param width")


@pytest.mark.slow
def test_a_katib_trial_command_trains_and_prints_the_metric(tmp_path: Path) -> None:
    """What a Katib trial pod runs: the same trainer on the same split, metrics on stdout."""
    spec = yaml.safe_load(TUNED.read_text())
    del spec["steps"]["validate"]
    spec["steps"]["train"]["params"].update(epochs=2, checkpoint_every=0)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "mlplat", "tune", "trial", str(spec_file), "--param=lr=0.01",
               "--param=width=16", "--param=depth=1", "--param=dropout=0.3", "--param=batch_size=32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert '"depth": 1' in lines[0] and "dropout" not in lines[0]  # inactive conditional param dropped
    assert sum("epoch" in line and "val_accuracy=" in line for line in lines) == 2
    final = lines[-1].split()
    assert final[0].endswith("Z") and final[1].startswith("val_accuracy=") and 0.5 < float(final[1].split("=")[1]) <= 1
    collected = katib.parse_stdout_metrics(lines, ["val_accuracy"])  # what Katib's StdOut collector records
    assert len(collected) == 3 and collected[-1] == (final[0], "val_accuracy", final[1].split("=")[1])
