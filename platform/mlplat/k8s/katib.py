"""The tune step at cluster scale: a Katib v1beta1 `Experiment` from the same spec and search space.

Each Katib trial is a Job that runs `python -m mlplat tune trial SPEC --param name=value ...`
with the pipeline spec mounted from a ConfigMap, so it trains the same trainer plugin with
the same data split as a local trial and prints `<metric>=<value>` lines (with timestamps)
for Katib's StdOut metrics collector and median-stop early stopping.

Mapping from the local tuner: the plugin's config model names its Katib algorithm
(`katib_algorithm`, e.g. TPE -> tpe), `parallel` -> parallelTrialCount, `n_trials` ->
maxTrialCount, a pruner -> medianstop, the metric's direction (the trainer's `tune_metrics`,
e.g. val_loss -> minimize) -> objective.type. Katib has no conditional params: every param is
searched and `mlplat tune trial` drops the ones whose condition does not hold. The grid
algorithm gets each float/int param as a `discrete` list of exactly the local grid points.

`validate_experiment` checks a manifest against the Katib API models (kubeflow-katib-api,
generated from Katib's OpenAPI spec) plus the rules Katib's admission webhook enforces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlplat import registry
from mlplat.errors import SpecError, UsageError
from mlplat.k8s import security, shm
from mlplat.registry import StageKind
from mlplat.search_space import CategoricalParam, FloatParam, IntParam, SearchSpace, encode_choice, parse_search_space
from mlplat.spec import PipelineSpec, to_yaml, tune_direction

API_VERSION, KIND = "kubeflow.org/v1beta1", "Experiment"
ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "bayesianoptimization", "cmaes", "hyperband", "sobol")
PARAMETER_TYPES = ("double", "int", "discrete", "categorical")
EARLY_STOPPING = ("medianstop",)
COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None")
CONTAINER, SPEC_MOUNT, SPEC_FILE = "training-container", "/etc/mlplat", "pipeline.yaml"
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
NAME_LIMIT = 40  # the webhook's limit: Katib derives trial and suggestion names from the Experiment's
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
# Settings each suggestion service accepts (Katib v0.19: hyperopt for random/tpe, optuna for multivariate-tpe/cmaes,
# skopt for bayesianoptimization, goptuna for sobol); any other name fails ValidateAlgorithmSettings
ALGORITHM_SETTINGS: dict[str, frozenset[str]] = {
    "random": frozenset({"random_state"}),
    "tpe": frozenset({"gamma", "prior_weight", "n_EI_candidates", "random_state"}),
    "multivariate-tpe": frozenset({"n_startup_trials", "n_ei_candidates", "random_state"}),
    "cmaes": frozenset({"restart_strategy", "sigma", "random_state"}),
    "bayesianoptimization": frozenset({"base_estimator", "n_initial_points", "acq_func", "acq_optimizer", "random_state"}),
    "grid": frozenset(), "sobol": frozenset({"random_state"}), "hyperband": frozenset({"resource_name", "eta", "r_l"}),
}
INTEGER_SETTINGS = {"random_state": 0, "n_EI_candidates": 1, "n_ei_candidates": 1, "n_startup_trials": 1,
                    "n_initial_points": 1, "min_trials_required": 1, "start_step": 1}  # name -> smallest allowed
EARLY_STOPPING_SETTINGS = {"medianstop": frozenset({"min_trials_required", "start_step"})}
# Katib's StdOut/File collector filter (pkg/metricscollector/v1beta1/common/const.go DefaultFilter)
DEFAULT_METRICS_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def katib_algorithm(tuner_plugin: str) -> str:
    """The Katib suggestion algorithm the tuner plugin declares (`PluginSpec.katib_algorithm`)."""
    algorithm = registry.spec_of(StageKind.TUNER, tuner_plugin).katib_algorithm
    if algorithm not in ALGORITHMS:
        raise UsageError(f"tuner plugin {tuner_plugin!r} has no Katib algorithm (its plugin spec declares "
                         f"katib_algorithm={algorithm!r}; Katib offers {', '.join(ALGORITHMS)})")
    return str(algorithm)


def katib_value(param: FloatParam | IntParam | CategoricalParam, value: Any) -> str:
    """How a param value is written in the Experiment (Katib feasible spaces are strings)."""
    if isinstance(param, CategoricalParam):
        return str(encode_choice(value))
    return repr(float(value)) if isinstance(param, FloatParam) else str(int(value))


def parse_trial_value(param: FloatParam | IntParam | CategoricalParam, text: str, path: str) -> Any:
    """The inverse of `katib_value`, for `mlplat tune trial --param name=value`."""
    try:
        if isinstance(param, FloatParam):
            return float(text)
        if isinstance(param, IntParam):
            return int(float(text)) if float(text).is_integer() else int(text)
        for choice in param.choices:
            if str(encode_choice(choice)) == text:
                return choice
        raise ValueError(f"not one of {[str(encode_choice(c)) for c in param.choices]}")
    except ValueError as exc:
        raise SpecError([(path, f"{text!r}: {exc}")]) from None


def parameter(name: str, param: FloatParam | IntParam | CategoricalParam, grid: bool) -> dict[str, Any]:
    if isinstance(param, CategoricalParam):
        return {"name": name, "parameterType": "categorical",
                "feasibleSpace": {"list": [katib_value(param, c) for c in param.choices]}}
    if grid:  # exactly the local grid, so both searches try the same points
        return {"name": name, "parameterType": "discrete",
                "feasibleSpace": {"list": [katib_value(param, v) for v in param.grid()]}}
    space = {"min": katib_value(param, param.low), "max": katib_value(param, param.high),
             "distribution": "logUniform" if param.log else "uniform"}
    if isinstance(param, IntParam) and param.step != 1:
        space["step"] = str(param.step)
    return {"name": name, "parameterType": "double" if isinstance(param, FloatParam) else "int", "feasibleSpace": space}


def _container_resources(spec: PipelineSpec) -> dict[str, Any]:
    """requests = limits: the tune step's cpu, memory and GPUs, the defaults for what it leaves out."""
    from mlplat.k8s.security import resources

    res = spec.steps.tune.resources if spec.steps.tune else None
    gpus = {res.accelerator_type: str(res.gpus)} if res is not None and res.gpus else {}
    return resources(res.cpu if res else None, res.memory if res else None, gpus)


def config_map_name(spec: PipelineSpec) -> str:
    return f"{spec.name}-tune-spec"


def spec_config_map(spec: PipelineSpec, spec_text: str | None = None) -> dict[str, Any]:
    """The pipeline spec as written (default: as resolved), mounted into every trial, which resolves it
    against the plugins installed in its image."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": config_map_name(spec), "labels": {"app.kubernetes.io/part-of": "mlplat"}},
            "data": {SPEC_FILE: spec_text if spec_text is not None else to_yaml(spec)}}


def experiment(spec: PipelineSpec) -> dict[str, Any]:
    """The Katib Experiment for a resolved spec's tune step."""
    tune = spec.steps.tune
    if tune is None:
        raise UsageError(f"spec {spec.name!r} has no steps.tune: nothing to run on Katib")
    space: SearchSpace = parse_search_space(tune.search_space)
    algorithm = katib_algorithm(tune.plugin)
    p = tune.params
    names = list(space.params)
    command = ["python", "-m", "mlplat", "tune", "trial", f"{SPEC_MOUNT}/{SPEC_FILE}"]
    command += [f"--param={n}=${{trialParameters.{n}}}" for n in names]
    threads = str(p.get("threads_per_trial", 1))
    container: dict[str, Any] = {
        "name": CONTAINER, "image": tune.image or spec.image, "command": command,
        "env": [{"name": v, "value": threads} for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")],
        "volumeMounts": [{"name": "pipeline-spec", "mountPath": SPEC_MOUNT, "readOnly": True}],
        "resources": _container_resources(spec), "securityContext": security.container_security_context(),
    }
    pod: dict[str, Any] = {"containers": [container], "restartPolicy": "Never", "securityContext": security.pod_security_context(),
                           "volumes": [{"name": "pipeline-spec", "configMap": {"name": config_map_name(spec)}}]}
    if (dshm := shm.volume(spec)) is not None:  # image specs: DataLoader workers need a memory-backed /dev/shm
        pod["volumes"].append(dshm)
        container["volumeMounts"].append(shm.mount())
    if tune.node_selector:
        pod["nodeSelector"] = dict(tune.node_selector)
    settings = [] if algorithm == "grid" else [{"name": "random_state", "value": str(p.get("seed") or spec.seed)}]
    n_trials = int(p.get("n_trials", 20))
    body: dict[str, Any] = {
        "objective": {"type": tune_direction(spec), "objectiveMetricName": tune.metric,
                      # the trial prints the trainer's final (best-epoch) metric last: the local objective
                      "metricStrategies": [{"name": tune.metric, "value": "latest"}]},
        "algorithm": {"algorithmName": algorithm, **({"algorithmSettings": settings} if settings else {})},
        "parallelTrialCount": int(p.get("parallel", 1)),
        "maxTrialCount": n_trials,
        "maxFailedTrialCount": n_trials,  # like the local search: failed trials are recorded, the search goes on
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": [parameter(n, prm, algorithm == "grid") for n, prm in space.params.items()],
        "trialTemplate": {
            "primaryContainerName": CONTAINER,
            "trialParameters": [{"name": n, "reference": n, "description": f"{spec.steps.train.plugin} param {n}"}
                                for n in names],
            "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}},
        },
    }
    if p.get("pruner", "none") != "none":
        body["earlyStopping"] = {"algorithmName": "medianstop", "algorithmSettings": [
            {"name": "min_trials_required", "value": str(max(1, int(p.get("pruner_startup_trials", 3))))},
            {"name": "start_step", "value": str(max(1, int(p.get("pruner_warmup_epochs", 2)) + 1))},
        ]}
    annotations = {"mlplat.io/tuner": tune.plugin, "mlplat.io/trainer": spec.steps.train.plugin}
    conditional = [n for n, prm in space.params.items() if prm.when]
    if conditional:
        annotations["mlplat.io/conditional-params"] = ", ".join(conditional) + " (dropped by the trial when inactive)"
    if p.get("pruner") in ("successive_halving", "hyperband"):
        annotations["mlplat.io/early-stopping"] = f"{p['pruner'].replace('_', ' ')} runs locally; Katib uses median stop"
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": f"{spec.name}-tune", "labels": {"app.kubernetes.io/part-of": "mlplat"},
                         "annotations": annotations},
            "spec": body}


def manifests(spec: PipelineSpec, spec_text: str | None = None) -> list[dict[str, Any]]:
    """What `kubectl apply` needs: the spec ConfigMap and the Experiment (validated)."""
    exp = experiment(spec)
    validate_experiment(exp)
    return [spec_config_map(spec, spec_text), exp]


def to_yaml_docs(docs: list[dict[str, Any]]) -> list[str]:
    """YAML text per manifest, typed as go-yaml reads it (`1e-06` quoted: Katib's feasible spaces are strings);
    multi-line strings (the mounted spec) as readable `|` blocks."""
    from mlplat.k8s import goyaml

    return [goyaml.dump(doc) for doc in docs]


def metric_line(name: str, value: float, when: float | None = None) -> str:
    """One stdout line for Katib's collector: an RFC 3339 timestamp, a space, then `name=value`."""
    import time

    return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(when))} {name}={value:.6f}"


def parse_stdout_metrics(lines: list[str], metrics: list[str]) -> list[tuple[str, str, str]]:
    """(timestamp, name, value) as Katib's StdOut collector reads them (parseLogsInTextFormat in
    file-metricscollector.go): only lines naming a metric, the first word as timestamp if it is RFC 3339
    (else the zero time), every DefaultFilter match whose name is one of `metrics`."""
    from datetime import datetime

    found = []
    for line in lines:
        if not any(m in line for m in metrics):
            continue
        stamp, _, _ = line.partition(" ")
        try:
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if "T" not in stamp:
                raise ValueError(stamp)
        except ValueError:
            stamp = "0001-01-01T00:00:00Z"
        for match in DEFAULT_METRICS_FILTER.finditer(line):
            if match.group(1).strip() in metrics:
                found.append((stamp, match.group(1).strip(), match.group(2).strip()))
    return found


def _settings_problems(where: str, settings: Any, allowed: frozenset[str], owner: str) -> list[tuple[str, str]]:
    problems = []
    for i, setting in enumerate(settings or []):
        if setting.name not in allowed:
            problems.append((f"{where}[{i}].name", f"{setting.name!r} is not a setting of {owner} "
                                                   f"(it takes {', '.join(sorted(allowed)) or 'none'})"))
        elif setting.name in INTEGER_SETTINGS:
            try:
                ok = int(str(setting.value)) >= INTEGER_SETTINGS[setting.name]
            except ValueError:
                ok = False
            if not ok:
                problems.append((f"{where}[{i}].value", f"{setting.value!r}: {setting.name} must be an integer "
                                                        f">= {INTEGER_SETTINGS[setting.name]}"))
    return problems


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in a:
            if key not in b:
                return f"{path}.{key}" if path else str(key)
            found = _first_difference(a[key], b[key], f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if found := _first_difference(x, y, f"{path}[{i}]"):
                return found
        return None
    return None if a == b else path


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _bounds_problems(where: str, parameter_type: str, fs: Any) -> list[tuple[str, str]]:
    """min < max, each parsable as the parameter's type (the suggestion services parse them with int()/float())."""
    parse = int if parameter_type == "int" else float
    try:
        low, high = parse(fs.min), parse(fs.max)
    except ValueError:
        return [(f"{where}.feasibleSpace", f"min {fs.min!r} and max {fs.max!r} must be {parameter_type} numbers")]
    return [] if low < high else [(f"{where}.feasibleSpace", "needs min < max")]


def validate_experiment(manifest: Mapping[str, Any]) -> None:
    """Raise SpecError naming every problem: fields the Katib models reject or do not know, and
    the admission webhook's rules (algorithms, parameter types, trial-parameter references)."""
    from kubeflow_katib_api.models import IoK8sApiCoreV1PodTemplateSpec, V1beta1Experiment
    from pydantic import ValidationError

    problems: list[tuple[str, str]] = []
    try:
        V1beta1Experiment.model_validate(dict(manifest))  # one pass, so errors carry the full path
        model = V1beta1Experiment.from_dict(dict(manifest))
    except ValidationError as exc:
        raise SpecError([(_path(e["loc"]), e["msg"]) for e in exc.errors()], "Katib Experiment") from None
    unknown = _first_difference(dict(manifest), model.to_dict(), "")
    if unknown:
        problems.append((unknown, "not a field of the Katib v1beta1 Experiment (or has the wrong type)"))
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        problems.append(("apiVersion/kind", f"must be {API_VERSION} {KIND}"))
    name = (model.metadata.name if model.metadata else None) or ""
    if len(name) > NAME_LIMIT or not NAME_RE.match(name):
        problems.append(("metadata.name", f"{name!r}: Katib needs a DNS-1035 label of at most {NAME_LIMIT} characters"))
    spec = model.spec
    if spec is None:
        raise SpecError(problems + [("spec", "missing")])
    if not spec.algorithm or spec.algorithm.algorithm_name not in ALGORITHMS:
        problems.append(("spec.algorithm.algorithmName", f"must be one of {', '.join(ALGORITHMS)}"))
    else:
        problems += _settings_problems("spec.algorithm.algorithmSettings", spec.algorithm.algorithm_settings,
                                       ALGORITHM_SETTINGS[spec.algorithm.algorithm_name], spec.algorithm.algorithm_name)
    if spec.early_stopping and spec.early_stopping.algorithm_name not in EARLY_STOPPING:
        problems.append(("spec.earlyStopping.algorithmName", f"must be one of {', '.join(EARLY_STOPPING)}"))
    elif spec.early_stopping:
        problems += _settings_problems("spec.earlyStopping.algorithmSettings", spec.early_stopping.algorithm_settings,
                                       EARLY_STOPPING_SETTINGS[spec.early_stopping.algorithm_name],
                                       spec.early_stopping.algorithm_name)
    for field in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount"):
        count = getattr(spec, {"maxTrialCount": "max_trial_count", "parallelTrialCount": "parallel_trial_count",
                               "maxFailedTrialCount": "max_failed_trial_count"}[field])
        if count is not None and count < (0 if field == "maxFailedTrialCount" else 1):
            problems.append((f"spec.{field}", f"{count}: must be greater than 0"))
    if not spec.objective or spec.objective.type not in ("maximize", "minimize") or not spec.objective.objective_metric_name:
        problems.append(("spec.objective", "needs type maximize|minimize and objectiveMetricName"))
    collector = spec.metrics_collector_spec.collector if spec.metrics_collector_spec else None
    if collector and collector.kind not in COLLECTORS:
        problems.append(("spec.metricsCollectorSpec.collector.kind", f"must be one of {', '.join(COLLECTORS)}"))
    if collector and collector.kind == "StdOut" and spec.metrics_collector_spec.source is not None:
        source = spec.metrics_collector_spec.source
        if source.file_system_path is not None or source.http_get is not None:
            problems.append(("spec.metricsCollectorSpec.source", "the StdOut collector reads stdout: no fileSystemPath or httpGet"))
    objective = spec.objective
    if objective and objective.objective_metric_name and objective.additional_metric_names and \
            objective.objective_metric_name in objective.additional_metric_names:
        problems.append(("spec.objective.additionalMetricNames", "must not repeat objectiveMetricName"))
    if spec.parallel_trial_count is not None and spec.max_trial_count is not None and spec.parallel_trial_count > spec.max_trial_count:
        problems.append(("spec.parallelTrialCount", "must not exceed maxTrialCount"))
    names = []
    for i, prm in enumerate(spec.parameters or []):
        where = f"spec.parameters[{i}]"
        names.append(prm.name)
        fs = prm.feasible_space
        if fs and fs.distribution and fs.distribution not in DISTRIBUTIONS:
            problems.append((f"{where}.feasibleSpace.distribution", f"must be one of {', '.join(DISTRIBUTIONS)}"))
        if prm.parameter_type not in PARAMETER_TYPES:
            problems.append((f"{where}.parameterType", f"must be one of {', '.join(PARAMETER_TYPES)}"))
        elif prm.parameter_type in ("discrete", "categorical"):
            if not fs or not fs.list:
                problems.append((f"{where}.feasibleSpace.list", "must not be empty"))
            elif fs.min is not None or fs.max is not None or fs.step is not None:
                problems.append((f"{where}.feasibleSpace", f"min, max and step are not allowed for {prm.parameter_type}"))
        elif not fs or fs.min is None or fs.max is None:
            problems.append((f"{where}.feasibleSpace", "needs min < max"))
        elif fs.list:
            problems.append((f"{where}.feasibleSpace.list", f"not allowed for {prm.parameter_type}"))
        else:
            problems += _bounds_problems(where, prm.parameter_type, fs)
    if not names:
        problems.append(("spec.parameters", "must not be empty"))
    template = spec.trial_template
    if template is None or not template.trial_spec:
        problems.append(("spec.trialTemplate.trialSpec", "missing"))
    else:
        declared = [tp.name for tp in template.trial_parameters or []]
        for i, tp in enumerate(template.trial_parameters or []):
            if tp.reference not in names:
                problems.append((f"spec.trialTemplate.trialParameters[{i}].reference", f"{tp.reference!r} is not a parameter"))
        used = set(PLACEHOLDER.findall(str(template.trial_spec)))
        for name in sorted(used - set(declared)):
            problems.append(("spec.trialTemplate.trialSpec", f"${{trialParameters.{name}}} is not declared in trialParameters"))
        for name in sorted(set(declared) - used):
            problems.append(("spec.trialTemplate.trialParameters", f"{name!r} is never used in trialSpec"))
        pod = template.trial_spec.get("spec", {}).get("template")
        if pod is None:
            problems.append(("spec.trialTemplate.trialSpec.spec.template", "missing (a batch/v1 Job pod template)"))
        else:
            pod_model = IoK8sApiCoreV1PodTemplateSpec.from_dict(pod)
            if diff := _first_difference(pod, pod_model.to_dict(), "spec.trialTemplate.trialSpec.spec.template"):
                problems.append((diff, "not a field of a Kubernetes PodTemplateSpec (or has the wrong type)"))
            containers = [c.name for c in (pod_model.spec.containers if pod_model.spec else [])]
            if template.primary_container_name not in containers:
                problems.append(("spec.trialTemplate.primaryContainerName", f"no container named {template.primary_container_name!r}"))
    if problems:
        raise SpecError(problems, "Katib Experiment")
