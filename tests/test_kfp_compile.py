"""KFP compile path: every example spec compiles and loads back, checked-in YAML is fresh,
resources/retries/caching/node selectors/gates land in the IR, bad input is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlplat import steps
from mlplat.errors import MlplatError, SpecError, UsageError
from mlplat.k8s import trainjob
from mlplat.kfp import compiler, step, submit
from mlplat.kfp.local import KfpLocalSettingsIgnored, warn_ignored_settings
from mlplat.spec import load_spec, parse_spec, resolve

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "pipelines").glob("*.yaml"))
CHECKED_IN = REPO / "manifests/base/pipelines"
REGENERATE = "regenerate with `mlplat compile --all` (from the repo root)"

GPU_SPEC: dict[str, Any] = {
    "name": "gpu-demo",
    "image": "registry.example.com/mlplat:gpu",
    "dataset": {"source": "sklearn:breast_cancer"},
    "steps": {
        "validate": {"plugin": "tabular"},
        "train": {"plugin": "mlp", "params": {"epochs": 2}, "image": "registry.example.com/mlplat:cuda",
                  "resources": {"cpu": "4", "memory": "8Gi", "gpus": 2}, "retries": 3, "caching": False,
                  "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "evaluate": {"params": {"min_accuracy": 0.5}},
    },
}


def compiled_docs(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, platform spec) documents of a compiled IR YAML."""
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def by_name(tasks: dict[str, Any], name: str) -> dict[str, Any]:
    """A DAG task by its display name (condition tasks are keyed condition-N)."""
    return next(t for t in tasks.values() if t["taskInfo"]["name"] == name)


def inner_tasks(ir: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return ir["components"][task["componentRef"]["name"]]["dag"]["tasks"]


def load_back(path: Path) -> Any:
    from kfp import components

    return components.load_component_from_file(str(path))


@pytest.fixture(scope="module")
def gpu_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = resolve(parse_spec(GPU_SPEC))
    return compiler.compile_spec(spec, tmp_path_factory.mktemp("kfp") / "gpu.yaml")


def test_there_are_example_specs() -> None:
    assert any(p.name == "breast_cancer.yaml" for p in SPECS)


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_every_example_spec_compiles_and_loads_back(spec_path: Path, tmp_path: Path) -> None:
    spec = resolve(load_spec(spec_path), str(spec_path))
    out = compiler.compile_spec(spec, tmp_path / "pipeline.yaml")
    component = load_back(out)
    assert component.name == spec.name
    ir, _ = compiled_docs(out)
    executors = ir["deploymentSpec"]["executors"]
    kinds = {"ingest", "train", "evaluate", "publish"} | {p.split(".")[0] for p, _ in spec.steps.plugin_steps()}
    assert {f"exec-{k}" for k in kinds} <= set(executors)
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"], name
        assert "mlplat.kfp import runtime" in container["command"][-1], name  # runs mlplat, installs nothing
        assert "pip install" not in " ".join(container["command"]), name


def test_checked_in_pipelines_are_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "pipelines"
    compiler.compile_all(REPO / "pipelines", fresh / "compiled")
    fresh_files = {p.name for p in (fresh / "compiled").glob("*.yaml")}
    checked_files = {p.name for p in (CHECKED_IN / "compiled").glob("*.yaml")}
    assert checked_files == fresh_files, f"compiled pipelines differ from pipelines/*.yaml; {REGENERATE}"
    for name in sorted(fresh_files):
        assert (CHECKED_IN / "compiled" / name).read_text() == (fresh / "compiled" / name).read_text(), \
            f"manifests/base/pipelines/compiled/{name} is stale; {REGENERATE}"
    assert not (CHECKED_IN / "kustomization.yaml").exists()  # files to upload, not ConfigMaps KFP never reads


@pytest.mark.parametrize("path", sorted((CHECKED_IN / "compiled").glob("*.yaml")), ids=lambda p: p.stem)
def test_checked_in_pipelines_load_through_kfp(path: Path) -> None:
    component = load_back(path)
    assert component.pipeline_spec.root.dag.tasks, path
    assert {"data_root", "runs_dir", "run_id"} <= set(component.component_spec.inputs)


def test_checked_in_trainjob_is_fresh(tmp_path: Path) -> None:
    spec = resolve(load_spec(REPO / trainjob.DEMO_SPEC))
    for fresh in trainjob.write_base(spec, tmp_path):
        assert (REPO / trainjob.BASE_DIR / fresh.name).read_text() == fresh.read_text(), \
            f"{trainjob.BASE_DIR}/{fresh.name} is stale; {REGENERATE}"


def test_resources_gpus_retries_caching_node_selector_in_compiled_yaml(gpu_pipeline: Path) -> None:
    ir, platform = compiled_docs(gpu_pipeline)
    train = ir["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == "registry.example.com/mlplat:cuda"  # per-step image
    assert ir["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["image"] == "registry.example.com/mlplat:gpu"
    resources = train["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert int(resources["accelerator"]["resourceCount"]) == 2
    assert resources["cpuRequest"] == resources["cpuLimit"] == 4
    assert resources["memoryRequest"] == resources["memoryLimit"] == pytest.approx(8 * 1.073741824)
    evaluate = ir["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["resources"]  # no resources: the defaults
    assert evaluate["resourceCpuRequest"] == evaluate["resourceCpuLimit"] == "1" and evaluate["resourceMemoryLimit"] == "2Gi"
    inner = {t["taskInfo"]["name"]: t for t in ir["root"]["dag"]["tasks"].values()}
    assert inner["train"]["retryPolicy"]["maxRetryCount"] == 3
    assert inner["train"]["cachingOptions"] == {}  # enableCache false is omitted
    assert inner["evaluate"]["cachingOptions"] == {"enableCache": True}
    selector = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["nodeSelector"]
    assert selector["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_gates_are_tasks_that_every_later_step_waits_for(gpu_pipeline: Path) -> None:
    """A gate is a task after the step that decides it; everything after it depends on it, so a failed gate
    fails the run (a green run with nothing trained was the old dsl.If) and the deciding step keeps its report."""
    ir, _ = compiled_docs(gpu_pipeline)
    root = ir["root"]["dag"]["tasks"]
    names = {key: t["taskInfo"]["name"] for key, t in root.items()}
    gate_keys = {name: key for key, name in names.items() if name.endswith("-gate")}
    assert set(gate_keys) == {"validation-gate", "evaluation-gate"}
    assert not any("triggerPolicy" in t for t in root.values())
    validation, evaluation = root[gate_keys["validation-gate"]], root[gate_keys["evaluation-gate"]]
    assert validation["dependentTasks"] == ["validate"]
    assert validation["inputs"]["artifacts"]["result"]["taskOutputArtifact"] == {"outputArtifactKey": "findings",
                                                                                 "producerTask": "validate"}
    assert evaluation["inputs"]["artifacts"]["result"]["taskOutputArtifact"]["producerTask"] == "evaluate"
    for name in ("train", "evaluate"):
        assert gate_keys["validation-gate"] in by_name(root, name)["dependentTasks"]
    assert {gate_keys["validation-gate"], gate_keys["evaluation-gate"]} <= set(by_name(root, "publish")["dependentTasks"])


def test_a_gate_task_raises_the_in_process_runners_words(tmp_path: Path) -> None:
    from mlplat.errors import GateFailed
    from mlplat.kfp import runtime

    work = tmp_path / "workdir"
    work.mkdir()
    (work / "metrics.json").write_text(json.dumps({"gate": {"passed": False, "failures": ["test accuracy 0.5 < 0.9"]}}))
    artifact = type("Artifact", (), {"path": str(work)})()
    with pytest.raises(GateFailed, match=r"^evaluation gate failed: test accuracy 0.5 < 0.9$"):
        runtime.gate("evaluation", artifact)
    (work / "metrics.json").write_text(json.dumps({"gate": {"passed": True, "failures": []}}))
    runtime.gate("evaluation", artifact)


def test_bad_gpu_count_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GPU_SPEC))
    bad["steps"]["train"]["resources"]["gpus"] = 3
    with pytest.raises(SpecError) as caught:
        parse_spec(bad)
    assert "steps.train.resources.gpus" in str(caught.value) and "0, 1, 2, 4, 8" in str(caught.value)
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(bad))
    done = subprocess.run([sys.executable, "-m", "mlplat", "compile", str(spec_file), "-o", str(tmp_path / "out.yaml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "steps.train.resources.gpus" in done.stderr and "got 3" in done.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_bad_cpu_quantity_names_the_field() -> None:
    bad = json.loads(json.dumps(GPU_SPEC))
    bad["steps"]["train"]["resources"]["cpu"] = "lots"
    with pytest.raises(SpecError, match=r"steps\.train\.resources"):
        compiler.build_pipeline(resolve(parse_spec(bad)))


def test_kfp_local_warns_that_resources_have_no_effect() -> None:
    spec = resolve(parse_spec(GPU_SPEC))
    with pytest.warns(KfpLocalSettingsIgnored, match=r"steps\.train\.resources\.gpus=2") as caught:
        found = warn_ignored_settings(spec)
    assert "steps.train.retries=3" in found and "steps.train.resources.memory=8Gi" in found
    assert "image=registry.example.com/mlplat:gpu" in found and "steps.train.image=registry.example.com/mlplat:cuda" in found
    assert "node_selector" in str(caught[0].message)
    plain = resolve(load_spec(REPO / "pipelines/breast_cancer.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_ignored_settings(plain) == []


def test_component_parameters_round_trip_to_the_spec() -> None:
    spec = resolve(parse_spec(GPU_SPEC))
    payload = compiler.spec_json(spec)
    for kind in ("validate", "train", "evaluate"):
        plugin, params = step.step_parameters(spec, kind)
        assert step.spec_for_step(payload, kind, plugin, params) == spec
    changed = step.spec_for_step(payload, "train", "mlp", json.dumps({**spec.steps.train.params, "epochs": 5}))
    assert changed.steps.train.params["epochs"] == 5  # the component's params are what runs
    chained = spec.model_copy(deep=True)
    chained.steps.augment = [step.StepSpec(plugin="a", params={"k": 1}), step.StepSpec(plugin="b", params={})]
    plugin, params = step.step_parameters(chained, "augment")
    assert plugin == "a,b"
    assert step.spec_for_step(compiler.spec_json(chained), "augment", plugin, params).steps.augment == chained.steps.augment


def test_step_process_runs_the_ingest_step(tmp_path: Path) -> None:
    from mlplat.data import Splits

    spec = resolve(load_spec(REPO / "pipelines/breast_cancer.yaml"))
    assert step.main(["ingest", "--spec", compiler.spec_json(spec), "--out", str(tmp_path / "data")]) == 0
    splits = Splits.load(tmp_path / "data")
    assert len(splits.test.labels) == 114 and splits.info.classes == ["benign", "malignant"]
    assert json.loads((tmp_path / "data" / step.STEP_JSON).read_text())["kind"] == "ingest"


def test_submit_prepares_a_loadable_package_and_names_the_run(tmp_path: Path) -> None:
    spec = resolve(load_spec(REPO / "pipelines/breast_cancer.yaml"))
    prepared = submit.prepare(spec, tmp_path)
    assert prepared.experiment_name == "breast-cancer" and prepared.run_name.startswith("breast-cancer-")
    assert load_back(Path(prepared.pipeline_file)).name == "breast-cancer"
    assert submit.prepare(spec, tmp_path, "nightly").experiment_name == "nightly"

    calls: list[dict[str, Any]] = []

    class RecordingClient:  # stands in for a cluster, which does not exist here
        def __init__(self, host: str, namespace: str, existing_token: str | None) -> None:
            calls.append({"host": host, "namespace": namespace, "token": existing_token})

        def create_run_from_pipeline_package(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return type("Run", (), {"run_id": "run-123"})()

        def wait_for_run_completion(self, run_id: str, timeout: float) -> Any:
            calls.append({"wait": run_id})
            return type("Run", (), {"state": "FAILED" if run_id == "run-bad" else "SUCCEEDED", "error": "step train failed"})()

    assert submit.submit(prepared, "http://kfp.example.com:8080/", client_factory=RecordingClient) == "run-123"
    assert calls == [{"host": "http://kfp.example.com:8080", "namespace": "kubeflow", "token": None},
                     {"pipeline_file": prepared.pipeline_file, "run_name": prepared.run_name,
                      "experiment_name": "breast-cancer", "arguments": {}, "namespace": None}]
    calls.clear()  # multi-user Kubeflow: the profile namespace and the token go with the client and the run
    assert submit.submit(prepared, "https://kf.example.com/pipeline", "team-a", "tok", RecordingClient) == "run-123"
    assert calls[0] == {"host": "https://kf.example.com/pipeline", "namespace": "team-a", "token": "tok"}
    assert calls[1]["namespace"] == "team-a"
    assert submit.wait("run-123", "https://kf.example.com/pipeline", "team-a", "tok", client_factory=RecordingClient) == "SUCCEEDED"
    with pytest.raises(MlplatError, match="run run-bad on https://kf.example.com/pipeline ended FAILED: step train failed") as info:
        submit.wait("run-bad", "https://kf.example.com/pipeline", client_factory=RecordingClient)
    assert info.value.exit_code == 1


def test_upload_sends_each_compiled_pipeline_under_its_name(tmp_path: Path) -> None:
    calls: list[Any] = []

    class RecordingClient:  # stands in for a cluster, which does not exist here
        def __init__(self, host: str, namespace: str, existing_token: str | None) -> None:
            calls.append((host, namespace, existing_token))

        def upload_pipeline(self, path: str, **kwargs: Any) -> Any:
            calls.append((path, kwargs))
            return type("Pipeline", (), {"pipeline_id": "p-1"})()

    package = CHECKED_IN / "compiled" / "breast_cancer.yaml"
    assert submit.upload(package, "http://kfp:8080", "team-a", "tok", RecordingClient) == "p-1"
    assert calls[0] == ("http://kfp:8080", "team-a", "tok")
    assert calls[1][0] == str(package) and calls[1][1]["pipeline_name"] == "breast-cancer"
    assert calls[1][1]["namespace"] == "team-a"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\n")
    with pytest.raises(UsageError, match="not a compiled KFP pipeline"):
        submit.upload(bad, "http://kfp:8080", client_factory=RecordingClient)


def test_the_submit_token_comes_from_the_file_the_environment_or_the_service_account(tmp_path: Path) -> None:
    account = tmp_path / "sa-token"
    assert submit.read_token(None, {}, account) is None  # standalone KFP: no token
    account.write_text("sa\n")
    assert submit.read_token(None, {}, account) == "sa"
    assert submit.read_token(None, {"KF_PIPELINES_TOKEN": "env"}, account) == "env"
    given = tmp_path / "token"
    given.write_text("file\n")
    assert submit.read_token(given, {"KF_PIPELINES_TOKEN": "env"}, account) == "file"
    given.write_text("")
    with pytest.raises(UsageError, match="--token-file: .* is empty"):
        submit.read_token(given, {}, account)
    with pytest.raises(UsageError, match="does not exist"):
        submit.read_token(tmp_path / "missing", {}, account)


def test_submit_refuses_a_bad_host_and_names_an_unreachable_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--host"):
        submit.check_host("localhost:8080")
    prepared = submit.Submission(str(tmp_path / "p.yaml"), "r", "e", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(MlplatError, match=r"could not submit to http://127\.0\.0\.1:9"):
            submit.submit(prepared, "http://127.0.0.1:9")  # the real kfp.Client; nothing listens there


def test_trainjob_is_schema_valid_multi_node_ddp_with_the_same_trainer_config() -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    spec = resolve(parse_spec(GPU_SPEC))
    manifest = trainjob.build_trainjob(spec, nodes=4).to_dict()
    again = TrainerV1alpha1TrainJob.from_dict(manifest)  # the generated models validate every field
    assert again.to_dict() == manifest
    assert manifest["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and manifest["kind"] == "TrainJob"
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 2
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2"
    assert trainer["image"] == "registry.example.com/mlplat:cuda"
    script = trainer["command"][-1]
    assert script.index("mlplat.kfp.step ingest") < script.index("mlplat.kfp.step validate") < \
        script.index("torchrun -m mlplat.kfp.step train")
    assert "--require-passed" in script and '--findings "$MLPLAT_WORK/validate" --out "$MLPLAT_OUTPUT/train"' in script
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["MLPLAT_PLUGIN"] == "mlp" and json.loads(env["MLPLAT_PARAMS"]) == spec.steps.train.params
    assert json.loads(env["MLPLAT_SPEC"])["seed"] == spec.seed
    pod = manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["spec"]["nodeSelector"] == GPU_SPEC["steps"]["train"]["node_selector"]
    with pytest.raises(ValueError, match="nodes"):
        trainjob.build_trainjob(spec, nodes=0)


def test_trainjob_of_a_tuned_spec_needs_the_tuned_params(tmp_path: Path) -> None:
    tuned = REPO / "pipelines/demo.yaml"
    spec = resolve(load_spec(tuned))
    with pytest.raises(UsageError, match=r"steps\.tune: .*--best-params runs/<run-id>/steps/tune/best_params\.json"):
        trainjob.build_trainjob(spec)
    best_file = tmp_path / "best_params.json"
    best_file.write_text(json.dumps({"best_params": {"lr": 0.01, "width": 128}, "best_value": 0.97}))
    env = {e["name"]: e["value"] for e in
           trainjob.build_trainjob(spec, best_params=steps.read_best_params(best_file)).to_dict()["spec"]["trainer"]["env"]}
    assert json.loads(env["MLPLAT_PARAMS"]) == {**spec.steps.train.params, "lr": 0.01, "width": 128}
    with pytest.raises(UsageError, match=r"--best-params: depthh not in steps\.tune\.search_space"):
        trainjob.build_trainjob(spec, best_params={"depthh": 3})
    with pytest.raises(SpecError, match=r"best_params\.lr"):
        trainjob.build_trainjob(spec, best_params={"lr": -1.0})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mlplat", "trainjob", *args], capture_output=True, text=True, cwd=tmp_path)

    done = cli(str(tuned))
    assert done.returncode == 2 and "--best-params runs/<run-id>/steps/tune/best_params.json" in done.stderr and not done.stdout
    done = cli(str(tuned), "--best-params", str(best_file))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["kind"] == "TrainJob"
    done = cli(str(REPO / "pipelines/breast_cancer.yaml"), "--best-params", str(best_file))
    assert done.returncode == 2 and "the spec has no tune step" in done.stderr
    best_file.write_text("{}")
    done = cli(str(tuned), "--best-params", str(best_file))
    assert done.returncode == 2 and "'best_params' object" in done.stderr


def test_validate_step_process_with_require_passed_stops_on_a_failed_gate(tmp_path: Path, capsys: Any) -> None:
    spec = resolve(parse_spec({"name": "outliers", "seed": 1, "dataset": {"source": "sklearn:breast_cancer"}, "steps": {
        "validate": {"plugin": "tabular", "params": {"outlier_iqr": 0.01, "max_outlier_share": 0.0, "severity": {"outliers": "fail"},
                                                     "label_noise": {"enabled": False}, "plot_columns": 0}},
        "train": {"plugin": "mlp"}}}))
    payload = compiler.spec_json(spec)
    assert step.main(["ingest", "--spec", payload, "--out", str(tmp_path / "data")]) == 0
    validate = ["validate", "--spec", payload, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "validate")]
    assert step.main(validate) == 0  # a KFP component reads the outcome; its gate task fails the run
    assert step.main([*validate, "--require-passed"]) == 1  # a TrainJob has no gate task: the script stops here
    assert "validation gate failed: outliers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        step.main(["ingest", "--spec", payload, "--out", str(tmp_path / "x"), "--require-passed"])


AUGMENT_CHAIN: dict[str, Any] = {
    "name": "chain", "dataset": {"source": "sklearn:breast_cancer"},
    "steps": {
        "augment": [{"plugin": "random_oversample", "resources": {"cpu": "500m", "memory": "2Gi"}, "retries": 1,
                     "node_selector": {"pool": "cpu"}},
                    {"plugin": "smote", "resources": {"cpu": "2", "memory": "512Mi", "gpus": 1}, "retries": 3, "caching": False,
                     "node_selector": {"pool": "cpu", "zone": "a"}}],
        "train": {"plugin": "mlp"},
    },
}


def test_augment_chain_task_gets_every_augmenters_settings(tmp_path: Path) -> None:
    ir, platform = compiled_docs(compiler.compile_spec(resolve(parse_spec(AUGMENT_CHAIN)), tmp_path / "chain.yaml"))
    resources = ir["deploymentSpec"]["executors"]["exec-augment"]["container"]["resources"]
    assert resources["cpuRequest"] == resources["cpuLimit"] == 2  # augmenter 1's
    assert resources["memoryRequest"] == pytest.approx(2 * 1.073741824)  # augmenter 0's
    assert int(resources["accelerator"]["resourceCount"]) == 1
    augment = by_name(ir["root"]["dag"]["tasks"], "augment")
    assert augment["retryPolicy"]["maxRetryCount"] == 3 and augment["cachingOptions"] == {}
    selector = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-augment"]["nodeSelector"]
    assert selector["labels"] == {"pool": "cpu", "zone": "a"}


@pytest.mark.parametrize(("field", "values", "path"), [
    ("image", ["registry.example.com/a:1", "registry.example.com/b:1"], "steps.augment.1.image"),
    ("node_selector", [{"pool": "cpu"}, {"pool": "gpu"}], "steps.augment.1.node_selector.pool"),
])
def test_augment_chain_settings_that_cannot_be_merged_are_refused(field: str, values: list[Any], path: str) -> None:
    chain = json.loads(json.dumps(AUGMENT_CHAIN))
    for augmenter, value in zip(chain["steps"]["augment"], values, strict=True):
        augmenter[field] = value
    with pytest.raises(SpecError, match=rf"{path}: .* conflicts with steps\.augment\.0\."):
        compiler.build_pipeline(resolve(parse_spec(chain)))
    chain["steps"]["augment"][1]["resources"]["cpu"] = "lots"
    chain["steps"]["augment"][1].pop(field)
    with pytest.raises(SpecError, match=r"steps\.augment\.1\.resources\.cpu"):
        compiler.build_pipeline(resolve(parse_spec(chain)))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render_the_pipelines_and_the_trainjob(overlay: str) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests/overlays" / overlay)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("TrainJob", "breast-cancer-train") in names
    assert not any(name.startswith("pipeline-") for _, name in names)  # pipelines are uploaded, not applied


def test_cli_compiles_to_the_working_directory_and_refuses_resume_with_kfp_local(tmp_path: Path) -> None:
    spec = REPO / "pipelines/breast_cancer.yaml"
    done = subprocess.run([sys.executable, "-m", "mlplat", "compile", str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_back(tmp_path / "breast_cancer.pipeline.yaml").name == "breast-cancer"
    done = subprocess.run([sys.executable, "-m", "mlplat", "run", str(spec), "--runner", "kfp-local", "--resume", "x",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "--resume works with --runner in-process only" in done.stderr
