"""Pipeline specs: YAML → validated pydantic model → resolved spec.

A spec names a dataset and a fixed sequence of steps, each with a plugin and its params.
Errors carry the exact path (`steps.train.params.epochs: ...`) and become exit code 2.
Resolving a spec looks each plugin up through the registry and validates its params
against the plugin's config model, filling in defaults, so a run records exactly what ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlplat import plan, registry
from mlplat.deprecations import renamed_keys
from mlplat.errors import PluginUnavailable, SpecError, UsageError
from mlplat.registry import StageKind, config_problems
from mlplat.tasks import GATE_METRICS, Task, source_task

STEP_KINDS: dict[str, StageKind] = plan.plugin_kinds()  # spec step key -> stage kind, from the plan's node table
KFP_GPU_COUNTS = (0, 1, 2, 4, 8, 16)
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# step keys renamed since (old -> new): the old one still reads, with a DeprecationWarning (mlplat.deprecations)
RENAMED_STEPS = {"monitor": "drift"}  # `monitor` fitted the drift reference, not the production monitor


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """Kubernetes resources for a step; only the KFP runners apply them."""

    cpu: str | None = Field(None, description="CPU request and limit, e.g. '2' or '500m'")
    memory: str | None = Field(None, description="memory request and limit, e.g. '4Gi'")
    gpus: int = Field(0, description="GPUs (nvidia.com/gpu); KFP accepts 0, 1, 2, 4, 8 or 16")
    accelerator_type: str = "nvidia.com/gpu"

    @field_validator("gpus")
    @classmethod
    def _kfp_gpu_count(cls, value: int) -> int:
        if value not in KFP_GPU_COUNTS:
            raise ValueError(f"KFP accepts GPU counts {', '.join(map(str, KFP_GPU_COUNTS))}; got {value}")
        return value


class StepOptions(Strict):
    """Where and how a step runs on a cluster; the in-process runner ignores these."""

    image: str | None = None
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=10)
    caching: bool = True
    node_selector: dict[str, str] = Field(default_factory=dict)


class StepSpec(StepOptions):
    plugin: str
    params: dict[str, Any] = Field(default_factory=dict)


class TuneStepSpec(StepSpec):
    """The tuner plugin, its params, and the space it searches over the train step's params
    (see mlplat.search_space). `metric` is one the trainer reports every epoch, as its config
    model declares in `tune_metrics` with the direction that is better (see `tune_direction`)."""

    search_space: dict[str, Any] = Field(default_factory=dict, description="param -> {type: float|int|categorical, ...}")
    metric: str = Field("val_accuracy", description="validation metric the tuner optimizes (losses are minimized)")


class EvaluateGate(Strict):
    """Evaluation gate: the model is published only if the test metrics clear these bars.
    min_accuracy/min_f1/min_roc_auc gate a classification, max_rmse/max_mae/min_r2 a regression
    (mlplat.tasks.GATE_METRICS); a bar of the other task is refused when the spec is resolved."""

    min_accuracy: float | None = Field(None, ge=0, le=1)
    min_f1: float | None = Field(None, ge=0, le=1)
    min_roc_auc: float | None = Field(None, ge=0, le=1)
    max_rmse: float | None = Field(None, ge=0, description="regression: largest test RMSE, in the label's units")
    max_mae: float | None = Field(None, ge=0, description="regression: largest test MAE, in the label's units")
    min_r2: float | None = Field(None, le=1, description="regression: smallest test R²")


class EvaluateStepSpec(StepOptions):
    params: EvaluateGate = Field(default_factory=EvaluateGate)


class Steps(Strict):
    validate_: StepSpec | None = Field(None, alias="validate")
    augment: list[StepSpec] = Field(default_factory=list)
    tune: TuneStepSpec | None = None
    train: StepSpec
    evaluate: EvaluateStepSpec = Field(default_factory=EvaluateStepSpec)
    explain: StepSpec | None = None
    drift: StepSpec | None = Field(None, description="the drift detector that fits the served model's drift reference")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_keys(data, RENAMED_STEPS, "steps.", cls.__name__)

    @field_validator("augment", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    def plugin_steps(self) -> list[tuple[str, StepSpec]]:
        """(path, step) for every step that names a plugin, in run order."""
        out: list[tuple[str, StepSpec]] = []
        for node in plan.NODES:
            configured = getattr(self, node.field) if node.kind and node.field else None
            if isinstance(configured, list):
                out += [(f"{node.name}.{i}", s) for i, s in enumerate(configured)]
            elif configured is not None:
                out.append((node.name, configured))
        return out


class ImageSpec(Strict):
    """`dataset.image`: the source holds image files (mlplat.images). It is an image folder (`root/<class>/*.png`,
    torchvision's ImageFolder layout), a CSV/Parquet manifest with `path_column` and the label column (paths
    relative to the manifest, or URIs), or `generated:shapes`. Split tables hold the images' locations, never pixels."""

    size: list[int] = Field(default_factory=lambda: [32, 32], min_length=2, max_length=2,
                            description="[height, width] every image is resized to (the network input)")
    channels: Literal[1, 3] = Field(3, description="1 (grayscale) or 3 (RGB); other modes are converted")
    path_column: str = Field("path", description="a manifest's column of image paths or URIs")
    max_pixels: int = Field(40_000_000, gt=0, description="refuse an image whose header declares more pixels (bombs)")
    shm_size: str = Field("1Gi", description="cluster pods: size of the memory-backed /dev/shm DataLoader workers need")

    @field_validator("size")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 or v > 4096 for v in value):
            raise ValueError(f"height and width must be between 1 and 4096, got {value}")
        return value

    @field_validator("shm_size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not KFP_MEMORY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes memory quantity, e.g. '512Mi' or '2Gi'")
        return value


class DatasetSpec(Strict):
    source: str = Field(description="'sklearn:NAME', a CSV/Parquet/safetensors path (relative to the spec) or a URI: "
                                    "file://, http(s)://, s3://, gs:// (see mlplat.sources); with `image`, an image "
                                    "folder or manifest, or 'generated:shapes'")
    image: ImageSpec | None = Field(None, description="the source holds image files: their size, channels, path column")
    validation_source: str | None = Field(None, description="held-out validation file (same columns as source); "
                                                            "then `validation` is not split off the source")
    test_source: str | None = Field(None, description="held-out test file that evaluate scores (same columns as source); "
                                                      "then `test` is not split off the source")
    label: str | None = None
    # column roles and types: mlplat.columns explains each (README "Columns")
    features: list[str] | None = Field(None, description="feature columns (default: every column not given another role)")
    exclude: list[str] = Field(default_factory=list, description="columns that are neither features nor roles")
    weight: str | None = Field(None, description="column of per-row loss weights (finite, >= 0)")
    id: str | None = Field(None, description="column of unique row ids (whole numbers >= 0 or text); "
                                             "reports and findings name rows by them")
    column_types: dict[str, Literal["numeric", "categorical", "boolean"]] = Field(
        default_factory=dict, description="per-column type, overriding the inference rule")
    na_values: list[str] | None = Field(
        None, description="cell texts read as missing (default mlplat.columns.DEFAULT_NA_VALUES); others that are no number "
                          "in a numeric column are reported as bad cells")
    validation: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True  # a regression is never stratified
    task: Task | None = Field(None, description="classification | regression; default: inferred from the label (mlplat.tasks)")

    @model_validator(mode="before")
    @classmethod
    def _generated_images(cls, data: Any) -> Any:
        """A `generated:` source is an image dataset: `image` defaults to the generator's 32x32 RGB."""
        if isinstance(data, dict) and str(data.get("source", "")).startswith("generated:") and data.get("image") is None:
            return {**data, "image": {}}
        return data

    @model_validator(mode="after")
    def _fractions(self) -> DatasetSpec:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        if self.image is not None:  # image-file datasets: one image per row, no tabular column roles
            tabular = [f for f in ("validation_source", "test_source", "features", "weight", "id")
                       if getattr(self, f)] + [f for f in ("exclude", "column_types") if getattr(self, f)]
            if tabular:
                raise ValueError(f"{', '.join(tabular)}: not supported for image datasets (dataset.image)")
        return self


class PublishSpec(Strict):
    """Where a run that passes every gate publishes its model, besides the run store (see mlplat.modelstore)."""

    uri: str | None = Field(None, description="model store URI: s3://BUCKET/PATH, gs://..., pvc://CLAIM/PATH, file:// or a path")


class PipelineSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="DNS-1123 label: lowercase letters, digits, '-'")
    description: str = ""
    seed: int = 42
    image: str = "ghcr.io/mlplat/mlplat:0.1.0"
    dataset: DatasetSpec
    steps: Steps
    publish: PublishSpec = Field(default_factory=PublishSpec)


def parse_spec(data: Any, source: str = "") -> PipelineSpec:
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([(p.replace("validate_", "validate"), m) for p, m in config_problems(exc, "")], source) from None
    if problems := cluster_problems(spec):  # once, at load: every target the spec may be emitted for
        raise SpecError(problems, source)
    return spec


def load_spec(path: Path) -> PipelineSpec:
    if not path.is_file():
        raise UsageError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([("", f"{where}invalid YAML: {getattr(exc, 'problem', exc)}")], str(path)) from None
    if not isinstance(data, dict):
        raise SpecError([("", "a spec is a YAML mapping with 'name', 'dataset' and 'steps'")], str(path))
    return parse_spec(data, str(path))


def step_kind(path: str) -> StageKind:
    return STEP_KINDS[path.split(".")[0]]


def resolve(spec: PipelineSpec, source: str = "") -> PipelineSpec:
    """Check every plugin exists and validate its params; return the spec with defaults filled in."""
    problems: list[tuple[str, str]] = []
    resolved = spec.model_copy(deep=True)
    for path, step in resolved.steps.plugin_steps():
        try:
            found = registry.lookup(step_kind(path), step.plugin)
        except PluginUnavailable as exc:
            problems.append((f"steps.{path}.plugin", str(exc)))
            continue
        try:
            found.spec.load()  # import the factory now: a typo in it fails before any work, not after training
        except PluginUnavailable as exc:
            problems.append((f"steps.{path}.plugin", f"{exc} (distribution {found.distribution})"))
            continue
        plugin = found.spec
        try:
            step.params = plugin.parse_config(step.params, f"steps.{path}.params").model_dump(mode="json")
        except SpecError as exc:
            problems += exc.problems
        # a tuner never reads the data (the trainer does, in its trials): any tuner tunes an image trainer
        handles_images = plugin.handles_images or plugin.kind is StageKind.TUNER
        problems += _unmet_needs(resolved, path, step, plugin.needs, handles_images)
    task = declared_task(resolved)
    if task is not None and not problems:
        problems += task_problems(resolved, task)
    if resolved.steps.tune and not problems:
        problems += _resolve_search_space(resolved) + _check_tune_metric(resolved)
    if problems:
        raise SpecError(problems, source)
    return resolved


def _unmet_needs(spec: PipelineSpec, path: str, step: StepSpec, needs: frozenset[str],
                 handles_images: bool = False) -> list[tuple[str, str]]:
    """What a plugin's `needs` ask of the rest of the spec, checked before a run directory exists:
    "image" an image dataset (known from the source name alone, no data read) unless the step's params
    give an `image_shape`; "image_files" an image-file dataset (dataset.image); "step:NAME" a NAME step in
    the spec (e.g. a noise handler needs the validator's findings). On an image-file dataset, a plugin that
    does not declare `handles_images` is refused: it would read the split tables' image paths as columns."""
    from mlplat.data import TENSOR_SUFFIXES, is_image_source

    problems = []
    source = spec.dataset.source
    files = spec.dataset.image is not None
    if files and not handles_images:
        problems.append((f"steps.{path}.plugin", f"{step.plugin!r} works on tabular columns and cannot handle an image "
                         f"dataset (dataset.image: its split tables hold image paths); leave the step out or use a "
                         "plugin that handles images"))
    if "image_files" in needs and not files:
        problems.append((f"steps.{path}.plugin", f"{step.plugin!r} needs an image-file dataset (dataset.image: an image "
                         f"folder, a manifest of image paths, or generated:shapes); dataset.source {source!r} is not one"))
    if "image" in needs and not files and not is_image_source(source) and not step.params.get("image_shape"):
        problems.append((f"steps.{path}.plugin", f"{step.plugin!r} needs an image dataset (dataset.image, sklearn:digits "
                         f"or a {'/'.join(TENSOR_SUFFIXES)} file of images); dataset.source {source!r} is tabular"))
    present = {p.split(".")[0] for p, _ in spec.steps.plugin_steps()}
    for need in sorted(n for n in needs if n.startswith("step:")):
        if need.removeprefix("step:") not in present:
            problems.append((f"steps.{path}.plugin", f"{step.plugin!r} needs a {need.removeprefix('step:')} step in the spec"))
    return problems


def declared_task(spec: PipelineSpec) -> Task | None:
    """The task known before any data is read: dataset.task, or a scikit-learn source's; None when
    only the label can tell (then `task_problems` runs again once ingest has inferred it)."""
    return spec.dataset.task or source_task(spec.dataset.source)


def task_problems(spec: PipelineSpec, task: Task) -> list[tuple[str, str]]:
    """What in a resolved spec does not fit `task`: plugins declared for other tasks
    (`PluginSpec.tasks`), gate thresholds of the other task, and the trainer's task-bound options."""
    problems = []
    for path, step in spec.steps.plugin_steps():
        plugin = registry.spec_of(step_kind(path), step.plugin)
        if task not in plugin.tasks:
            problems.append((f"steps.{path}.plugin", f"{step.plugin!r} works for {' and '.join(sorted(plugin.tasks))} "
                             f"only; this spec is a {task} (dataset.task or inferred from the label)"))
            continue
        # options of a plugin bound to one task (a trainer's loss, a validator's class checks): its config
        # model's optional `task_problems(params, task) -> [(param, message)]`
        task_check = getattr(plugin.config_model, "task_problems", None)
        if callable(task_check):
            problems += [(f"steps.{path}.params.{field}", message) for field, message in task_check(step.params, task)]
    gate = spec.steps.evaluate.params
    own = [f for f, (_, t) in GATE_METRICS.items() if t == task]
    for field, (metric, field_task) in GATE_METRICS.items():
        if field_task != task and getattr(gate, field) is not None:
            problems.append((f"steps.evaluate.params.{field}", f"{metric} is a {field_task} metric; a {task} is gated on "
                             f"{', '.join(own)}"))
    if spec.steps.tune and spec.steps.tune.metric not in tune_metrics(spec.steps.train.plugin, task):
        problems += _check_tune_metric(spec, task)
    return problems


def _resolve_search_space(spec: PipelineSpec) -> list[tuple[str, str]]:
    """Validate the tune step's search space against the trainer's config; store it normalized."""
    from mlplat.search_space import check_against_config, parse_search_space

    tune = spec.steps.tune
    assert tune is not None
    try:
        space = parse_search_space(tune.search_space)
        trainer = registry.spec_of(StageKind.TRAINER, spec.steps.train.plugin)
        check_against_config(space, trainer.config_model, spec.steps.train.params)
    except SpecError as exc:
        return exc.problems
    tune.search_space = space.model_dump(mode="json")
    return []


def tune_metrics(trainer_plugin: str, task: Task | None = None) -> dict[str, Literal["maximize", "minimize"]]:
    """Metrics the trainer reports every epoch and at the end that a tuner may optimize, each with
    the direction that is better ("maximize" | "minimize"): its plugin spec's `tune_metrics`, or for
    a task its `task_tune_metrics[task]` (see PluginSpec.tune_metrics_for). With no task: every metric
    of every task (the task is not known before the data is read)."""
    return registry.spec_of(StageKind.TRAINER, trainer_plugin).tune_metrics_for(task)


def tune_direction(spec: PipelineSpec, task: Task | None = None) -> Literal["maximize", "minimize"]:
    """Whether the tune step maximizes or minimizes its metric (a resolved spec's metric is known)."""
    assert spec.steps.tune is not None
    return tune_metrics(spec.steps.train.plugin, task)[spec.steps.tune.metric]


def _check_tune_metric(spec: PipelineSpec, task: Task | None = None) -> list[tuple[str, str]]:
    assert spec.steps.tune is not None
    metric, trainer = spec.steps.tune.metric, spec.steps.train.plugin
    known = tune_metrics(trainer, task)
    if metric in known:
        return []
    if not known:
        return [("steps.tune.metric", f"trainer plugin {trainer!r} declares no tune_metrics: it cannot be tuned")]
    choices = ", ".join(f"{name} ({direction})" for name, direction in known.items())
    for_task = f" for a {task}" if task else ""
    return [("steps.tune.metric", f"{metric!r} is not reported by trainer {trainer!r}{for_task}; choose one of: {choices}")]


def to_yaml(spec: PipelineSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False)


def run_id_ok(run_id: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id) is not None and ".." not in run_id



# --- Cluster targets: names and quantities every emitted object needs -------------------------------
# The spec's name becomes the KFP pipeline name, the TrainJob `<name>-train` (Trainer's webhook: RFC 1035
# label, at most 63), the Katib Experiment `<name>-tune` (Katib's webhook: at most 40) and the
# InferenceService (a DNS-1035 label KServe extends with -predictor-...: at most 45). Resources are the
# same strings on KFP tasks, TrainJob nodes and Katib trials, so they must pass KFP's stricter patterns
# and be Kubernetes quantities.

RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# (target, suffix the target adds, longest name it allows, whether it applies to a spec)
NAME_TARGETS: tuple[tuple[str, str, int, Callable[[PipelineSpec], bool]], ...] = (
    ("the TrainJob", "-train", 63, lambda spec: True),
    ("the Katib Experiment", "-tune", 40, lambda spec: spec.steps.tune is not None),
    ("the InferenceService", "", 45, lambda spec: True),
)
KFP_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")  # kfp.dsl.PipelineTask._validate_cpu_request_limit
KFP_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")  # ..._validate_memory_request_limit


def name_problems(name: str) -> list[tuple[str, str]]:
    """Why `name` cannot name each cluster object derived from it (empty when it can)."""
    problems = []
    if not RFC1035_LABEL.match(name):
        problems.append(("name", f"{name!r} must start with a letter and end with a letter or digit "
                                 "(an RFC 1035 label: the TrainJob, Katib and KServe need one)"))
    return problems


def quantity_problems(path: str, resources: Resources) -> list[tuple[str, str]]:
    """A cpu or memory string that KFP or Kubernetes would refuse, named by its field path."""
    from kubernetes.utils.quantity import parse_quantity

    problems = []
    for field, pattern, example in (("cpu", KFP_CPU, "'2' or '500m'"), ("memory", KFP_MEMORY, "'512Mi' or '4Gi'")):
        value = getattr(resources, field)
        if value is None:
            continue
        try:
            ok = pattern.match(value) is not None and parse_quantity(value) > 0
        except ValueError:
            ok = False
        if not ok:
            problems.append((f"{path}.resources.{field}", f"{value!r} is not a Kubernetes quantity KFP accepts, e.g. {example}"))
    return problems


def cluster_problems(spec: PipelineSpec) -> list[tuple[str, str]]:
    """Every name and quantity the spec's cluster objects (KFP, TrainJob, Katib, KServe) would be refused for."""
    problems = name_problems(spec.name)
    for target, suffix, limit, applies in NAME_TARGETS:
        if applies(spec) and len(spec.name + suffix) > limit:
            problems.append(("name", f"{spec.name!r} is {len(spec.name)} characters; {target} "
                                     f"{spec.name + suffix!r} may have at most {limit}, so at most {limit - len(suffix)}"))
    steps = [(f"steps.{path}", step) for path, step in spec.steps.plugin_steps()] + [("steps.evaluate", spec.steps.evaluate)]
    for path, step in steps:
        problems += quantity_problems(path, step.resources)
    return problems
